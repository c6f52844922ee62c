package exchange_test

import (
	"context"
	"log/slog"
	"sync"
	"testing"
	"time"

	"github.com/shmex/shmex/exchange"
	"github.com/shmex/shmex/internal/childproc"
)

// recordHandler records the level and message of every record.
type recordHandler struct {
	mu   sync.Mutex
	msgs []string
	low  int // records below warn
}

func (h *recordHandler) Enabled(context.Context, slog.Level) bool { return true }
func (h *recordHandler) Handle(_ context.Context, r slog.Record) error {
	h.mu.Lock()
	defer h.mu.Unlock()
	if r.Level < slog.LevelWarn {
		h.low++
	}
	h.msgs = append(h.msgs, r.Level.String()+" "+r.Message)
	return nil
}
func (h *recordHandler) WithAttrs([]slog.Attr) slog.Handler { return h }
func (h *recordHandler) WithGroup(string) slog.Handler      { return h }

func (h *recordHandler) below() (int, []string) {
	h.mu.Lock()
	defer h.mu.Unlock()
	return h.low, append([]string(nil), h.msgs...)
}

// TestSHMQuietByDefault (issue 17): a process that never asked for the
// exchange's logs hears nothing below warn from it, however much
// slog.Default would take: the owner of a mailbox found dead and its
// mailbox terminated is routine, logged at debug level to a logger given
// with WithLogger.
func TestSHMQuietByDefault(t *testing.T) {
	def := &recordHandler{}
	old := slog.Default()
	slog.SetDefault(slog.New(def))
	t.Cleanup(func() { slog.SetDefault(old) })
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
	if n, msgs := def.below(); n != 0 {
		t.Fatalf("slog.Default got %d records below warn from a process that never asked: %q", n, msgs)
	}
	mine := &recordHandler{}
	run("told", exchange.WithLogger(slog.New(mine)))
	if n, msgs := mine.below(); n == 0 {
		t.Fatalf("WithLogger's logger got no debug record of the dead owner: %q", msgs)
	}
	if n, msgs := def.below(); n != 0 {
		t.Fatalf("slog.Default got records below warn: %q", msgs)
	}
}
