package agent_test

import (
	"context"
	"errors"
	"runtime"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/tinylib/msgp/msgp"
	"golang.org/x/sys/unix"

	"github.com/shmex/shmex/agent"
	"github.com/shmex/shmex/exchange"
)

// The agent layer's own CPU cost per call, apart from any exchange and from
// the machine's load: a fake exchange answers every request at once, in
// the sender's goroutine, and the benchmarks report the calling thread's
// CPU time per op (cpu-ns/op), which other processes' use of the CPU does
// not inflate as it does wall time.

// echoX is an exchange.Exchange whose Send of a request queues, in the
// sender's mailbox, the response an Echo agent's no-op action gives; Recv
// pops it. Everything else is the Local exchange's.
type echoX struct {
	*exchange.Local
	mu    sync.Mutex
	queue []*exchange.Message // from head on
	head  int
	spare []*exchange.Message
}

func (x *echoX) Send(ctx context.Context, m *exchange.Message) error {
	if !m.Kind.IsRequest() {
		return nil // a wake-up, or an answer to a stray request
	}
	x.mu.Lock()
	var r *exchange.Message
	if n := len(x.spare); n > 0 {
		r, x.spare = x.spare[n-1], x.spare[:n-1]
	} else {
		r = new(exchange.Message)
	}
	r.SetResponse(m, nil)
	if m.Kind == exchange.KindActionRequest {
		r.Result = append(r.Result[:0], 0xc0) // MessagePack nil: NoArgs
	}
	x.queue = append(x.queue, r)
	x.mu.Unlock()
	return nil
}

func (x *echoX) SendIncarnation(ctx context.Context, m *exchange.Message) (uint32, error) {
	return 0, x.Send(ctx, m)
}

func (x *echoX) Mailbox(ctx context.Context, id exchange.EntityID, _ ...exchange.MailboxOption) (exchange.Mailbox, error) {
	return &echoMailbox{x: x, id: id}, nil
}

type echoMailbox struct {
	x  *echoX
	id exchange.EntityID
}

func (mb *echoMailbox) ID() exchange.EntityID { return mb.id }
func (mb *echoMailbox) Close() error          { return nil }

// RecvBatch pops what is queued, up to len(ms), as the shared-memory
// exchange's mailbox does (exchange.BatchReceiver).
func (mb *echoMailbox) RecvBatch(ctx context.Context, ms []*exchange.Message) (int, error) {
	// Empty, it waits for a Send: the listener may receive for a call
	// registered and not yet sent.
	var deadline time.Time // read only when empty: a clock read per call would be measured
	for {
		if n, err := mb.pop(ctx, ms); n > 0 || err != nil {
			return n, err
		}
		if deadline.IsZero() {
			deadline = time.Now().Add(5 * time.Second)
		} else if time.Now().After(deadline) {
			return 0, errors.New("echoX: nothing sent for 5 s") // a test bug
		}
		runtime.Gosched()
	}
}

// pop is RecvBatch without the wait: 0 and no error when nothing is
// queued.
func (mb *echoMailbox) pop(ctx context.Context, ms []*exchange.Message) (int, error) {
	x := mb.x
	x.mu.Lock()
	n := 0
	for ; n < len(ms) && x.head < len(x.queue); n++ {
		r := x.queue[x.head]
		x.queue[x.head] = nil
		if x.head++; x.head == len(x.queue) {
			x.queue, x.head = x.queue[:0], 0
		} else if x.head >= 1024 { // pipelined: it never drains
			x.queue = x.queue[:copy(x.queue, x.queue[x.head:])]
			x.head = 0
		}
		ms[n].CopyFrom(r)
		x.spare = append(x.spare, r)
	}
	x.mu.Unlock()
	if n == 0 {
		return 0, ctx.Err()
	}
	return n, nil
}

func (mb *echoMailbox) Recv(ctx context.Context, m *exchange.Message) error {
	ms := [1]*exchange.Message{m}
	_, err := mb.RecvBatch(ctx, ms[:])
	return err
}

// threadCPU returns the calling thread's CPU time in ns. The caller locks
// its goroutine to its thread (lockThread) for the span it measures:
// otherwise the two readings may come from two threads.
func threadCPU() int64 {
	var ts unix.Timespec
	unix.ClockGettime(unix.CLOCK_THREAD_CPUTIME_ID, &ts)
	return ts.Nano()
}

// lockThread locks the calling goroutine to its thread and returns the
// unlock.
func lockThread() func() {
	runtime.LockOSThread()
	return runtime.UnlockOSThread
}

func costClient(b *testing.B) (*agent.Handle, func()) {
	ctx := context.Background()
	x := &echoX{Local: exchange.NewLocal()}
	agentID, err := x.RegisterAgent(ctx, exchange.Behavior{Name: "Echo"})
	if err != nil {
		b.Fatal(err)
	}
	c, err := agent.NewClient(ctx, x)
	if err != nil {
		b.Fatal(err)
	}
	return c.Handle(agentID), func() { c.Close(); x.Close() }
}

// BenchmarkCostCall is the client side of a Call of a no-op action with 64
// bytes of arguments.
func BenchmarkCostCall(b *testing.B) {
	h, done := costClient(b)
	defer done()
	ctx := context.Background()
	arg := args64()
	b.ReportAllocs()
	defer lockThread()()
	start := threadCPU()
	for b.Loop() {
		if _, err := agent.Call[agent.NoArgs](ctx, h, "noop64", arg); err != nil {
			b.Fatal(err)
		}
	}
	b.ReportMetric(float64(threadCPU()-start)/float64(b.N), "cpu-ns/op")
}

// BenchmarkCostAction is the client side of a pipelined action: Action,
// then Wait of the future 64 actions later, and its Release.
func BenchmarkCostAction(b *testing.B) {
	h, done := costClient(b)
	defer done()
	ctx := context.Background()
	arg := args64()
	var fs [64]*agent.Future[agent.NoArgs]
	i := 0
	b.ReportAllocs()
	defer lockThread()()
	start := threadCPU()
	for b.Loop() {
		if f := fs[i]; f != nil {
			if _, err := f.Wait(ctx); err != nil {
				b.Fatal(err)
			}
			f.Release()
		}
		f, err := agent.Action[agent.NoArgs](ctx, h, "noop64", arg)
		if err != nil {
			b.Fatal(err)
		}
		fs[i] = f
		i = (i + 1) % len(fs)
	}
	b.ReportMetric(float64(threadCPU()-start)/float64(b.N), "cpu-ns/op")
	for _, f := range fs {
		if f != nil {
			f.Wait(ctx)
		}
	}
}

// feedX is an exchange.Exchange whose mailboxes receive, n times, a copy
// of one request, and whose Send drops the responses, counting them.
type feedX struct {
	*exchange.Local
	req  exchange.Message
	left atomic.Int64
	sent atomic.Int64
	want int64
	done chan struct{}
}

func (x *feedX) Send(ctx context.Context, m *exchange.Message) error {
	if m.Kind.IsResponse() && x.sent.Add(1) == x.want {
		close(x.done)
	}
	return nil
}

func (x *feedX) Mailbox(ctx context.Context, id exchange.EntityID, _ ...exchange.MailboxOption) (exchange.Mailbox, error) {
	return &feedMailbox{x: x, id: id, closed: make(chan struct{})}, nil
}

type feedMailbox struct {
	x      *feedX
	id     exchange.EntityID
	once   sync.Once
	closed chan struct{}
}

func (mb *feedMailbox) ID() exchange.EntityID { return mb.id }
func (mb *feedMailbox) Close() error          { mb.once.Do(func() { close(mb.closed) }); return nil }

func (mb *feedMailbox) Recv(ctx context.Context, m *exchange.Message) error {
	if mb.x.left.Add(-1) < 0 {
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-mb.closed:
			return exchange.ErrMailboxClosed
		}
	}
	m.CopyFrom(&mb.x.req)
	return nil
}

// processCPU returns the process's CPU time in ns.
func processCPU() int64 {
	var ru unix.Rusage
	unix.Getrusage(unix.RUSAGE_SELF, &ru)
	return ru.Utime.Nano() + ru.Stime.Nano()
}

// BenchmarkCostServe is the agent side of a no-op action with 64 bytes of
// arguments: receive, dispatch, run inline, answer (process CPU time per
// request; run with -cpu 1, so that nothing else runs beside).
func BenchmarkCostServe(b *testing.B) {
	ctx := context.Background()
	x := &feedX{Local: exchange.NewLocal(), done: make(chan struct{})}
	defer x.Close()
	client, err := x.RegisterClient(ctx)
	if err != nil {
		b.Fatal(err)
	}
	eb, _ := newEcho()
	rt, err := agent.NewRuntime(ctx, x, eb)
	if err != nil {
		b.Fatal(err)
	}
	x.req = *exchange.NewActionRequest(client, rt.ID(), "noop64", msgp.AppendBytes(nil, args64()))
	x.want = int64(b.N) + 1000
	x.left.Store(x.want)
	b.ReportAllocs()
	b.ResetTimer()
	start := processCPU()
	ran := make(chan error, 1)
	go func() { ran <- rt.Run(ctx) }()
	<-x.done
	b.StopTimer()
	b.ReportMetric(float64(processCPU()-start)/float64(x.want), "cpu-ns/op")
	rt.Shutdown()
	if err := <-ran; err != nil {
		b.Fatal(err)
	}
}
