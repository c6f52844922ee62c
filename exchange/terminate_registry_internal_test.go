package exchange

import (
	"context"
	"os"
	"path/filepath"
	"testing"
	"time"
)

// TestCloseAfterRegistryOnlyTerminate: a mailbox terminated in the
// registry alone (as a look-up that found its owner dead but could not map
// its ring does), its ring left open with a message in it, then its
// receiver detaches: Close closes the ring and drains it. Before, the
// drain waited a second for a close that never came (drainWait), and gave
// up, the ring still open.
func TestCloseAfterRegistryOnlyTerminate(t *testing.T) {
	root := filepath.Join(t.TempDir(), "root")
	if err := os.Mkdir(root, 0o700); err != nil {
		t.Fatal(err)
	}
	x, err := Open("regonly", WithRoot(root))
	if err != nil {
		t.Fatal(err)
	}
	defer x.Close()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	id, err := x.RegisterClient(ctx)
	if err != nil {
		t.Fatal(err)
	}
	mb, err := x.Mailbox(ctx, id)
	if err != nil {
		t.Fatal(err)
	}
	if err := x.Send(ctx, &Message{Kind: KindPingResponse, Tag: NewTag(), Src: id, Dest: id}); err != nil {
		t.Fatal(err)
	}
	i, s := x.lookup(id)
	if i < 0 {
		t.Fatal("no slot for the client")
	}
	if !x.terminateEntry(id, s, anyOwner) {
		t.Fatal("terminateEntry did not terminate the mailbox")
	}
	d := mb.(*shmMailbox).d
	if d.r.Closed() {
		t.Fatal("the ring was closed by a registry-only terminate")
	}
	if !x.pin(d) { // keeps the ring mapped past Close, to look at it
		t.Fatal("could not pin the ring")
	}
	defer x.unpin(d)
	if err := mb.Close(); err != nil {
		t.Fatal(err)
	}
	if st := d.r.Stats(); !d.r.Closed() || st.Head != st.Tail {
		t.Fatalf("Close of the receiver of a mailbox terminated in the registry alone left its ring open or undrained: closed %v, %+v", d.r.Closed(), st)
	}
}
