// Command execution is the Go counterpart of Academy's execution example:
// agents run as separate OS processes, started by the process launcher over
// the shared-memory exchange (under /dev/shm/shmex-<uid>/, removed at the
// end), and called by a client in the parent process.
package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log"
	"os"

	"github.com/shmex/shmex/agent"
	"github.com/shmex/shmex/exchange"
)

// newWorker returns a behavior that squares numbers and tells its pid.
func newWorker() (*agent.Behavior, error) {
	b := agent.NewBehavior("Worker")
	if err := agent.AddAction(b, "square", func(_ context.Context, n int64) (int64, error) { return n * n, nil }); err != nil {
		return nil, err
	}
	return b, agent.AddAction(b, "pid", func(context.Context, agent.NoArgs) (int, error) { return os.Getpid(), nil })
}

func init() {
	if err := agent.RegisterBehavior("Worker", newWorker); err != nil {
		panic(err)
	}
}

func run(ctx context.Context, w io.Writer) (err error) {
	// The exchange lives under the default root, /dev/shm/shmex-<uid>/:
	// `shmex ls` lists it while the example runs. A unique name, removed
	// at the end (once the workers and this process's handle are gone).
	name := fmt.Sprintf("execution-%d", os.Getpid())
	x, err := exchange.Open(name)
	if err != nil {
		return err
	}
	defer func() { err = errors.Join(err, exchange.Remove(name)) }()
	defer x.Close()
	m, err := agent.NewManager(ctx, x, agent.NewProcessLauncher(x))
	if err != nil {
		return err
	}
	defer m.Close()

	var handles []*agent.Handle
	for i := range 2 {
		h, err := m.Launch(ctx, "Worker", agent.WithName(fmt.Sprintf("worker-%d", i)))
		if err != nil {
			return err
		}
		handles = append(handles, h)
	}
	for i, h := range handles {
		pid, err := agent.Call[int](ctx, h, "pid", agent.NoArgs{})
		if err != nil {
			return err
		}
		if pid != os.Getpid() {
			fmt.Fprintf(w, "worker %d runs in its own process\n", i)
		}
	}
	// Pipelined futures to both workers.
	var fs []*agent.Future[int64]
	for n := range int64(6) {
		f, err := agent.Action[int64](ctx, handles[n%2], "square", n)
		if err != nil {
			return err
		}
		fs = append(fs, f)
	}
	var sum int64
	for _, f := range fs {
		v, err := f.Wait(ctx)
		if err != nil {
			return err
		}
		sum += v
	}
	fmt.Fprintf(w, "sum of squares 0..5 computed by the workers: %d\n", sum)
	for i, h := range handles {
		if err := m.Shutdown(ctx, h.AgentID(), true); err != nil {
			return err
		}
		fmt.Fprintf(w, "worker %d shut down\n", i)
	}
	return m.Wait(ctx)
}

func main() {
	agent.ServeIfChild() // a worker process runs its agent here and exits
	if err := run(context.Background(), os.Stdout); err != nil {
		log.Fatal(err)
	}
}
