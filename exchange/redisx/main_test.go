package redisx_test

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"os"
	"sync"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/shmex/shmex/exchange/redisx"
	"github.com/shmex/shmex/internal/childproc"
	"github.com/shmex/shmex/internal/redistest"
)

// TestMain is the one TestMain of the package's test binary: it dispatches
// to a child role when the binary is re-run as a test child (a simulated
// node), and otherwise runs the tests, then stops the shared redis-server.
func TestMain(m *testing.M) {
	redis.SetLogger(quiet{}) // go-redis logs every failed dial; the tests cause many
	serveLaunchedAgent()     // an agent process of TestLaunchersAcrossNodes
	if childproc.IsChild() {
		childproc.Main(m, roles)
	}
	code := m.Run()
	stopShared()
	os.Exit(code)
}

var (
	sharedOnce sync.Once
	shared     *redistest.Server
	sharedErr  error
	sharedDir  string
)

// sharedServer returns the redis-server that most tests share (each with
// its own key prefix), started at first use.
func sharedServer(t testing.TB) *redistest.Server {
	t.Helper()
	redistest.Require(t)
	sharedOnce.Do(func() {
		sharedDir, sharedErr = os.MkdirTemp("", "redisx-test-")
		if sharedErr == nil {
			shared, sharedErr = redistest.StartProcess(sharedDir)
		}
	})
	if sharedErr != nil {
		t.Fatalf("start redis-server: %v", sharedErr)
	}
	return shared
}

func stopShared() {
	if shared != nil {
		shared.Kill()
	}
	if sharedDir != "" {
		os.RemoveAll(sharedDir)
	}
}

// newPrefix returns a fresh key prefix.
func newPrefix() string {
	b := make([]byte, 6)
	rand.Read(b)
	return "t" + hex.EncodeToString(b)
}

// ctxT returns a context that ends after d or with the test.
func ctxT(t testing.TB, d time.Duration) context.Context {
	c, cancel := context.WithTimeout(context.Background(), d)
	t.Cleanup(cancel)
	return c
}

// open opens a handle on the exchange at addr with prefix, closed with the
// test.
func open(t testing.TB, addr, prefix string, opts ...redisx.Option) *redisx.Exchange {
	t.Helper()
	x, err := redisx.Open(ctxT(t, 20*time.Second), append([]redisx.Option{redisx.WithAddr(addr), redisx.WithPrefix(prefix)}, opts...)...)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { x.Close() })
	return x
}

type quiet struct{}

func (quiet) Printf(context.Context, string, ...any) {}
