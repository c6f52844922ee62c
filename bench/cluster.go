//go:build linux

package bench

import (
	"context"
	"fmt"
	"os"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/shmex/shmex/agent"
	"github.com/shmex/shmex/exchange"
	"github.com/shmex/shmex/exchange/redisx"
)

// Metric names of the scenarios across nodes (package exchange/redisx).
const (
	// MetricClusterMsgRTT: an ActionRequest and its ActionResponse between
	// two processes of two nodes through the Redis exchange (exchange
	// calls, no agent layer).
	MetricClusterMsgRTT = "cluster.msg_rtt_ns"
	// MetricClusterRTT: a no-op action through the agent layer from a
	// client on node A to an agent on node B, through the Redis exchange.
	MetricClusterRTT = "cluster.rtt_ns"
	// MetricClusterThroughput: no-op actions, many in flight, from node A
	// to agents on node B through one Redis server.
	MetricClusterThroughput = "cluster.throughput_ops"
	// MetricHybridRTT and MetricHybridRTTFutex: a no-op action between two
	// processes of one node on the hybrid exchange, receivers spinning or
	// sleeping: the shared-memory path, next to action.rtt_ns and
	// action.rtt_futex_ns.
	MetricHybridRTT      = "hybrid.rtt_ns"
	MetricHybridRTTFutex = "hybrid.rtt_futex_ns"

	// academyRedisActionsPerSec is Academy's Redis exchange's measured
	// pipelined rate here (issue 14).
	academyRedisActionsPerSec = 900
	// clusterTarget is the pipelined rate issue 14 asks for.
	clusterTarget = 50000
)

func init() {
	Register(Scenario{
		Name: "cluster/rtt", Rank: RankShmex + 40,
		Doc: "request-response and no-op action with 64 bytes of arguments from node A (this process) to node B (a child) " +
			"through the Redis exchange (exchange/redisx) on a local redis-server started for the run",
		Metrics: []string{MetricClusterMsgRTT, MetricClusterRTT},
		Targets: []Target{{Metric: MetricClusterRTT, Op: AtMost, Factor: 1.5, Vs: MetricRedisRTT, Issue: 14}},
		Run:     runClusterRTT,
	})
	Register(Scenario{
		Name: "cluster/throughput", Rank: RankShmex + 41,
		Doc:     "no-op actions with 64 bytes of arguments, 64 in flight per goroutine, 64 goroutines (2 clients) on node A to 8 agents on node B (one child) through one local Redis server",
		Metrics: []string{MetricClusterThroughput},
		Targets: []Target{{Metric: MetricClusterThroughput, Op: AtLeast, Factor: clusterTarget, Issue: 14}},
		Run:     runClusterThroughput,
	})
	Register(Scenario{
		Name: "hybrid/rtt", Rank: RankShmex + 42,
		Doc:     "no-op action between two processes of one node on the hybrid exchange (shared memory for the node, Redis for the others), spin and futex modes",
		Metrics: []string{MetricHybridRTT, MetricHybridRTTFutex},
		Targets: []Target{
			{Metric: MetricHybridRTT, Op: AtMost, Factor: 1.1, Vs: MetricActionRTT, Issue: 14},
			{Metric: MetricHybridRTTFutex, Op: AtMost, Factor: 1.1, Vs: MetricActionRTTFutex, Issue: 14},
		},
		Run: runHybridRTT,
	})
	RegisterChild("cluster-agents", childClusterAgents)
	RegisterChild("cluster-echo", childClusterEcho)
}

// clusterNode is how a process joins the exchange of a cluster scenario.
type clusterNode struct {
	addr, prefix, node string
	hybrid             bool   // redisx.OpenHybrid, else redisx.Open
	root, mode         string // the hybrid's shared-memory root and idle mode
}

func (n clusterNode) args() []string {
	return []string{n.addr, n.prefix, n.node, strconv.FormatBool(n.hybrid), n.root, n.mode}
}

func parseClusterNode(args []string) (clusterNode, []string, error) {
	if len(args) < 6 {
		return clusterNode{}, nil, fmt.Errorf("want at least 6 arguments, got %d", len(args))
	}
	h, err := strconv.ParseBool(args[3])
	return clusterNode{addr: args[0], prefix: args[1], node: args[2], hybrid: h, root: args[4], mode: args[5]}, args[6:], err
}

func (n clusterNode) join(ctx context.Context) (exchange.Exchange, error) {
	opts := []redisx.Option{redisx.WithAddr(n.addr), redisx.WithPrefix(n.prefix), redisx.WithNode(n.node)}
	if n.hybrid {
		return redisx.OpenHybrid(ctx, n.prefix, []exchange.Option{exchange.WithRoot(n.root), exchangeIdle(n.mode)}, opts...)
	}
	return redisx.Open(ctx, opts...)
}

// clusterServer starts the run's redis-server, or returns why the rows are
// skipped.
func clusterServer(ctx context.Context, env *Env) (*RedisServer, string, error) {
	path, skip := FindRedisServer(env.RedisServer)
	if skip != "" {
		return nil, skip, nil
	}
	srv, err := StartRedisServer(ctx, path, env.ChildTimeout, env.Logger)
	return srv, "", err
}

// childClusterAgents joins the exchange its arguments name and runs n no-op
// agents (the next argument), tells their ids and serves until each is
// shut down. With "pin" (the last argument) every thread of the process
// follows its role thread's pinning, as action/rtt's agent child does (see
// pinAgentProcess); with "float" they float, as the throughput rows' do.
func childClusterAgents(args []string) error {
	n, rest, err := parseClusterNode(args)
	if err != nil || len(rest) != 2 {
		return fmt.Errorf("bad arguments %q: %v", args, err)
	}
	count, err := strconv.Atoi(rest[0])
	if err != nil {
		return err
	}
	if rest[1] == "pin" {
		if err := pinAgentProcess(); err != nil {
			return err
		}
	}
	ctx := context.Background()
	x, err := n.join(ctx)
	if err != nil {
		return err
	}
	defer x.Close()
	return serveNoopAgents(ctx, x, count)
}

// childClusterEcho registers an agent and answers each ActionRequest with
// its arguments, through exchange calls only, until a ShutdownRequest.
func childClusterEcho(args []string) error {
	n, _, err := parseClusterNode(args)
	if err != nil {
		return err
	}
	ctx := context.Background()
	x, err := n.join(ctx)
	if err != nil {
		return err
	}
	defer x.Close()
	aid, err := x.RegisterAgent(ctx, exchange.Behavior{Name: "Echo"})
	if err != nil {
		return err
	}
	mb, err := x.Mailbox(ctx, aid)
	if err != nil {
		return err
	}
	defer mb.Close()
	if err := Ready(aid.String()); err != nil {
		return err
	}
	var m exchange.Message
	wd := NewWatchdog()
	defer wd.Stop()
	for {
		err := mb.Recv(wd, &m)
		wd.Progress()
		if err != nil {
			return err
		}
		switch m.Kind {
		case exchange.KindShutdownRequest:
			return nil
		case exchange.KindActionRequest:
			m.SetResponse(&m, m.Args)
			if err := x.Send(ctx, &m); err != nil {
				return err
			}
		}
	}
}

// startClusterAgents joins the exchange as node a and starts a child
// running n agents as node b, pinned ("pin") or floating ("float"; see
// childClusterAgents).
func startClusterAgents(ctx context.Context, env *Env, a, b clusterNode, n int, placement string) (*agentPeer, error) {
	x, err := a.join(ctx)
	if err != nil {
		return nil, err
	}
	p := &agentPeer{x: x}
	if p.child, err = env.StartChild(ctx, "cluster-agents", append(b.args(), strconv.Itoa(n), placement)...); err != nil {
		x.Close()
		return nil, err
	}
	if err := p.attach(ctx, n); err != nil {
		return nil, err
	}
	return p, nil
}

func newPrefix(what string) string { return fmt.Sprintf("shmbench-%s-%d", what, os.Getpid()) }

func runClusterRTT(ctx context.Context, env *Env) ([]Row, error) {
	srv, skip, err := clusterServer(ctx, env)
	if skip != "" {
		return SkipRows(skip, MetricClusterMsgRTT, MetricClusterRTT), nil
	}
	if err != nil {
		return nil, err
	}
	defer srv.Close()
	a := clusterNode{addr: srv.Addr, prefix: newPrefix("rtt"), node: "A"}
	b := a
	b.node = "B"

	msg, err := clusterMsgRTT(ctx, env, a, b)
	if err != nil {
		return nil, fmt.Errorf("messages: %w", err)
	}
	p, err := startClusterAgents(ctx, env, a, b, 1, "pin")
	if err != nil {
		return nil, err
	}
	// Measured as its peer redis.rtt_ns is: from an unlocked goroutine
	// (a locked thread adds a futex hand-off per call, from the client's
	// receiving goroutine to the caller's thread, which the peer does not
	// pay).
	l, err := p.noopRTT(ctx, env, false)
	if cerr := p.close(ctx); err == nil {
		err = cerr
	}
	if err != nil {
		return nil, fmt.Errorf("actions: %w", err)
	}
	mrow := env.LatencyRow(MetricClusterMsgRTT, msg, MetricRedisRTT)
	mrow.Note = join("node A to node B, Send and Recv through Redis; vs redis.rtt_ns (LPUSH+BRPOP each way)", mrow.Note)
	arow := env.LatencyRow(MetricClusterRTT, l, MetricRedisRTT)
	arow.Note = join("agent layer, node A to node B through Redis; target <= 1.5x redis.rtt_ns (Academy's Redis exchange ~13 commands, ~2.1 ms)", arow.Note)
	return []Row{mrow, arow}, nil
}

// clusterMsgRTT measures an ActionRequest and its response between a client
// of node a (this process) and an echo agent of node b (a child).
func clusterMsgRTT(ctx context.Context, env *Env, a, b clusterNode) (Latency, error) {
	x, err := a.join(ctx)
	if err != nil {
		return Latency{}, err
	}
	defer x.Close()
	child, err := env.StartChild(ctx, "cluster-echo", b.args()...)
	if err != nil {
		return Latency{}, err
	}
	defer child.Close()
	line, err := child.Expect(ctx, "ready")
	if err != nil {
		return Latency{}, err
	}
	aid, err := exchange.ParseEntityID(strings.TrimSpace(line))
	if err != nil {
		return Latency{}, err
	}
	cid, err := x.RegisterClient(ctx)
	if err != nil {
		return Latency{}, err
	}
	mb, err := x.Mailbox(ctx, cid)
	if err != nil {
		return Latency{}, err
	}
	defer mb.Close()
	cctx, stop := child.Context(ctx)
	defer stop()
	req := exchange.NewActionRequest(cid, aid, "work", make([]byte, MsgSize))
	var resp exchange.Message
	// From an unlocked goroutine, as redis.rtt_ns is measured (see
	// runClusterRTT).
	l, err := env.MeasureRTT(ctx, func() error {
		req.Tag = exchange.NewTag()
		if err := x.Send(cctx, req); err != nil {
			return err
		}
		if err := mb.Recv(cctx, &resp); err != nil {
			return err
		}
		if resp.Tag != req.Tag || len(resp.Result) != MsgSize {
			return fmt.Errorf("bench: unexpected response %v", &resp)
		}
		return nil
	})
	if err != nil {
		return l, err
	}
	x.Send(ctx, exchange.NewShutdownRequest(cid, aid, false))
	return l, child.Wait()
}

// Shape of the throughput scenario: agents on node B; on node A, clients
// (mailboxes) whose handles are used by workers goroutines, each keeping
// actionWindow actions in flight. Sends of concurrent goroutines share round
// trips (batches), and responses for many handles share one mailbox, so
// the more work is in flight, the fewer scripts Redis runs per action.
const (
	clusterAgentCount = 8
	clusterClients    = 2
	clusterWorkers    = 64
)

func runClusterThroughput(ctx context.Context, env *Env) ([]Row, error) {
	srv, skip, err := clusterServer(ctx, env)
	if skip != "" {
		return SkipRows(skip, MetricClusterThroughput), nil
	}
	if err != nil {
		return nil, err
	}
	defer srv.Close()
	a := clusterNode{addr: srv.Addr, prefix: newPrefix("tput"), node: "A"}
	b := a
	b.node = "B"
	p, err := startClusterAgents(ctx, env, a, b, clusterAgentCount, "float")
	if err != nil {
		return nil, err
	}
	var cls []*agent.Client
	for range clusterClients {
		cl, err := agent.NewClient(ctx, p.x)
		if err != nil {
			break
		}
		cls = append(cls, cl)
	}
	var r Rate
	if len(cls) != clusterClients {
		err = fmt.Errorf("bench: %d clients of %d", len(cls), clusterClients)
	} else {
		handles := make([]*agent.Handle, clusterWorkers)
		for i := range handles {
			handles[i] = cls[i%clusterClients].Handle(p.ids[i%clusterAgentCount])
		}
		r, err = env.MeasureRate(ctx, func(ctx context.Context, ph Phase) (int64, time.Duration, error) {
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
					counts[i], errs[i] = pipeline(p.ctx, h, ph)
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
		})
	}
	for _, cl := range cls {
		cl.Close()
	}
	if cerr := p.close(ctx); err == nil {
		err = cerr
	}
	if err != nil {
		return nil, err
	}
	row := env.RateRow(MetricClusterThroughput, "ops/s", r, MetricRedisThroughput)
	row.Note = join(fmt.Sprintf("%d goroutines of %d clients on node A to %d agents on node B, %d in flight each; %.2fx the %d/s target, %.0fx Academy's Redis exchange (~%d/s)",
		clusterWorkers, clusterClients, clusterAgentCount, actionWindow, r.PerSec/clusterTarget, clusterTarget, r.PerSec/academyRedisActionsPerSec, academyRedisActionsPerSec), row.Note)
	return []Row{row}, nil
}

func runHybridRTT(ctx context.Context, env *Env) ([]Row, error) {
	metrics := []string{MetricHybridRTT, MetricHybridRTTFutex}
	srv, skip, err := clusterServer(ctx, env)
	if skip != "" {
		return SkipRows(skip, metrics...), nil
	}
	if err != nil {
		return nil, err
	}
	defer srv.Close()
	root, err := env.Dir()
	if err != nil {
		return nil, err
	}
	var rows []Row
	for _, m := range []struct{ mode, metric, vs, note string }{
		{"spin", MetricHybridRTT, MetricActionRTT, "receivers spin"},
		{"park", MetricHybridRTTFutex, MetricActionRTTFutex, "receivers sleep on the futex"},
	} {
		// Both processes on node A, same shared-memory root: the
		// shared-memory path, with every entity registered in Redis too.
		a := clusterNode{addr: srv.Addr, prefix: newPrefix("hybrid-" + m.mode), node: "A", hybrid: true, root: root, mode: m.mode}
		p, err := startClusterAgents(ctx, env, a, a, 1, "pin")
		if err != nil {
			return nil, fmt.Errorf("%s: %w", m.mode, err)
		}
		l, err := p.noopRTT(ctx, env, true) // as action/rtt
		if cerr := p.close(ctx); err == nil {
			err = cerr
		}
		if err != nil {
			return nil, fmt.Errorf("%s: %w", m.mode, err)
		}
		row := env.LatencyRow(m.metric, l, m.vs)
		row.Note = join(m.note+", same node on the hybrid exchange; target <= 1.1x the plain shared-memory exchange", row.Note)
		rows = append(rows, row)
	}
	return rows, nil
}
