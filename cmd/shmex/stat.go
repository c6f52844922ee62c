package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/shmex/shmex/exchange"
	"github.com/shmex/shmex/proxystore"
	"github.com/shmex/shmex/ring"
	"github.com/shmex/shmex/shm"
)

var statCommand = &command{
	name: "stat",
	args: "[-a] [--json] [--watch] [--interval D] [--count N] [NAME...]",
	help: `Prints the counters that the processes of the named exchanges (every
exchange by default) keep in shared memory:
  - per mailbox: its owner (pid, and "dead" once its process died), the
    bytes queued in its ring and its capacity, the messages and bytes sent
    and received, the messages queued, how often senders found it full,
    how often its receiver slept on the futex and was woken, and the
    messages of dead senders recovered (turned into padding);
  - per arena (the segments one process owns): segments, size, bytes in
    use and free, blocks held (live proxies, and released ones the owner
    has not reclaimed yet) and their payload bytes;
  - per process: pid, alive or dead, the mailboxes it owns, the arena
    bytes it owns, its lock files.
Terminated mailboxes are left out unless -a.

The counters are kept by the rings as messages go through them, without
a lock or a system call, and by the arenas under the allocator's lock
they take anyway; shmex only reads them, changing nothing. In the table,
BYTES are the encoded bytes of the messages sent (--json gives those
received too) and RECOVERED counts both kinds of recovery. They count from the creation of a mailbox's
ring (a reopened mailbox starts again from zero). Programs built with the
tag shmex_nocounters do not count.

--watch prints them again every --interval (1s by default), in place on a
terminal, with the rates per second since the previous refresh (messages
and bytes sent and received, per mailbox); --count N stops after N
refreshes. Interrupt (Ctrl-C) ends it.

--json prints one JSON object per refresh (one line each with --watch):
  {"time", "exchanges": [{"name", "dir",
     "mailboxes": [{"id", "role", "name", "status", "incarnation",
        "owner": {"pid", "alive"}, "receiver": {"pid", "alive"},
        "ring", "capacity", "max_message", "depth", "producers", "slots",
        "closed", "sent", "sent_bytes", "received", "received_bytes",
        "queued", "full_waits", "wakeups", "sleeps", "space_wakeups",
        "recovered", "recovered_by_timeout", "recovered_bytes",
        "rates": {"sent", "sent_bytes", "received", "received_bytes"}}],
     "arenas": [{"owner": {"pid", "alive"}, "segments", "data_bytes",
        "in_use", "free", "blocks", "payload", "allocs", "frees"}],
     "processes": [{"pid", "alive", "locks", "mailboxes", "arena_bytes"}],
     "errors": ["..."]}]}
with "rates" from the second refresh of --watch on (per second).`,
	flags: func(fs *flag.FlagSet) any {
		o := &statOptions{}
		fs.BoolVar(&o.all, "a", false, "list terminated mailboxes too")
		fs.BoolVar(&o.json, "json", false, "print JSON")
		fs.BoolVar(&o.watch, "watch", false, "refresh every --interval until interrupted")
		fs.DurationVar(&o.interval, "interval", time.Second, "the `D`uration between two refreshes of --watch")
		fs.IntVar(&o.count, "count", 0, "with --watch, stop after `N` refreshes (0: never)")
		return o
	},
	run: runStat,
}

type statOptions struct {
	all, json, watch bool
	interval         time.Duration
	count            int
}

// statFrame is one refresh of stat; its JSON form is the output of stat
// --json.
type statFrame struct {
	Time      time.Time       `json:"time"`
	Exchanges []*exchangeStat `json:"exchanges"`
}

type exchangeStat struct {
	Name      string          `json:"name"`
	Dir       string          `json:"dir"`
	Mailboxes []*mailboxStat  `json:"mailboxes"`
	Arenas    []*arenaStat    `json:"arenas"`
	Processes []*processStat  `json:"processes"`
	Errors    []string        `json:"errors,omitempty"`
	errs      []error         // Errors, as errors
	counted   bool            // the registry was read: Mailboxes holds
	hidden    int             // terminated mailboxes left out (no -a)
	lifePID   map[uint64]proc // liveness id -> process, from the lock files
}

type mailboxStat struct {
	ID          string `json:"id"`
	Role        string `json:"role"`
	Name        string `json:"name,omitempty"`
	Status      string `json:"status"`
	Incarnation uint32 `json:"incarnation"`
	Owner       proc   `json:"owner"`
	Receiver    *proc  `json:"receiver,omitempty"` // nil: no receiver attached

	Ring       bool   `json:"ring"` // false: the ring is gone, the rest is zero
	Capacity   int    `json:"capacity"`
	MaxMessage int    `json:"max_message"`
	Depth      int    `json:"depth"`
	Producers  int    `json:"producers"`
	Slots      int    `json:"slots"`
	Closed     bool   `json:"closed"`
	Sent       uint64 `json:"sent"`
	SentBytes  uint64 `json:"sent_bytes"`
	Received   uint64 `json:"received"`
	RecvBytes  uint64 `json:"received_bytes"`
	Queued     uint64 `json:"queued"`
	FullWaits  uint64 `json:"full_waits"`
	Wakeups    uint64 `json:"wakeups"`
	Sleeps     uint64 `json:"sleeps"`
	SpaceWakes uint64 `json:"space_wakeups"`
	Recovered  uint64 `json:"recovered"`
	RecoveredT uint64 `json:"recovered_by_timeout"`
	RecoveredB uint64 `json:"recovered_bytes"`
	Rates      *rates `json:"rates,omitempty"`

	key string // identifies the ring across refreshes: id and incarnation
}

// rates are per second, between two refreshes.
type rates struct {
	Sent      float64 `json:"sent"`
	SentBytes float64 `json:"sent_bytes"`
	Received  float64 `json:"received"`
	RecvBytes float64 `json:"received_bytes"`
}

type arenaStat struct {
	Owner     proc   `json:"owner"`
	Segments  int    `json:"segments"`
	DataBytes uint64 `json:"data_bytes"`
	InUse     uint64 `json:"in_use"`
	Free      uint64 `json:"free"`
	Blocks    uint64 `json:"blocks"`
	Payload   uint64 `json:"payload"`
	Allocs    uint64 `json:"allocs"`
	Frees     uint64 `json:"frees"`

	owner uint64 // liveness id
}

type processStat struct {
	PID        int      `json:"pid"`
	Alive      bool     `json:"alive"`
	Locks      []string `json:"locks"` // its lock files: one per exchange handle family, one per arena store
	Mailboxes  int      `json:"mailboxes"`
	ArenaBytes uint64   `json:"arena_bytes"`
}

func (es *exchangeStat) fail(err error) {
	for _, e := range flatten(err) {
		es.errs = append(es.errs, e)
		es.Errors = append(es.Errors, e.Error())
	}
}

func runStat(ctx context.Context, env *env, opts any, names []string) error {
	o := opts.(*statOptions)
	if o.watch && o.interval <= 0 {
		return usageError("--interval must be positive")
	}
	if o.count < 0 {
		return usageError("--count must not be negative")
	}
	inPlace := !o.json && isTerminal(env.stdout)
	var prev *statFrame
	for n := 1; ; n++ {
		frame, err := gatherStats(ctx, env.root, names, o.all)
		if o.watch && ctx.Err() != nil {
			return nil // interrupted: the normal end of --watch
		}
		if err != nil {
			return err
		}
		if prev != nil {
			addRates(frame, prev)
		}
		var errs []error
		for _, es := range frame.Exchanges {
			errs = append(errs, under(es.Name, errors.Join(es.errs...)))
		}
		if o.json {
			enc := json.NewEncoder(env.stdout)
			if !o.watch {
				enc.SetIndent("", "  ")
			}
			if err := enc.Encode(frame); err != nil {
				return err
			}
		} else {
			var buf bytes.Buffer
			if inPlace {
				buf.WriteString(cursorHome)
			} else if n > 1 {
				buf.WriteString("\n")
			}
			if err := printStats(&buf, frame, o); err != nil {
				return err
			}
			out := buf.Bytes()
			if inPlace {
				out = rewriteLines(out)
			}
			if _, err := env.stdout.Write(out); err != nil {
				return err
			}
		}
		if !o.watch || o.count > 0 && n >= o.count {
			return errors.Join(errs...)
		}
		// Errors of a refresh go to standard error as they come; the exit
		// status reflects the last refresh.
		if err := errors.Join(errs...); err != nil {
			for _, l := range strings.Split(err.Error(), "\n") {
				fmt.Fprintln(env.stderr, "shmex stat:", l)
			}
		}
		prev = frame
		select {
		case <-ctx.Done():
			return nil // interrupted: the normal end of --watch
		case <-time.After(o.interval):
		}
	}
}

// ANSI sequences of a refresh in place: the cursor to the top left, clear
// to the end of the line, clear from the cursor to the end of the screen.
const (
	cursorHome = "\x1b[H"
	clearLine  = "\x1b[K"
	clearBelow = "\x1b[J"
)

// rewriteLines makes a refresh overwrite the one before on a terminal:
// each line clears what the previous refresh left at its end, and the
// lines the previous refresh had beyond the new one's are cleared (no
// clearing of the whole screen between refreshes: no flicker).
func rewriteLines(frame []byte) []byte {
	out := bytes.ReplaceAll(frame, []byte("\n"), []byte(clearLine+"\n"))
	return append(out, clearBelow...)
}

// isTerminal reports whether w is a terminal (a variable: tests replace
// it).
var isTerminal = func(w io.Writer) bool {
	f, ok := w.(*os.File)
	if !ok {
		return false
	}
	fi, err := f.Stat()
	return err == nil && fi.Mode()&os.ModeCharDevice != 0
}

// gatherStats reads the statistics of the named exchanges (every exchange
// under root when names is empty).
func gatherStats(ctx context.Context, root string, names []string, all bool) (*statFrame, error) {
	if len(names) == 0 {
		var err error
		if names, err = exchanges(root); err != nil {
			return nil, err
		}
	}
	frame := &statFrame{Time: time.Now(), Exchanges: []*exchangeStat{}}
	for _, name := range names {
		if err := ctx.Err(); err != nil {
			return nil, err
		}
		frame.Exchanges = append(frame.Exchanges, exchangeStats(ctx, root, name, all))
	}
	return frame, nil
}

// exchangeStats reads the statistics of exchange name. Problems are
// recorded in the result, which holds whatever could be read.
func exchangeStats(ctx context.Context, root, name string, all bool) *exchangeStat {
	es := &exchangeStat{Name: name, Mailboxes: []*mailboxStat{}, Arenas: []*arenaStat{}, Processes: []*processStat{},
		lifePID: map[uint64]proc{}}
	dir, err := exchangeDir(root, name)
	if err != nil {
		es.fail(err)
		return es
	}
	es.Dir = dir
	// The exchange first: the lock file this process holds while it has
	// the exchange open is gone when the processes are listed.
	var mbs []exchange.MailboxStats
	x, err := openQuiet(root, name)
	if err == nil {
		mbs, err = x.Mailboxes(ctx)
		x.Close()
		es.counted = true
	}
	if err != nil {
		es.fail(err)
	}
	segs, err := proxystore.ArenaSegments(dir)
	if err != nil {
		es.fail(fmt.Errorf("arenas: %w", err))
	}
	lives, err := shm.Lives(dir)
	if err != nil {
		es.fail(err)
	}
	// A process holds several lock files (one per exchange handle
	// family, one per arena store): one row per pid, alive or dead (a
	// dead process's pid may have been taken by a live one since).
	byLife := map[uint64]*processStat{}
	byPID := map[proc]*processStat{}
	for _, l := range lives {
		key := proc{PID: l.PID, Alive: l.Alive}
		p := byPID[key]
		if p == nil || l.PID <= 0 {
			p = &processStat{PID: l.PID, Alive: l.Alive}
			byPID[key] = p
			es.Processes = append(es.Processes, p)
		}
		p.Locks = append(p.Locks, filepath.Base(l.Path))
		es.lifePID[l.ID] = key
		byLife[l.ID] = p
	}
	for i := range mbs {
		m := &mbs[i]
		if p := byLife[m.Owner.ID]; p != nil && m.Status == exchange.StatusActive {
			p.Mailboxes++
		}
		if m.Status != exchange.StatusActive && !all {
			es.hidden++
			continue
		}
		es.Mailboxes = append(es.Mailboxes, newMailboxStat(m))
	}
	arenas := map[uint64]*arenaStat{}
	for _, s := range segs {
		a := arenas[s.Owner]
		if a == nil {
			a = &arenaStat{owner: s.Owner, Owner: es.lifePID[s.Owner]}
			arenas[s.Owner] = a
			es.Arenas = append(es.Arenas, a)
		}
		a.Segments++
		a.DataBytes += s.DataBytes
		a.InUse += s.InUse
		a.Free += s.Free
		a.Blocks += s.Blocks
		a.Payload += s.Payload
		a.Allocs += s.Allocs
		a.Frees += s.Frees
		if p := byLife[s.Owner]; p != nil {
			p.ArenaBytes += s.DataBytes
		}
	}
	slices.SortStableFunc(es.Arenas, func(a, b *arenaStat) int { return a.Owner.PID - b.Owner.PID })
	return es
}

func newMailboxStat(m *exchange.MailboxStats) *mailboxStat {
	s := &mailboxStat{
		ID: m.ID.String(), Role: m.ID.Role.String(), Name: m.Name, Status: m.Status.String(),
		Incarnation: m.Incarnation,
		Owner:       proc{PID: m.Owner.PID, Alive: m.Owner.Alive},
		Ring:        m.HasRing, Capacity: m.Capacity, MaxMessage: m.MaxMessage, Depth: m.Depth,
		Producers: m.Producers, Slots: m.Slots, Closed: m.Closed,
		Sent: m.Sent, SentBytes: m.SentBytes, Received: m.Received, RecvBytes: m.ReceivedBytes,
		Queued: m.Queued(), FullWaits: m.FullWaits, Wakeups: m.Wakeups, Sleeps: m.Sleeps, SpaceWakes: m.SpaceWakeups,
		Recovered: m.Recovered, RecoveredT: m.RecoveredByTimeout, RecoveredB: m.RecoveredBytes,
		key: m.ID.String() + "." + strconv.FormatUint(uint64(m.Incarnation), 10),
	}
	if m.Receiver.ID != 0 {
		s.Receiver = &proc{PID: m.Receiver.PID, Alive: m.Receiver.Alive}
	}
	return s
}

// addRates sets the rates of the mailboxes of frame from their counts in
// prev, the refresh before.
func addRates(frame, prev *statFrame) {
	dt := frame.Time.Sub(prev.Time).Seconds()
	if dt <= 0 {
		return
	}
	before := map[string]*mailboxStat{}
	for _, es := range prev.Exchanges {
		for _, m := range es.Mailboxes {
			before[es.Name+"/"+m.key] = m
		}
	}
	per := func(now, then uint64) float64 {
		if now < then {
			return 0
		}
		return float64(now-then) / dt
	}
	for _, es := range frame.Exchanges {
		for _, m := range es.Mailboxes {
			p := before[es.Name+"/"+m.key]
			if p == nil {
				continue
			}
			m.Rates = &rates{
				Sent: per(m.Sent, p.Sent), SentBytes: per(m.SentBytes, p.SentBytes),
				Received: per(m.Received, p.Received), RecvBytes: per(m.RecvBytes, p.RecvBytes),
			}
		}
	}
}

// printStats prints a refresh as tables.
func printStats(w io.Writer, frame *statFrame, o *statOptions) error {
	if len(frame.Exchanges) == 0 {
		fmt.Fprintln(w, "no exchange")
		return nil
	}
	for i, es := range frame.Exchanges {
		if i > 0 {
			fmt.Fprintln(w)
		}
		if es.Dir == "" {
			continue // no such exchange: the error says so
		}
		when := frame.Time.Format("15:04:05")
		if o.watch {
			when += ", every " + o.interval.String()
		}
		fmt.Fprintf(w, "exchange %s (%s)\n", es.Name, when)
		tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
		switch {
		case !es.counted:
			fmt.Fprintln(w, "mailboxes: unknown, the registry could not be read (see the error)")
		case len(es.Mailboxes) == 0:
			fmt.Fprintln(w, "no mailbox")
		default:
			fmt.Fprint(tw, "MAILBOX\tSTATUS\tOWNER\tQUEUED\tDEPTH\tCAPACITY\tSENT\tRECEIVED\tBYTES\t")
			if o.watch {
				fmt.Fprint(tw, "SENT/S\tRECEIVED/S\tBYTES/S\t")
			}
			fmt.Fprintln(tw, "FULL\tSLEEPS\tWAKEUPS\tRECOVERED")
			for _, m := range es.Mailboxes {
				fmt.Fprintf(tw, "%s\t%s\t%s\t%d\t%s\t%s\t%d\t%d\t%s\t", mailboxLabel(m), m.Status, procLabel(m.Owner),
					m.Queued, humanBytes(int64(m.Depth)), humanBytes(int64(m.Capacity)), m.Sent, m.Received, humanBytes(int64(m.SentBytes)))
				if o.watch {
					if r := m.Rates; r != nil {
						fmt.Fprintf(tw, "%.0f\t%.0f\t%s\t", r.Sent, r.Received, humanBytes(int64(r.SentBytes)))
					} else {
						fmt.Fprint(tw, "-\t-\t-\t")
					}
				}
				fmt.Fprintf(tw, "%d\t%d\t%d\t%d\n", m.FullWaits, m.Sleeps, m.Wakeups, m.Recovered+m.RecoveredT)
			}
		}
		if err := tw.Flush(); err != nil {
			return err
		}
		if es.hidden > 0 {
			fmt.Fprintf(w, "(%d terminated mailbox(es) not listed: -a lists them)\n", es.hidden)
		}
		if len(es.Arenas) > 0 {
			fmt.Fprintln(tw)
			fmt.Fprintln(tw, "ARENA OF\tSEGMENTS\tSIZE\tIN USE\tFREE\tBLOCKS\tPAYLOAD")
			for _, a := range es.Arenas {
				fmt.Fprintf(tw, "%s\t%d\t%s\t%s\t%s\t%d\t%s\n", procLabel(a.Owner), a.Segments, humanBytes(int64(a.DataBytes)),
					humanBytes(int64(a.InUse)), humanBytes(int64(a.Free)), a.Blocks, humanBytes(int64(a.Payload)))
			}
		}
		fmt.Fprintln(tw)
		fmt.Fprintln(tw, "PID\tPROCESS\tMAILBOXES\tARENA\tLOCK FILES")
		for _, p := range es.Processes {
			state := "dead"
			if p.Alive {
				state = "alive"
			}
			fmt.Fprintf(tw, "%s\t%s\t%d\t%s\t%s\n", pidLabel(p.PID), state, p.Mailboxes, humanBytes(int64(p.ArenaBytes)), strings.Join(p.Locks, ","))
		}
		if err := tw.Flush(); err != nil {
			return err
		}
	}
	if !ring.Counting() {
		fmt.Fprintln(w, "(this shmex was built with shmex_nocounters; the counters are the other processes')")
	}
	return nil
}

// mailboxLabel names a mailbox in a table: its name, or its id.
func mailboxLabel(m *mailboxStat) string {
	if m.Name != "" {
		return m.Name + " (" + m.Role + ")"
	}
	return m.ID
}
