package exchange_test

import (
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"math/bits"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"

	"github.com/shmex/shmex/exchange"
	"github.com/shmex/shmex/exchange/exchangetest"
	"github.com/shmex/shmex/shm"
)

// testRoot returns a private root directory in shared memory, removed when
// the test ends. Its name holds this process's pid: the first call of a
// process removes the roots of test processes that died before their
// cleanups ran (a fuzzing worker, which go test stops at the end of
// -fuzztime, never runs its target's).
func testRoot(t testing.TB) string {
	t.Helper()
	sweepTestRoots.Do(removeDeadTestRoots)
	b := make([]byte, 6)
	rand.Read(b)
	root := filepath.Join(shm.DefaultRoot(), fmt.Sprintf("%s%d-%s", testRootPrefix, os.Getpid(), hex.EncodeToString(b)))
	if err := shm.EnsureDir(filepath.Join(root, "probe")); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(root) })
	return root
}

// testRootPrefix starts the name of every root testRoot makes, before the
// pid of the process that made it.
const testRootPrefix = "test-x-"

var sweepTestRoots sync.Once

// removeDeadTestRoots removes the roots that testRoot made in processes
// that are gone.
func removeDeadTestRoots() {
	ents, _ := os.ReadDir(shm.DefaultRoot())
	for _, e := range ents {
		rest, ok := strings.CutPrefix(e.Name(), testRootPrefix)
		if !ok || !e.IsDir() {
			continue
		}
		p, _, ok := strings.Cut(rest, "-")
		pid, err := strconv.Atoi(p)
		if !ok || err != nil || pid <= 0 {
			continue
		}
		if err := syscall.Kill(pid, 0); errors.Is(err, syscall.ESRCH) {
			os.RemoveAll(filepath.Join(shm.DefaultRoot(), e.Name()))
		}
	}
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

// TestRemoveDeadTestRoots: a root left by a test process that died (a
// fuzzing worker stopped by go test) goes at the next test process's first
// testRoot; one of a live process stays.
func TestRemoveDeadTestRoots(t *testing.T) {
	cmd := exec.Command(os.Args[0], "-test.run", "^$")
	if err := cmd.Run(); err != nil {
		t.Fatal(err)
	}
	dead := filepath.Join(shm.DefaultRoot(), fmt.Sprintf("%s%d-leftover", testRootPrefix, cmd.Process.Pid))
	live := filepath.Join(shm.DefaultRoot(), fmt.Sprintf("%s%d-inuse", testRootPrefix, os.Getpid()))
	for _, d := range []string{dead, live} {
		if err := shm.EnsureDir(filepath.Join(d, "x")); err != nil {
			t.Fatal(err)
		}
	}
	defer os.RemoveAll(live)
	removeDeadTestRoots()
	if _, err := os.Stat(dead); !errors.Is(err, os.ErrNotExist) {
		os.RemoveAll(dead)
		t.Errorf("the root of dead process %d: %v; want it removed", cmd.Process.Pid, err)
	}
	if _, err := os.Stat(live); err != nil {
		t.Errorf("the root of this live process: %v; want it kept", err)
	}
}
