package proxystore

import (
	"path/filepath"
	"sync/atomic"
	"testing"

	"github.com/shmex/shmex/exchange"
	"github.com/shmex/shmex/exchange/exchangetest"
)

// testArenaOpts keeps the arenas of the wrapper's tests small.
var testArenaOpts = []ArenaOption{WithSegmentSize(1 << 20), WithPrefault(false)}

// TestWrapConformanceSHMArena runs the suite over the shared-memory
// exchange with the arena store; the second participant opens its own
// exchange handle and its own Arena on the exchange directory, as another
// process would.
func TestWrapConformanceSHMArena(t *testing.T) {
	if testing.Short() {
		t.Skip("short")
	}
	for _, wc := range []wrapConfig{wrapConfigs[0], wrapConfigs[3]} {
		t.Run(wc.name, func(t *testing.T) {
			var puts, resolves atomic.Int64
			newStore := func(t *testing.T, dir string) *countingStore {
				a, err := OpenArena(dir, testArenaOpts...)
				if err != nil {
					t.Fatal(err)
				}
				cs := &countingStore{Store: a}
				t.Cleanup(func() {
					a.Close()
					puts.Add(cs.puts.Load())
					resolves.Add(cs.resolves.Load())
				})
				return cs
			}
			t.Run("suite", func(t *testing.T) {
				exchangetest.Run(t, exchangetest.Harness{
					New: func(t *testing.T, cfg exchangetest.Config) exchange.Exchange {
						mb := 0
						if cfg.MailboxCapacity > 0 {
							mb = mailboxBytes(cfg.MailboxCapacity)
						}
						x := openSHM(t, filepath.Join(t.TempDir(), "root"), mb)
						return Wrap(x, newStore(t, x.Dir()), wc.opts()...)
					},
					Open: func(t *testing.T, ex exchange.Exchange) exchange.Exchange {
						x := ex.(*Exchange).Unwrap().(*exchange.SHM)
						y := openSHM(t, filepath.Dir(x.Dir()), 0)
						return Wrap(y, newStore(t, y.Dir()), wc.opts()...)
					},
				})
			})
			c := &countingStore{}
			c.puts.Store(puts.Load())
			c.resolves.Store(resolves.Load())
			checkProxied(t, c)
		})
	}
}
