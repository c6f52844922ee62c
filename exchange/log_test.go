package exchange_test

import (
	"log/slog"
	"testing"
	"time"

	"github.com/shmex/shmex/exchange"
	"github.com/shmex/shmex/internal/childproc"
	"github.com/shmex/shmex/internal/logrecord"
)

// TestSHMQuietByDefault (issue 17): a process that never asked for the
// exchange's logs hears nothing below warn from it, however much
// slog.Default would take: the owner of a mailbox found dead and its
// mailbox terminated is routine, logged at debug level to a logger given
// with WithLogger.
func TestSHMQuietByDefault(t *testing.T) {
	def := logrecord.SetDefault(t)
	root := testRoot(t)
	ctx := testCtx(t, time.Minute)

	// run finds the owner of a mailbox dead through the handle x.
	run := func(name string, opts ...exchange.Option) {
		x, err := exchange.Open(name, append([]exchange.Option{exchange.WithRoot(root)}, opts...)...)
		if err != nil {
			t.Fatal(err)
		}
		defer x.Close()
		aid, err := x.RegisterAgent(ctx, exchange.Behavior{Name: "Mortal"})
		if err != nil {
			t.Fatal(err)
		}
		kid := childproc.Start(t, "receiver", root, name, aid.String())
		line(t, kid, "receiver start", childStart)
		kid.Kill()
		if st, err := x.Status(ctx, aid); err != nil || st != exchange.StatusTerminated {
			t.Fatalf("Status of a dead owner's mailbox = %v, %v", st, err)
		}
	}

	run("quiet")
	if n, msgs := def.Below(); n != 0 {
		t.Fatalf("slog.Default got %d records below warn from a process that never asked: %q", n, msgs)
	}
	mine := &logrecord.Recorder{}
	run("told", exchange.WithLogger(slog.New(mine)))
	if n, msgs := mine.Below(); n == 0 {
		t.Fatalf("WithLogger's logger got no debug record of the dead owner: %q", msgs)
	}
	if n, msgs := def.Below(); n != 0 {
		t.Fatalf("slog.Default got records below warn: %q", msgs)
	}
}
