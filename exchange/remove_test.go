package exchange_test

import (
	"errors"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/shmex/shmex/exchange"
	"github.com/shmex/shmex/internal/childproc"
)

// TestRemove: Remove refuses an exchange that a live process uses, naming
// its pid (this process, then a child), and removes it, files and all,
// once nobody does; a missing exchange is no error, a bad name is.
func TestRemove(t *testing.T) {
	root := testRoot(t)
	const name = "removable"
	ctx := testCtx(t, time.Minute)
	if err := exchange.Remove(name, exchange.WithRoot(root)); err != nil {
		t.Fatalf("Remove of a missing exchange: %v", err)
	}
	if err := exchange.Remove("../etc", exchange.WithRoot(root)); !errors.Is(err, exchange.ErrInvalidArgument) {
		t.Fatalf("Remove of a bad name: %v", err)
	}
	x, err := exchange.Open(name, exchange.WithRoot(root), exchange.WithLogger(discardLog))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := x.RegisterAgent(ctx, exchange.Behavior{Name: "Kept"}); err != nil {
		t.Fatal(err)
	}
	err = exchange.Remove(name, exchange.WithRoot(root))
	if !errors.Is(err, exchange.ErrExchangeInUse) || !strings.Contains(err.Error(), strconv.Itoa(os.Getpid())) {
		t.Fatalf("Remove while this process uses it: %v; want ErrExchangeInUse naming pid %d", err, os.Getpid())
	}
	kid := childproc.Start(t, "mapper", root, name)
	line(t, kid, "mapper start", childStart)
	x.Close()
	err = exchange.Remove(name, exchange.WithRoot(root))
	if pid := strconv.Itoa(kid.Cmd.Process.Pid); !errors.Is(err, exchange.ErrExchangeInUse) || !strings.Contains(err.Error(), pid) {
		t.Fatalf("Remove while a child uses it: %v; want ErrExchangeInUse naming pid %s", err, pid)
	}
	if _, err := os.Stat(filepath.Join(root, name, "registry")); err != nil {
		t.Fatalf("a refused Remove touched the exchange: %v", err)
	}
	kid.CloseStdin()
	if err := kid.Wait(childReply); err != nil {
		t.Fatal(err)
	}
	if err := exchange.Remove(name, exchange.WithRoot(root)); err != nil {
		t.Fatalf("Remove of an unused exchange: %v", err)
	}
	if ents, err := os.ReadDir(root); err != nil || len(ents) != 1 { // testRoot's probe
		t.Fatalf("root after Remove: %v, %v", ents, err)
	}
	// A new exchange of the same name starts empty.
	y := openSHM(t, root, name)
	if found, err := y.Discover(ctx, "Kept", false); err != nil || len(found) != 0 {
		t.Fatalf("Discover after Remove = %v, %v", found, err)
	}
}
