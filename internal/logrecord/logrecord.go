// Package logrecord is a slog.Handler for tests that records the level and
// message of every record, to check what a package logs and at which level.
package logrecord

import (
	"context"
	"log/slog"
	"sync"
	"testing"
)

// Recorder is a slog.Handler that takes every record and keeps its level
// and message. It is safe for concurrent use.
type Recorder struct {
	mu   sync.Mutex
	msgs []string
	low  int // records below warn
	warn int // records at warn and above
}

// Enabled implements slog.Handler: every level.
func (h *Recorder) Enabled(context.Context, slog.Level) bool { return true }

// Handle implements slog.Handler.
func (h *Recorder) Handle(_ context.Context, r slog.Record) error {
	h.mu.Lock()
	defer h.mu.Unlock()
	if r.Level < slog.LevelWarn {
		h.low++
	} else {
		h.warn++
	}
	h.msgs = append(h.msgs, r.Level.String()+" "+r.Message)
	return nil
}

// WithAttrs implements slog.Handler; attributes are not kept.
func (h *Recorder) WithAttrs([]slog.Attr) slog.Handler { return h }

// WithGroup implements slog.Handler; groups are not kept.
func (h *Recorder) WithGroup(string) slog.Handler { return h }

// Below returns how many records were below warn level, and every
// record's "LEVEL message".
func (h *Recorder) Below() (int, []string) {
	below, _, msgs := h.Levels()
	return below, msgs
}

// Levels returns how many records were below warn level and how many at
// warn or above, and every record's "LEVEL message".
func (h *Recorder) Levels() (below, warn int, msgs []string) {
	h.mu.Lock()
	defer h.mu.Unlock()
	return h.low, h.warn, append([]string(nil), h.msgs...)
}

// SetDefault makes a new Recorder the handler of slog.Default until the
// test ends, and returns it.
func SetDefault(t testing.TB) *Recorder {
	h := &Recorder{}
	old := slog.Default()
	slog.SetDefault(slog.New(h))
	t.Cleanup(func() { slog.SetDefault(old) })
	return h
}
