package redisx_test

import (
	"bufio"
	"context"
	"fmt"
	"os"
	"strconv"
	"strings"
	"sync/atomic"
	"time"

	"github.com/shmex/shmex/agent"
	"github.com/shmex/shmex/exchange"
	"github.com/shmex/shmex/exchange/redisx"
	"github.com/shmex/shmex/internal/childproc"
)

// roles are the test children of the package: processes of simulated
// nodes, connected to the parent only through Redis (and, for the hybrid,
// each node with its own shared-memory root).
var roles = map[string]childproc.Role{
	"agent-node": agentNode, // an agent on another node
	"receiver":   receiverNode,
}

// nodeSpec is how a child joins the exchange: the arguments every role
// takes first.
type nodeSpec struct {
	addr, prefix, kind, root, node string
	ttl                            time.Duration
}

func (n nodeSpec) args() []string {
	return []string{n.addr, n.prefix, n.kind, n.root, n.node, strconv.FormatInt(n.ttl.Milliseconds(), 10)}
}

func parseSpec(args []string) (nodeSpec, []string, error) {
	if len(args) < 6 {
		return nodeSpec{}, nil, fmt.Errorf("want at least 6 arguments, got %d", len(args))
	}
	ms, err := strconv.Atoi(args[5])
	if err != nil {
		return nodeSpec{}, nil, err
	}
	return nodeSpec{args[0], args[1], args[2], args[3], args[4], time.Duration(ms) * time.Millisecond}, args[6:], nil
}

// join opens the exchange a spec names: "redis" (redisx.Open) or "hybrid"
// (redisx.OpenHybrid on the node's root).
func (n nodeSpec) join(ctx context.Context, extra ...redisx.Option) (exchange.Exchange, error) {
	opts := append([]redisx.Option{redisx.WithAddr(n.addr), redisx.WithPrefix(n.prefix), redisx.WithNode(n.node),
		redisx.WithLivenessTTL(n.ttl), redisx.WithOutageWait(2 * time.Second)}, extra...)
	if n.kind == "hybrid" {
		return redisx.OpenHybrid(ctx, "x", []exchange.Option{exchange.WithRoot(n.root)}, opts...)
	}
	return redisx.Open(ctx, opts...)
}

// workerBehavior is the agent of the tests: echo, add (a counter), sleep
// (until shutdown), and size (of its []byte argument).
func workerBehavior(count *atomic.Int64) *agent.Behavior {
	b := agent.NewBehavior("Worker", "Agent")
	must(agent.AddAction(b, "echo", func(_ context.Context, in []byte) ([]byte, error) { return in, nil }))
	must(agent.AddAction(b, "add", func(_ context.Context, n int64) (int64, error) { return count.Add(n), nil }))
	must(agent.AddAction(b, "sleep", func(ctx context.Context, _ agent.NoArgs) (agent.NoArgs, error) {
		<-ctx.Done()
		return agent.NoArgs{}, ctx.Err()
	}))
	must(agent.AddAction(b, "size", func(_ context.Context, in []byte) (int64, error) {
		var sum byte
		for _, c := range in {
			sum += c
		}
		return int64(len(in))<<8 | int64(sum), nil
	}))
	return b
}

func must(err error) {
	if err != nil {
		panic(err)
	}
}

// agentNode runs one Worker agent on a node: it prints "ready <id>", serves
// until the agent stops (terminated, shut down) and prints "stopped".
func agentNode(args []string) int {
	spec, _, err := parseSpec(args)
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 2
	}
	ctx := context.Background()
	x, err := spec.join(ctx)
	if err != nil {
		fmt.Fprintln(os.Stderr, "join:", err)
		return 1
	}
	defer x.Close()
	var count atomic.Int64
	rt, err := agent.NewRuntime(ctx, x, workerBehavior(&count))
	if err != nil {
		fmt.Fprintln(os.Stderr, "runtime:", err)
		return 1
	}
	fmt.Println("ready", rt.ID())
	err = rt.Run(ctx)
	fmt.Println("stopped", err)
	return 0
}

// receiverNode opens the mailbox given as its extra argument, receives one
// message (or as many as a second extra argument says, reading batches of
// two), prints "got <kind>" after each and waits for stdin to close (the
// test kills it before).
func receiverNode(args []string) int {
	spec, rest, err := parseSpec(args)
	if err != nil || len(rest) < 1 || len(rest) > 2 {
		fmt.Fprintln(os.Stderr, "bad arguments", err)
		return 2
	}
	id, err := exchange.ParseEntityID(rest[0])
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 2
	}
	n := 1
	var extra []redisx.Option
	if len(rest) == 2 {
		if n, err = strconv.Atoi(rest[1]); err != nil {
			fmt.Fprintln(os.Stderr, err)
			return 2
		}
		extra = append(extra, redisx.WithRecvBatch(2))
	}
	ctx := context.Background()
	x, err := spec.join(ctx, extra...)
	if err != nil {
		fmt.Fprintln(os.Stderr, "join:", err)
		return 1
	}
	defer x.Close()
	mb, err := x.Mailbox(ctx, id)
	if err != nil {
		fmt.Fprintln(os.Stderr, "mailbox:", err)
		return 1
	}
	var m exchange.Message
	c, cancel := context.WithTimeout(ctx, 20*time.Second)
	defer cancel()
	for range n {
		if err := mb.Recv(c, &m); err != nil {
			fmt.Fprintln(os.Stderr, "recv:", err)
			return 1
		}
		fmt.Println("got", m.Kind, string(m.Result))
	}
	sc := bufio.NewScanner(os.Stdin)
	for sc.Scan() {
		if strings.TrimSpace(sc.Text()) == "quit" {
			break
		}
	}
	return 0
}
