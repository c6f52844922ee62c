package quietlog_test

import (
	"bytes"
	"log/slog"
	"strings"
	"testing"

	"github.com/shmex/shmex/internal/quietlog"
)

// TestLevels: below warn nothing reaches slog.Default, even when it takes
// debug records; warnings do, with the attributes and groups given on the
// way, through the default set after the logger was made.
func TestLevels(t *testing.T) {
	var buf bytes.Buffer
	old := slog.Default()
	t.Cleanup(func() { slog.SetDefault(old) })
	l := quietlog.Logger.With("exchange", "x").WithGroup("g")
	slog.SetDefault(slog.New(slog.NewTextHandler(&buf, &slog.HandlerOptions{Level: slog.LevelDebug})))

	l.Debug("routine debug")
	l.Info("routine info")
	if buf.Len() != 0 {
		t.Fatalf("records below warn reached the default logger: %q", buf.String())
	}
	l.Warn("heed this", "k", 1)
	out := buf.String()
	for _, want := range []string{"level=WARN", `msg="heed this"`, "exchange=x", "g.k=1"} {
		if !strings.Contains(out, want) {
			t.Fatalf("warning %q lacks %q", out, want)
		}
	}
	if quietlog.Or(nil) != quietlog.Logger || quietlog.Or(old) != old {
		t.Fatal("Or does not default to Logger")
	}
}
