package proxystore

import (
	"context"
	"log/slog"
	"testing"

	"github.com/shmex/shmex/exchange"
	"github.com/shmex/shmex/internal/childproc"
	"github.com/shmex/shmex/internal/logrecord"
)

// TestQuietByDefault (issue 17): a process that never asked for the
// package's logs hears nothing below warn from it, however much
// slog.Default would take. The arena of an owner killed by SIGKILL,
// removed when the next arena opens, is routine: logged at debug level to
// a logger given with WithArenaLogger. The wrapper's and the file store's
// default loggers pass nothing below warn either.
func TestQuietByDefault(t *testing.T) {
	def := logrecord.SetDefault(t)
	ctx := context.Background()

	// run opens an arena on a directory holding the arena of a killed
	// owner.
	run := func(opts ...ArenaOption) {
		dir := arenaDir(t)
		owner := childproc.Start(t, "arena-owner", dir)
		childLine(t, owner, "ready")
		childCmd(t, owner, "put 5000 owned", "")
		owner.Kill()
		openArena(t, dir, opts...)
	}
	run()
	if n, msgs := def.Below(); n != 0 {
		t.Fatalf("slog.Default got %d records below warn from a process that never asked: %q", n, msgs)
	}
	mine := &logrecord.Recorder{}
	run(WithArenaLogger(slog.New(mine)))
	if n, msgs := mine.Below(); n == 0 {
		t.Fatalf("WithArenaLogger's logger got no debug record of the dead owner's arena: %q", msgs)
	}

	w := Wrap(exchange.NewLocal(), NewMemStore())
	defer w.Close()
	fs, err := OpenFileStore(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	defer fs.Close()
	for what, l := range map[string]*slog.Logger{"Wrap": w.o.log, "OpenFileStore": fs.opts.log} {
		if l.Enabled(ctx, slog.LevelInfo) || !l.Enabled(ctx, slog.LevelWarn) {
			t.Errorf("%s's default logger: info enabled %v, warn enabled %v; want false, true", what, l.Enabled(ctx, slog.LevelInfo), l.Enabled(ctx, slog.LevelWarn))
		}
	}
	if n, msgs := def.Below(); n != 0 {
		t.Fatalf("slog.Default got records below warn: %q", msgs)
	}
}
