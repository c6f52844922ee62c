package systest

import (
	"context"
	"fmt"
	"log/slog"
	"os"
	"testing"
	"time"

	"github.com/shmex/shmex/agent"
	"github.com/shmex/shmex/exchange"
)

// churn registers n mailboxes in x and terminates them, the way a
// long-running process makes and drops clients: half are exchange clients
// (registered, received from, terminated), half agent.Clients (made,
// used, closed, which terminates their mailbox).
func churn(ctx context.Context, x *exchange.SHM, n int) error {
	for i := range n {
		if i%2 == 0 {
			id, err := x.RegisterClient(ctx, exchange.WithName("churn"))
			if err != nil {
				return err
			}
			mb, err := x.Mailbox(ctx, id)
			if err != nil {
				return err
			}
			if err := x.Send(ctx, exchange.NewActionRequest(id, id, "x", nil)); err != nil {
				return err
			}
			var m exchange.Message
			if err := mb.Recv(ctx, &m); err != nil {
				return err
			}
			mb.Close()
			if err := x.Terminate(ctx, id); err != nil {
				return err
			}
			continue
		}
		cl, err := agent.NewClient(ctx, x, agent.WithLogger(slog.New(slog.DiscardHandler)))
		if err != nil {
			return err
		}
		if err := cl.Close(); err != nil {
			return err
		}
	}
	return nil
}

// TestTerminatedMailboxesReleased: a process that registers mailboxes and
// terminates them (agent.NewClient and Close, for every batch of work)
// must stay flat: once a terminated mailbox is drained and its receiver
// closed, its ring segment must go, and so must the process's mapping of
// it, without waiting for gc. (That every other process that sent to it
// unmaps it too: exchange's TestSHMProcessSenderUnmaps and TestSoak's
// terminated_ring_maps.) (Found by this test: the ring of a mailbox
// terminated while its owner lived stayed in the directory and mapped in
// every process that had terminated or sent to it, until they exited: in
// a 10-minute soak the receiving process went from 102 MB to 955 MB
// resident; fixed by 8bb9b83 and 997039c.)
func TestTerminatedMailboxesReleased(t *testing.T) {
	t.Parallel()
	root := newRoot(t)
	x := openX(t, root, "churn", &logSink{}, exchange.WithMailboxBytes(4<<10))
	ctx, cancel := context.WithTimeout(context.Background(), bound(2*time.Minute))
	defer cancel()
	// Without gc first: Terminate, the receiver's close and the last
	// send release the ring (its file and this process's mapping) as
	// they end; gc after it finds nothing more to remove.
	measure := func() (files, maps int) {
		ps, err := readProc(os.Getpid(), root)
		if err != nil {
			t.Fatal(err)
		}
		return fileCount(x.Dir()), ps.ShmMaps
	}
	if err := churn(ctx, x, 20); err != nil {
		t.Fatal(err)
	}
	files0, maps0 := measure()
	const n = 200
	if err := churn(ctx, x, n); err != nil {
		t.Fatal(err)
	}
	files1, maps1 := measure()
	var errs []string
	if files1 > files0+8 {
		errs = append(errs, fmt.Sprintf("files in the exchange directory: %d, then %d after %d more mailboxes registered and terminated (no gc run)", files0, files1, n))
	}
	if maps1 > maps0+8 {
		errs = append(errs, fmt.Sprintf("this process's mappings of segments: %d, then %d", maps0, maps1))
	}
	if err := gc(ctx, x); err != nil {
		t.Fatal(err)
	}
	if files2, maps2 := measure(); files2 != files1 || maps2 != maps1 {
		errs = append(errs, fmt.Sprintf("gc found more to release: files %d, then %d; mappings %d, then %d", files1, files2, maps1, maps2))
	}
	if len(errs) > 0 {
		t.Fatal(errorsOf("not flat", errs))
	}
}
