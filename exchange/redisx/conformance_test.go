package redisx_test

import (
	"math/bits"
	"os"
	"sync"
	"testing"
	"time"

	"github.com/shmex/shmex/exchange"
	"github.com/shmex/shmex/exchange/exchangetest"
	"github.com/shmex/shmex/exchange/redisx"
)

// TestRedisConformance runs the conformance suite on the Redis exchange:
// each subtest on its own prefix of the shared server; the second
// participant is another handle of this process.
func TestRedisConformance(t *testing.T) {
	srv := sharedServer(t)
	exchangetest.Run(t, exchangetest.Harness{
		New: func(t *testing.T, cfg exchangetest.Config) exchange.Exchange {
			var opts []redisx.Option
			if cfg.MailboxCapacity > 0 {
				opts = append(opts, redisx.WithMailboxCapacity(cfg.MailboxCapacity))
			}
			return open(t, srv.Addr, newPrefix(), opts...)
		},
		Open: func(t *testing.T, ex exchange.Exchange) exchange.Exchange {
			x := ex.(*redisx.Exchange)
			return open(t, srv.Addr, x.Prefix())
		},
	})
}

// mailboxBytes returns a ring size that holds at least n messages of about
// 100 bytes and not many more (as the shared-memory exchange's tests).
func mailboxBytes(n int) int {
	need := n * 128
	if need < 1024 {
		return 1024
	}
	return 1 << bits.Len(uint(need-1))
}

// shmRoot returns a private root directory for shared-memory exchanges,
// removed with the test.
func shmRoot(t testing.TB) string {
	t.Helper()
	dir := t.TempDir()
	if err := os.Chmod(dir, 0o700); err != nil {
		t.Fatal(err)
	}
	return dir
}

// openHybrid opens a hybrid handle on the shared-memory exchange "x" under
// root, node node, and the Redis exchange prefix; closed with the test.
func openHybrid(t testing.TB, addr, prefix, root, node string, shmOpts []exchange.Option, opts ...redisx.Option) *redisx.Hybrid {
	t.Helper()
	shmOpts = append([]exchange.Option{exchange.WithRoot(root)}, shmOpts...)
	opts = append([]redisx.Option{redisx.WithAddr(addr), redisx.WithPrefix(prefix), redisx.WithNode(node)}, opts...)
	h, err := redisx.OpenHybrid(ctxT(t, 20*time.Second), "x", shmOpts, opts...)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { h.Close() })
	return h
}

// TestHybridConformance runs the conformance suite on the hybrid exchange
// of one node: every entity is registered in Redis too, and the second
// participant is another handle of the node.
func TestHybridConformance(t *testing.T) {
	srv := sharedServer(t)
	type made struct{ prefix, root string }
	var mu sync.Mutex
	info := map[exchange.Exchange]made{}
	exchangetest.Run(t, exchangetest.Harness{
		New: func(t *testing.T, cfg exchangetest.Config) exchange.Exchange {
			var shmOpts []exchange.Option
			var opts []redisx.Option
			if cfg.MailboxCapacity > 0 {
				shmOpts = append(shmOpts, exchange.WithMailboxBytes(mailboxBytes(cfg.MailboxCapacity)))
				opts = append(opts, redisx.WithMailboxCapacity(cfg.MailboxCapacity))
			}
			p, root := newPrefix(), shmRoot(t)
			h := openHybrid(t, srv.Addr, p, root, "n1", shmOpts, opts...)
			mu.Lock()
			info[h] = made{p, root}
			mu.Unlock()
			return h
		},
		Open: func(t *testing.T, ex exchange.Exchange) exchange.Exchange {
			mu.Lock()
			m := info[ex]
			mu.Unlock()
			h := openHybrid(t, srv.Addr, m.prefix, m.root, "n1", nil)
			mu.Lock()
			info[h] = m
			mu.Unlock()
			return h
		},
	})
}
