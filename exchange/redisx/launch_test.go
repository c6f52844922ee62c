package redisx_test

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"strconv"
	"strings"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/shmex/shmex/agent"
	"github.com/shmex/shmex/exchange"
	"github.com/shmex/shmex/exchange/redisx"
	"github.com/shmex/shmex/internal/childproc"
)

// Environment of the agent processes a ProcessLauncher starts in the
// launch tests: how they join the hybrid exchange of their node.
const (
	envAddr   = "REDISX_TEST_ADDR"
	envPrefix = "REDISX_TEST_PREFIX"
	envNode   = "REDISX_TEST_NODE"
)

func init() {
	roles["manager-node"] = managerNode
	must(agent.RegisterBehavior("Worker", func() (*agent.Behavior, error) {
		var count atomic.Int64
		return workerBehavior(&count), nil
	}))
}

// serveLaunchedAgent runs the agent when this process was started by a
// ProcessLauncher of a launch test (see TestMain): the launcher's
// shared-memory exchange is wrapped in a hybrid handle.
func serveLaunchedAgent() {
	if os.Getenv(envAddr) == "" {
		return
	}
	agent.SetChildExchange(func(x *exchange.SHM) (exchange.Exchange, io.Closer, error) {
		h, err := redisx.NewHybrid(context.Background(), x, redisx.WithAddr(os.Getenv(envAddr)),
			redisx.WithPrefix(os.Getenv(envPrefix)), redisx.WithNode(os.Getenv(envNode)), redisx.WithLivenessTTL(testTTL))
		return h, h, err
	})
	agent.ServeIfChild()
}

// managerNode launches a Worker with a Manager on its node (extra argument:
// "thread" or "process"), prints "ready <id> <pid>" and prints "pid <pid>"
// after each restart, until stdin closes.
func managerNode(args []string) int {
	spec, rest, err := parseSpec(args)
	if err != nil || len(rest) != 1 {
		fmt.Fprintln(os.Stderr, "bad arguments", err)
		return 2
	}
	ctx := context.Background()
	x, err := spec.join(ctx)
	if err != nil {
		fmt.Fprintln(os.Stderr, "join:", err)
		return 1
	}
	defer x.Close()
	var l agent.Launcher = agent.ThreadLauncher{}
	if rest[0] == "process" {
		pl := agent.NewProcessLauncher(x.(*redisx.Hybrid).SHM())
		pl.Env = []string{envAddr + "=" + spec.addr, envPrefix + "=" + spec.prefix, envNode + "=" + spec.node}
		l = pl
	}
	m, err := agent.NewManager(ctx, x, l)
	if err != nil {
		fmt.Fprintln(os.Stderr, "manager:", err)
		return 1
	}
	defer m.Close()
	h, err := m.Launch(ctx, "Worker", agent.WithRestarts(3))
	if err != nil {
		fmt.Fprintln(os.Stderr, "launch:", err)
		return 1
	}
	in := m.Instance(h.AgentID())
	fmt.Println("ready", h.AgentID(), in.PID())
	go func() {
		last := in.PID()
		for {
			time.Sleep(10 * time.Millisecond)
			if p := in.PID(); p != last && p != 0 {
				fmt.Println("pid", p)
				last = p
			}
		}
	}()
	sc := bufio.NewScanner(os.Stdin)
	for sc.Scan() {
	}
	return 0
}

// TestLaunchersAcrossNodes: a Manager on node B launches a Worker (as a
// goroutine, or as its own process through a ProcessLauncher whose agent
// processes wrap the node's shared-memory exchange in a hybrid handle);
// node A calls it. The process-launched agent is killed: the launcher
// restarts it under the same id, and A's calls reach the new run.
func TestLaunchersAcrossNodes(t *testing.T) {
	srv := sharedServer(t)
	for _, c := range []struct{ kind, launcher string }{{"redis", "thread"}, {"hybrid", "thread"}, {"hybrid", "process"}} {
		t.Run(c.kind+"/"+c.launcher, func(t *testing.T) {
			t.Parallel()
			prefix := newPrefix()
			a := joinT(t, spec(t, srv.Addr, prefix, c.kind, "A"))
			child := childproc.Start(t, "manager-node", append(spec(t, srv.Addr, prefix, c.kind, "B").args(), c.launcher)...)
			f := strings.Fields(expectLine(t, child, "ready"))
			id, err := exchange.ParseEntityID(f[1])
			if err != nil {
				t.Fatal(err)
			}
			ctx := ctxT(t, 60*time.Second)
			cl := newClient(t, a)
			h := cl.Handle(id)
			if got, err := agent.Call[[]byte](ctx, h, "echo", []byte("launched on B")); err != nil || string(got) != "launched on B" {
				t.Fatalf("echo = %q, %v", got, err)
			}
			if c.launcher != "process" {
				return
			}
			pid, _ := strconv.Atoi(f[2])
			if err := syscall.Kill(pid, syscall.SIGKILL); err != nil {
				t.Fatal(err)
			}
			expectLine(t, child, "pid")
			for {
				got, err := agent.Call[[]byte](ctx, h, "echo", []byte("again"))
				if err == nil && string(got) == "again" {
					break
				}
				if !errors.Is(err, agent.ErrAgentTerminated) || ctx.Err() != nil {
					t.Fatalf("call after the restart: %q, %v", got, err)
				}
			}
			if inc, err := a.(exchange.Reopener).Incarnation(ctx, id); err != nil || inc == 0 {
				t.Fatalf("incarnation after the restart seen from A: %d, %v", inc, err)
			}
		})
	}
}
