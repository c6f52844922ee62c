package systest

import (
	"context"
	"testing"
	"time"

	"github.com/shmex/shmex/exchange"
)

// registerChild creates an exchange and registers a client in it,
// reporting "ready" after Open and "ok <id>" once RegisterClient returned.
// args: root.
func registerChild(args []string) int {
	say("hello")
	if len(args) != 1 {
		return childFail("register: args %q", args)
	}
	x, err := childX(args[0], "fresh", 4<<10)
	if err != nil {
		return childFail("Open: %v", err)
	}
	defer x.Close()
	say("ready")
	id, err := x.RegisterClient(context.Background())
	if err != nil {
		return childFail("RegisterClient: %v", err)
	}
	say("ok", id)
	return 0
}

// TestRegisterAfterCreate: the process that creates an exchange registers
// a mailbox in it at once (main 9186911 broke it: fixed by 2d22fb4, which
// has its own test in shm; this one stays as the system's view of it). Registry writers serialize on an flock of the
// registry file; a lock that the registry's creator keeps (the temporary
// file's creation lock, held through the creator's mapping of the
// published segment: the kernel drops an flock when the last reference to
// the open file goes, and a mapping is one) makes every registration,
// termination and take-over, in every process, wait for ever in flock(2),
// which no context bounds. Run in a child, so that a hang fails the test
// instead of leaving a goroutine stuck in a system call.
func TestRegisterAfterCreate(t *testing.T) {
	t.Parallel()
	root := newRoot(t)
	ok := make(chan string, 1)
	k := startKid(t, "register", func(f []string) {
		if len(f) == 2 && f[0] == "ok" {
			ok <- f[1]
		}
	}, root)
	if _, err := k.waitReady(); err != nil {
		t.Fatal(err)
	}
	check := func(id string) {
		if _, err := exchange.ParseEntityID(id); err != nil {
			t.Fatal(err)
		}
	}
	select {
	case id := <-ok:
		check(id)
	case <-k.ended:
		// The child exits once it said ok, and its lines are handled
		// before ended closes: both cases may be ready at once.
		select {
		case id := <-ok:
			check(id)
		default:
			t.Fatalf("child ended: %v %q", k.exitErr(), k.failures())
		}
	case <-time.After(bound(30 * time.Second)):
		k.kill()
		t.Fatalf("RegisterClient in the exchange's creator still blocked after %v (in flock of the registry)", bound(30*time.Second))
	}
}
