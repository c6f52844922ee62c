package exchange_test

import (
	"crypto/rand"
	"encoding/hex"
	"math/bits"
	"os"
	"path/filepath"
	"testing"

	"github.com/shmex/shmex/exchange"
	"github.com/shmex/shmex/exchange/exchangetest"
	"github.com/shmex/shmex/shm"
)

// testRoot returns a private root directory in shared memory, removed when
// the test ends.
func testRoot(t testing.TB) string {
	t.Helper()
	b := make([]byte, 6)
	rand.Read(b)
	root := filepath.Join(shm.DefaultRoot(), "test-x-"+hex.EncodeToString(b))
	if err := shm.EnsureDir(filepath.Join(root, "probe")); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(root) })
	return root
}

// mailboxBytes returns a ring size that holds at least n messages of about
// 100 bytes and not many more.
func mailboxBytes(n int) int {
	need := n * 128
	if need < 1024 {
		return 1024
	}
	return 1 << bits.Len(uint(need-1))
}

func newSHM(t *testing.T, cfg exchangetest.Config) exchange.Exchange {
	root := testRoot(t)
	opts := []exchange.Option{exchange.WithRoot(root)}
	if cfg.MailboxCapacity > 0 {
		opts = append(opts, exchange.WithMailboxBytes(mailboxBytes(cfg.MailboxCapacity)))
	}
	x, err := exchange.Open("conformance", opts...)
	if err != nil {
		t.Fatal(err)
	}
	return x
}

func TestSHMConformance(t *testing.T) {
	exchangetest.Run(t, exchangetest.Harness{
		New: newSHM,
		Open: func(t *testing.T, ex exchange.Exchange) exchange.Exchange {
			x := ex.(*exchange.SHM)
			y, err := exchange.Open(x.Name(), exchange.WithRoot(filepath.Dir(x.Dir())))
			if err != nil {
				t.Fatal(err)
			}
			return y
		},
	})
}
