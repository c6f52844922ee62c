// Package quietlog is the default logger of shmex's libraries: warnings
// and errors go to slog.Default, everything else nowhere.
//
// Go libraries stay quiet in programs that never asked for their logs: a
// program hears what it should act on (a mailbox found corrupt, a payload
// that could not be released), not the routine events of recovery (an
// owner found dead and its mailbox terminated), which the packages log at
// debug level for a logger passed through their options.
package quietlog

import (
	"context"
	"log/slog"
	"slices"
)

// Logger passes the records at warn level and above to slog.Default()'s
// handler, looked up at each record (so that a later slog.SetDefault
// counts), and drops the rest.
var Logger = slog.New(handler{})

// Or returns l, or Logger when l is nil: the default of a logger option.
func Or(l *slog.Logger) *slog.Logger {
	if l == nil {
		return Logger
	}
	return l
}

// handler passes the records at warn level and above to the default
// logger's handler, replaying on it the attributes and groups it was given.
type handler struct {
	ops []op
}

// op is a WithGroup (group set) or a WithAttrs.
type op struct {
	group string
	attrs []slog.Attr
}

func (handler) Enabled(ctx context.Context, l slog.Level) bool {
	return l >= slog.LevelWarn && slog.Default().Handler().Enabled(ctx, l)
}

func (q handler) Handle(ctx context.Context, r slog.Record) error {
	h := slog.Default().Handler()
	for _, op := range q.ops {
		if op.group != "" {
			h = h.WithGroup(op.group)
		} else {
			h = h.WithAttrs(op.attrs)
		}
	}
	return h.Handle(ctx, r)
}

func (q handler) WithAttrs(as []slog.Attr) slog.Handler {
	if len(as) == 0 {
		return q
	}
	return handler{ops: append(slices.Clip(q.ops), op{attrs: as})}
}

func (q handler) WithGroup(name string) slog.Handler {
	if name == "" {
		return q
	}
	return handler{ops: append(slices.Clip(q.ops), op{group: name})}
}
