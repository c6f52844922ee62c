//go:build linux

package bench

import (
	"context"
	"fmt"
	"runtime"
	"strings"
	"sync"
	"time"
	"unsafe"

	"golang.org/x/sys/unix"

	"github.com/shmex/shmex/agent"
	"github.com/shmex/shmex/exchange"
)

// Metric names of the agent scenarios.
const (
	MetricActionRTT         = "action.rtt_ns"
	MetricActionRTTFutex    = "action.rtt_futex_ns"
	MetricActionThroughput  = "action.throughput_ops"
	MetricActionThroughput8 = "action.throughput_8x8_ops"
	// actionWindow is the number of actions a client keeps in flight in
	// the throughput scenarios.
	actionWindow = 64
	// academyActionsPerSec is Academy's published action rate per node.
	academyActionsPerSec = 3500
)

func init() {
	Register(Scenario{
		Name: "action/rtt", Rank: RankShmex + 20,
		Doc:     "no-op action with 64 bytes of arguments, from a client to an agent in another process, through the agent layer over the shared-memory exchange, spin and futex modes",
		Metrics: []string{MetricActionRTT, MetricActionRTTFutex},
		Run:     runActionRTT,
	})
	Register(Scenario{
		Name: "action/throughput", Rank: RankShmex + 21,
		Doc:     "no-op actions with 64 bytes of arguments, 64 in flight per client: 1 client to 1 agent process, and 8 clients to 8 agents in 2 agent processes",
		Metrics: []string{MetricActionThroughput, MetricActionThroughput8},
		Run:     runActionThroughput,
	})
	RegisterChild("agent-noop", childAgentNoop)
}

// noopBehavior is an agent with one action, "noop", that takes bytes and
// returns nothing.
func noopBehavior() *agent.Behavior {
	b := agent.NewBehavior("Noop")
	if err := agent.AddAction(b, "noop", func(context.Context, []byte) (agent.NoArgs, error) {
		return agent.NoArgs{}, nil
	}); err != nil {
		panic(err) // []byte and NoArgs have codecs
	}
	return b
}

// childAgentNoop joins exchange args[1] under root args[0] with idle mode
// args[2], runs args[3] no-op agents (1 if absent), tells their ids
// (space-separated), and serves until each is shut down. Its whole process
// follows its role thread's pinning (see pinAgentProcess), unless args[4] is
// "float".
func childAgentNoop(args []string) error {
	if len(args) < 3 || len(args) > 5 {
		return fmt.Errorf("want 3 to 5 arguments, got %d", len(args))
	}
	n := 1
	if len(args) >= 4 {
		if _, err := fmt.Sscan(args[3], &n); err != nil {
			return err
		}
	}
	if len(args) < 5 || args[4] != "float" {
		if err := pinAgentProcess(); err != nil {
			return err
		}
	}
	x, err := exchange.Open(args[1], exchange.WithRoot(args[0]), exchangeIdle(args[2]))
	if err != nil {
		return err
	}
	defer x.Close()
	return serveNoopAgents(context.Background(), x, n)
}

// serveNoopAgents runs n no-op agents in x, tells their ids to the parent
// (space-separated, as exchange.EntityID prints them) and serves until
// each is shut down.
func serveNoopAgents(ctx context.Context, x exchange.Exchange, n int) error {
	var ids []string
	var rts []*agent.Runtime
	for range n {
		rt, err := agent.NewRuntime(ctx, x, noopBehavior(), agent.WithTerminateOnExit(true))
		if err != nil {
			return err
		}
		rts = append(rts, rt)
		ids = append(ids, rt.ID().String())
	}
	errs := make(chan error, n)
	for _, rt := range rts {
		go func() { errs <- rt.Run(ctx) }()
	}
	if err := Ready(strings.Join(ids, " ")); err != nil {
		return err
	}
	for range n {
		if err := <-errs; err != nil {
			return err
		}
	}
	return nil
}

// pinAgentProcess pins every thread of this process, with GOMAXPROCS 1,
// to the CPU that the calling thread is pinned to, when it is pinned to
// one (a pinned run pins a role's thread; see pinProcess). An agent serves
// on goroutines of its own, not on the role's thread: without this they
// would float, also to the parent's CPU, and the round-trip rows would not
// be placed as the exchange's pairs are (the exchange's echo serves on the
// role's thread).
func pinAgentProcess() error {
	var set unix.CPUSet
	if err := unix.SchedGetaffinity(0, &set); err != nil {
		return err
	}
	if set.Count() != 1 || runtime.NumCPU() < 2 {
		return nil // not pinned
	}
	for cpu := 0; cpu < 8*int(unsafe.Sizeof(set)); cpu++ {
		if set.IsSet(cpu) {
			_, err := pinProcess(cpu)
			return err
		}
	}
	return nil
}

// agentPeer is the parent side of an agent scenario: a child process
// running agents, and the exchange they are in.
type agentPeer struct {
	x     exchange.Exchange // the shared-memory exchange, or a cluster node's (startClusterAgents)
	child *Child
	ids   []exchange.EntityID
	ctx   context.Context // done when the child exits
	stop  context.CancelFunc
}

// startAgents starts a child process running n no-op agents in the
// exchange name under root, with idle mode mode. In a pinned run the whole
// child is pinned to the child's CPU, as a pair's echo is (the round-trip
// rows).
func startAgents(ctx context.Context, env *Env, root, name, mode string, n int) (*agentPeer, error) {
	return startAgentsPlaced(ctx, env, root, name, mode, n, false)
}

// startAgentsPlaced is startAgents; with float, only the child's role
// thread is pinned and its agents' goroutines float, as the senders of
// the exchange's throughput rows do.
func startAgentsPlaced(ctx context.Context, env *Env, root, name, mode string, n int, float bool) (*agentPeer, error) {
	x, err := exchange.Open(name, exchange.WithRoot(root), exchangeIdle(mode))
	if err != nil {
		return nil, err
	}
	p := &agentPeer{x: x}
	args := []string{root, name, mode, fmt.Sprint(n)}
	if float {
		args = append(args, "float")
	}
	p.child, err = env.StartChild(ctx, "agent-noop", args...)
	if err != nil {
		x.Close()
		return nil, err
	}
	if err := p.attach(ctx, n); err != nil {
		return nil, err
	}
	return p, nil
}

// attach reads the ids of the n agents the started child runs (see
// serveNoopAgents); it closes p when the child fails or says something
// else.
func (p *agentPeer) attach(ctx context.Context, n int) error {
	line, err := p.child.Expect(ctx, "ready")
	if err != nil {
		p.close(ctx)
		return err
	}
	for _, f := range strings.Fields(line) {
		id, err := exchange.ParseEntityID(f)
		if err != nil {
			p.close(ctx)
			return fmt.Errorf("bench: agent child said %q: %w", line, err)
		}
		p.ids = append(p.ids, id)
	}
	if len(p.ids) != n {
		p.close(ctx)
		return fmt.Errorf("bench: agent child reported %d agents, want %d", len(p.ids), n)
	}
	p.ctx, p.stop = p.child.Context(ctx)
	return nil
}

// close shuts the agents down and waits for the child.
func (p *agentPeer) close(ctx context.Context) error {
	var err error
	if len(p.ids) > 0 {
		if cl, cerr := agent.NewClient(ctx, p.x); cerr == nil {
			for _, id := range p.ids {
				sctx, cancel := context.WithTimeout(ctx, p.child.timeout)
				cl.Handle(id).Shutdown(sctx)
				cancel()
			}
			cl.Close()
		}
		err = p.child.Wait()
	}
	p.child.Close()
	if p.stop != nil {
		p.stop()
	}
	p.x.Close()
	return err
}

func runActionRTT(ctx context.Context, env *Env) ([]Row, error) {
	root, err := env.Dir()
	if err != nil {
		return nil, err
	}
	var rows []Row
	for _, m := range []struct{ mode, metric, vs, note string }{
		{"spin", MetricActionRTT, MetricExchangeRTTSpin, "receivers spin"},
		{"park", MetricActionRTTFutex, MetricExchangeRTTFutex, "receivers sleep on the futex"},
	} {
		l, err := actionRTT(ctx, env, root, m.mode)
		if err != nil {
			return nil, fmt.Errorf("%s: %w", m.mode, err)
		}
		row := env.LatencyRow(m.metric, l, m.vs)
		row.Note = join(m.note, row.Note)
		rows = append(rows, row)
	}
	return rows, nil
}

// actionRTT measures the round trip of a no-op action to an agent in a child
// process, both sides with idle mode mode (see exchangeIdle).
func actionRTT(ctx context.Context, env *Env, root, mode string) (Latency, error) {
	p, err := startAgents(ctx, env, root, "action-rtt-"+mode, mode, 1)
	if err != nil {
		return Latency{}, err
	}
	l, err := p.noopRTT(ctx, env, true)
	if cerr := p.close(ctx); err == nil {
		err = cerr
	}
	return l, err
}

// noopRTT measures a no-op action's round trip from a client of p.x to
// p's first agent, from a thread of its own (locked, pinned) when lock is
// set, else from a goroutine the scheduler places (as the redis scenario
// measures redis.rtt_ns).
func (p *agentPeer) noopRTT(ctx context.Context, env *Env, lock bool) (Latency, error) {
	cl, err := agent.NewClient(ctx, p.x)
	if err != nil {
		return Latency{}, err
	}
	defer cl.Close()
	h := cl.Handle(p.ids[0])
	args := make([]byte, MsgSize)
	if lock {
		unlock := env.LockThread()
		defer unlock()
	}
	return env.MeasureRTT(ctx, func() error {
		_, err := agent.Call[agent.NoArgs](p.ctx, h, "noop", args)
		return err
	})
}

// pipeline runs no-op actions through h with actionWindow in flight until
// the phase is over, and returns how many completed. The window is a ring,
// and each future is released once read for the next action to reuse:
// the loop allocates nothing.
func pipeline(ctx context.Context, h *agent.Handle, p Phase) (int64, error) {
	args := make([]byte, MsgSize)
	var window [actionWindow]*agent.Future[agent.NoArgs]
	start := time.Now()
	var n int64
	for i := 0; ; i = (i + 1) % actionWindow {
		if f := window[i]; f != nil {
			if _, err := f.Wait(ctx); err != nil {
				return n, err
			}
			f.Release() // read: the next Action reuses it
			window[i] = nil
			n++
			if n&63 == 0 && (p.Count > 0 && n >= p.Count || p.Count <= 0 && time.Since(start) >= p.Duration) {
				break
			}
		}
		f, err := agent.Action[agent.NoArgs](ctx, h, "noop", args)
		if err != nil {
			return n, err
		}
		window[i] = f
	}
	for _, f := range window {
		if f == nil {
			continue
		}
		if _, err := f.Wait(ctx); err != nil {
			return n, err
		}
		n++
	}
	return n, nil
}

func runActionThroughput(ctx context.Context, env *Env) ([]Row, error) {
	root, err := env.Dir()
	if err != nil {
		return nil, err
	}
	var rows []Row
	for _, k := range []struct {
		clients, procs int
		metric, vs     string
	}{{1, 1, MetricActionThroughput, MetricExchangeThrough1}, {8, 2, MetricActionThroughput8, MetricExchangeThrough8}} {
		r, err := actionThroughput(ctx, env, root, k.clients, k.procs)
		if err != nil {
			return nil, fmt.Errorf("%d clients: %w", k.clients, err)
		}
		row := env.RateRow(k.metric, "ops/s", r, k.vs)
		row.Note = join(fmt.Sprintf("%d client(s) to %d agent(s) in %d process(es), %d in flight each; %.0fx Academy's published %d/s",
			k.clients, k.clients, k.procs, actionWindow, r.PerSec/academyActionsPerSec, academyActionsPerSec), row.Note)
		rows = append(rows, row)
	}
	return rows, nil
}

// actionThroughput runs clients clients in this process, each calling its
// own agent; the agents run in procs child processes.
func actionThroughput(ctx context.Context, env *Env, root string, clients, procs int) (Rate, error) {
	rig, err := startActionRig(ctx, env, root, clients, procs)
	defer rig.close(ctx)
	if err != nil {
		return Rate{}, err
	}
	return env.MeasureRate(ctx, rig.run)
}

// actionRig is the setup of a throughput scenario: clients in this
// process, each with a handle to its own agent, the agents in child
// processes.
type actionRig struct {
	peers   []*agentPeer
	cls     []*agent.Client
	handles []*agent.Handle
	procs   int
}

func startActionRig(ctx context.Context, env *Env, root string, clients, procs int) (*actionRig, error) {
	rig := &actionRig{procs: procs}
	for i := range procs {
		p, err := startAgentsPlaced(ctx, env, root, fmt.Sprintf("action-tput-%d-%d", clients, i), "default", clients/procs, true)
		if err != nil {
			return rig, err
		}
		rig.peers = append(rig.peers, p)
		for _, id := range p.ids {
			cl, err := agent.NewClient(ctx, p.x)
			if err != nil {
				return rig, err
			}
			rig.cls = append(rig.cls, cl)
			rig.handles = append(rig.handles, cl.Handle(id))
		}
	}
	return rig, nil
}

func (rig *actionRig) close(ctx context.Context) {
	for _, c := range rig.cls {
		c.Close()
	}
	for _, p := range rig.peers {
		p.close(ctx)
	}
}

// run runs one phase: every client pipelines actions to its agent.
func (rig *actionRig) run(ctx context.Context, ph Phase) (int64, time.Duration, error) {
	handles := rig.handles
	if ph.Count > 0 {
		ph.Count = max(1, ph.Count/int64(len(handles)))
	}
	var wg sync.WaitGroup
	counts := make([]int64, len(handles))
	errs := make([]error, len(handles))
	start := time.Now()
	for i, h := range handles {
		wg.Add(1)
		go func() {
			defer wg.Done()
			counts[i], errs[i] = pipeline(rig.peers[i*rig.procs/len(handles)].ctx, h, ph)
		}()
	}
	wg.Wait()
	el := time.Since(start)
	var total int64
	for i := range handles {
		if errs[i] != nil {
			return 0, 0, errs[i]
		}
		total += counts[i]
	}
	return total, el, nil
}
