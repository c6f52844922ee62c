package exchange_test

import (
	"context"
	"os"
	"testing"
	"time"

	"github.com/shmex/shmex/exchange"
)

// TestSHMShadowedEntryKeepsOthersRing: a damaged registry holds an active
// mailbox's UUID in a second slot too (a faulty writer's duplicate, that
// no look-up reaches), whose owner is dead. Discover terminates that
// shadowed entry in the registry alone; Collect then must not remove the
// ring at its path, which is the live mailbox's. Before, it did (and so
// would a registration that reused the shadowed slot); a shadowed entry
// already terminated in the damaged registry went the same way.
func TestSHMShadowedEntryKeepsOthersRing(t *testing.T) {
	for _, terminated := range []bool{false, true} {
		tp := newRegTemplate(t)
		counter := tp.ids[0]
		x, err := tp.open(t, func(reg []byte, live uint64) []byte {
			body := reg[regBody:]
			tp.revive(body, live)
			from := body[regOffTable+0*regEntrySize+regEntryUUID:]
			copy(body[regOffTable+3*regEntrySize+regEntryUUID:], from[:16])
			if terminated {
				b := body[regOffTable+3*regEntrySize+regEntryState:]
				b[0] = b[0]&^3 | 2
			}
			exchange.SealRegistry(body)
			return reg
		}, nil)
		if err != nil {
			t.Fatal(err)
		}
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		path := x.RingPath(counter)
		if _, err := x.Discover(ctx, "Owned", false); err != nil { // terminates the shadowed slot 3
			t.Fatal(err)
		}
		if st, err := x.Status(ctx, counter); st != exchange.StatusActive || err != nil {
			t.Fatalf("terminated=%v: Status(counter) = %v, %v", terminated, st, err)
		}
		dry, err := x.Collect(ctx, exchange.DryRun())
		if err != nil {
			t.Fatal(err)
		}
		st, err := x.Collect(ctx)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := os.Stat(path); err != nil {
			t.Fatalf("terminated=%v: Collect removed the ring of the active mailbox %v (live owner): %v (removed %v; dry run %v)", terminated, counter, err, st.Removed, dry.Removed)
		}
		cancel()
	}
}
