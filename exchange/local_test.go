package exchange_test

import (
	"context"
	"encoding/binary"
	"errors"
	"sync"
	"testing"
	"time"

	"github.com/shmex/shmex/exchange"
	"github.com/shmex/shmex/exchange/exchangetest"
)

func newLocal(t *testing.T, cfg exchangetest.Config) exchange.Exchange {
	var opts []exchange.LocalOption
	if cfg.MailboxCapacity > 0 {
		opts = append(opts, exchange.WithLocalCapacity(cfg.MailboxCapacity))
	}
	return exchange.NewLocal(opts...)
}

// TestLocalConformance runs the suite with one handle per exchange.
func TestLocalConformance(t *testing.T) {
	exchangetest.Run(t, exchangetest.Harness{New: newLocal})
}

// TestLocalConformanceHandles runs the suite with a second handle
// (Local.NewHandle) as the other participant.
func TestLocalConformanceHandles(t *testing.T) {
	exchangetest.Run(t, exchangetest.Harness{
		New: newLocal,
		Open: func(t *testing.T, ex exchange.Exchange) exchange.Exchange {
			return ex.(*exchange.Local).NewHandle()
		},
	})
}

func TestLocalCompetingReceivers(t *testing.T) {
	ctx, cancel := context.WithTimeout(t.Context(), 20*time.Second)
	defer cancel()
	ex := exchange.NewLocal(exchange.WithLocalCapacity(4))
	defer ex.Close()
	agent, _ := ex.RegisterAgent(ctx, exchange.Behavior{Name: "B"})
	client, _ := ex.RegisterClient(ctx)

	const n = 300
	var mu sync.Mutex
	seen := make(map[uint64]int)
	var wg sync.WaitGroup
	for range 3 {
		mb, err := ex.Mailbox(ctx, agent)
		if err != nil {
			t.Fatal(err)
		}
		defer mb.Close()
		wg.Add(1)
		go func() {
			defer wg.Done()
			var m exchange.Message
			for mb.Recv(ctx, &m) == nil {
				mu.Lock()
				seen[binary.BigEndian.Uint64(m.Args)]++
				mu.Unlock()
			}
		}()
	}
	m := exchange.NewActionRequest(client, agent, "f", nil)
	for i := range n {
		m.Args = binary.BigEndian.AppendUint64(m.Args[:0], uint64(i))
		if err := ex.Send(ctx, m); err != nil {
			t.Fatal(err)
		}
	}
	// Terminate ends the receivers once they have drained the mailbox;
	// the requests still queued at that moment are answered instead.
	if err := ex.Terminate(ctx, agent); err != nil {
		t.Fatal(err)
	}
	wg.Wait()
	box, _ := ex.Mailbox(ctx, client)
	answered := 0
	var r exchange.Message
	for {
		short, cancel := context.WithTimeout(ctx, 20*time.Millisecond)
		err := box.Recv(short, &r)
		cancel()
		if err != nil {
			break
		}
		answered++
	}
	for i := range uint64(n) {
		if seen[i] > 1 {
			t.Fatalf("message %d received %d times", i, seen[i])
		}
	}
	if len(seen)+answered != n {
		t.Fatalf("%d received and %d answered, want %d in all", len(seen), answered, n)
	}
}

func TestLocalOptions(t *testing.T) {
	ctx := t.Context()
	ex := exchange.NewLocal(exchange.WithLocalMaxMessageSize(200), exchange.WithLocalCapacity(0), nil)
	defer ex.Close()
	agent, _ := ex.RegisterAgent(ctx, exchange.Behavior{Name: "B"})
	client, _ := ex.RegisterClient(ctx)
	if err := ex.Send(ctx, exchange.NewActionRequest(client, agent, "f", make([]byte, 200))); !errors.Is(err, exchange.ErrMessageTooLarge) {
		t.Fatalf("Send over WithLocalMaxMessageSize: %v", err)
	}
	if err := ex.Send(ctx, exchange.NewActionRequest(client, agent, "f", make([]byte, 10))); err != nil {
		t.Fatal(err)
	}
	// Capacity 0 means 1: the second message waits.
	short, cancel := context.WithTimeout(ctx, 20*time.Millisecond)
	defer cancel()
	if err := ex.Send(short, exchange.NewPingRequest(client, agent)); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("Send to a full mailbox of capacity 1: %v", err)
	}
}

// Terminate answers pending requests even when the requester's mailbox is
// full, so that Terminate never waits and no caller waits forever.
func TestLocalTerminateAnswersIntoFullMailbox(t *testing.T) {
	ctx, cancel := context.WithTimeout(t.Context(), 20*time.Second)
	defer cancel()
	ex := exchange.NewLocal(exchange.WithLocalCapacity(1))
	defer ex.Close()
	agent, _ := ex.RegisterAgent(ctx, exchange.Behavior{Name: "B"})
	client, _ := ex.RegisterClient(ctx)
	req := exchange.NewActionRequest(client, agent, "f", nil)
	if err := ex.Send(ctx, req); err != nil {
		t.Fatal(err)
	}
	filler := exchange.NewActionResponse(agent, client, exchange.NewTag(), nil)
	if err := ex.Send(ctx, filler); err != nil {
		t.Fatal(err)
	}
	if err := ex.Terminate(ctx, agent); err != nil {
		t.Fatal(err)
	}
	box, _ := ex.Mailbox(ctx, client)
	var m exchange.Message
	for _, wantTag := range []exchange.UUID{filler.Tag, req.Tag} {
		if err := box.Recv(ctx, &m); err != nil || m.Tag != wantTag {
			t.Fatalf("Recv = %v, %v", &m, err)
		}
	}
	if !errors.Is(m.Err(), exchange.ErrMailboxClosed) {
		t.Fatalf("answer %v", &m)
	}
}

// BenchmarkLocalSendRecv sends an ActionRequest with 64 bytes of args and
// receives it into a reused Message, on one goroutine.
func BenchmarkLocalSendRecv(b *testing.B) {
	ctx := context.Background()
	ex := exchange.NewLocal()
	defer ex.Close()
	agent, _ := ex.RegisterAgent(ctx, exchange.Behavior{Name: "B"})
	client, _ := ex.RegisterClient(ctx)
	box, _ := ex.Mailbox(ctx, agent)
	m := exchange.NewActionRequest(client, agent, "compute", make([]byte, 64))
	var got exchange.Message
	b.ReportAllocs()
	for b.Loop() {
		if err := ex.Send(ctx, m); err != nil {
			b.Fatal(err)
		}
		if err := box.Recv(ctx, &got); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkLocalPingPong measures a request/response round trip between a
// client goroutine and an agent goroutine.
func BenchmarkLocalPingPong(b *testing.B) {
	ctx := context.Background()
	ex := exchange.NewLocal()
	defer ex.Close()
	agent, _ := ex.RegisterAgent(ctx, exchange.Behavior{Name: "B"})
	client, _ := ex.RegisterClient(ctx)
	agentBox, _ := ex.Mailbox(ctx, agent)
	clientBox, _ := ex.Mailbox(ctx, client)
	go func() {
		var m exchange.Message
		for agentBox.Recv(ctx, &m) == nil {
			m.SetResponse(&m, m.Args)
			if ex.Send(ctx, &m) != nil {
				return
			}
		}
	}()
	m := exchange.NewActionRequest(client, agent, "echo", make([]byte, 64))
	var r exchange.Message
	b.ReportAllocs()
	for b.Loop() {
		if err := ex.Send(ctx, m); err != nil {
			b.Fatal(err)
		}
		if err := clientBox.Recv(ctx, &r); err != nil {
			b.Fatal(err)
		}
	}
	b.StopTimer()
	ex.Terminate(ctx, agent)
}
