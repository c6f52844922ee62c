package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"text/tabwriter"

	"github.com/shmex/shmex/exchange"
	"github.com/shmex/shmex/shm"
)

var lsCommand = &command{
	name: "ls",
	args: "[-a] [--json] [NAME...]",
	help: `Without NAME, lists the exchanges under the root, one a line: the pids of
the live processes that use it (PIDS), how many lock files dead processes
left (DEAD: gc removes them), how many mailboxes are active and terminated,
and the bytes its files take.

With NAMEs, lists for each named exchange its processes (pid, alive or
dead, lock file) and its mailboxes: id, status, the pid of its owner
process ("dead" once it died), the bytes queued in its ring (depth) and
its capacity, name, behavior and the behaviors it implements. Terminated
mailboxes are left out unless -a.

A mailbox is active while its owner process lives: ls reports the mailbox
of a dead owner terminated, without changing anything (the next process
that looks at it through the exchange, or gc, terminates it). shmex stat
shows the counters of each mailbox.

A file in an exchange directory that is not what shmex puts there (a FIFO,
a socket, a link) is reported with its path, and ls exits with status 1.

--json prints a JSON array with one object per exchange:
  {"name", "dir", "bytes",
   "processes": [{"pid", "alive", "lock"}],
   "active", "terminated",
   "mailboxes": [{"id", "role", "name", "behavior", "implements", "status",
                  "owner": {"pid", "alive"}, "depth", "capacity"}],
   "errors": ["..."]}
with every exchange's mailboxes, terminated ones only with -a.`,
	flags: func(fs *flag.FlagSet) any {
		o := &lsOptions{}
		fs.BoolVar(&o.all, "a", false, "list terminated mailboxes too")
		fs.BoolVar(&o.json, "json", false, "print JSON")
		return o
	},
	run: runLs,
}

type lsOptions struct{ all, json bool }

// exchangeInfo is what ls shows of an exchange; its JSON form is the
// output of ls --json.
type exchangeInfo struct {
	Name       string        `json:"name"`
	Dir        string        `json:"dir"`
	Bytes      int64         `json:"bytes"`
	Processes  []processInfo `json:"processes"`
	Active     int           `json:"active"`
	Terminated int           `json:"terminated"`
	Mailboxes  []mailboxInfo `json:"mailboxes"`
	Errors     []string      `json:"errors,omitempty"`

	errs    []error
	counted bool // the registry was read: Active and Terminated hold
}

type processInfo struct {
	PID   int    `json:"pid"`   // as written in its lock file; 0 when unreadable
	Alive bool   `json:"alive"` // whether it holds its lock
	Lock  string `json:"lock"`  // the lock file's name in the exchange directory
}

type mailboxInfo struct {
	ID         string   `json:"id"`
	Role       string   `json:"role"`
	Name       string   `json:"name,omitempty"`
	Behavior   string   `json:"behavior,omitempty"`
	Implements []string `json:"implements,omitempty"`
	Status     string   `json:"status"`
	Owner      proc     `json:"owner"`    // the owner process (pid 0: unknown)
	Depth      int      `json:"depth"`    // bytes queued in its ring
	Capacity   int      `json:"capacity"` // of its ring; 0 when the ring is gone
}

func (in *exchangeInfo) fail(err error) {
	for _, e := range flatten(err) {
		in.errs = append(in.errs, e)
		in.Errors = append(in.Errors, e.Error())
	}
}

// err returns the errors met while looking at the exchange, each under
// its name.
func (in *exchangeInfo) err() error { return under(in.Name, errors.Join(in.errs...)) }

// flatten returns the errors that err joins, or err alone.
func flatten(err error) []error {
	if err == nil {
		return nil
	}
	if j, ok := err.(interface{ Unwrap() []error }); ok {
		var all []error
		for _, e := range j.Unwrap() {
			all = append(all, flatten(e)...)
		}
		return all
	}
	return []error{err}
}

// under puts name before each error that err joins, so that each line
// of the message says which exchange it is about.
func under(name string, err error) error {
	var errs []error
	for _, e := range flatten(err) {
		errs = append(errs, fmt.Errorf("%s: %w", name, e))
	}
	return errors.Join(errs...)
}

// livePIDs returns the distinct pids of the live processes, in order.
func (in *exchangeInfo) livePIDs() []int {
	var pids []int
	for _, p := range in.Processes {
		if p.Alive && p.PID > 0 && !slices.Contains(pids, p.PID) {
			pids = append(pids, p.PID)
		}
	}
	slices.Sort(pids)
	return pids
}

func (in *exchangeInfo) dead() int {
	n := 0
	for _, p := range in.Processes {
		if !p.Alive {
			n++
		}
	}
	return n
}

// inspect gathers what ls shows of exchange name under root. Problems are
// recorded in the result, which holds whatever could be read.
func inspect(ctx context.Context, root, name string, all bool) *exchangeInfo {
	in := &exchangeInfo{Name: name, Processes: []processInfo{}, Mailboxes: []mailboxInfo{}}
	dir, err := exchangeDir(root, name)
	if err != nil {
		in.fail(err)
		return in
	}
	in.Dir = dir
	// The exchange first: the lock file this process holds while it
	// has the exchange open is gone when the processes are listed.
	mbs, err := mailboxes(ctx, root, name)
	if err != nil {
		// A mailbox whose ring cannot be read is listed all the same.
		in.fail(err)
	}
	if mbs != nil {
		in.counted = true
		for _, e := range mbs {
			if e.Status == exchange.StatusActive {
				in.Active++
			} else {
				in.Terminated++
			}
			if e.Status == exchange.StatusActive || all {
				in.Mailboxes = append(in.Mailboxes, mailboxInfo{
					ID: e.ID.String(), Role: e.ID.Role.String(), Name: e.Name,
					Behavior: e.Behavior.Name, Implements: e.Behavior.Implements,
					Status: e.Status.String(),
					Owner:  proc{PID: e.Owner.PID, Alive: e.Owner.Alive},
					Depth:  e.Depth, Capacity: e.Capacity,
				})
			}
		}
	}
	lives, err := shm.Lives(dir)
	if err != nil {
		in.fail(err)
	}
	for _, l := range lives {
		in.Processes = append(in.Processes, processInfo{PID: l.PID, Alive: l.Alive, Lock: filepath.Base(l.Path)})
	}
	if in.Bytes, err = dirSize(dir); err != nil {
		in.fail(err)
	}
	return in
}

// openQuiet joins an existing exchange. Its warnings (damaged registry
// entries) go nowhere: the commands report what they could read, and
// errors.
func openQuiet(root, name string) (*exchange.SHM, error) {
	return exchange.Open(name, exchange.WithRoot(root), exchange.WithLogger(slog.New(slog.DiscardHandler)))
}

// mailboxes joins an existing exchange and lists its mailboxes.
func mailboxes(ctx context.Context, root, name string) ([]exchange.MailboxStats, error) {
	x, err := openQuiet(root, name)
	if err != nil {
		return nil, err
	}
	defer x.Close()
	return x.Mailboxes(ctx)
}

// exchanges returns the names of the exchange directories under root.
func exchanges(root string) ([]string, error) {
	entries, err := shm.ReadDir(root)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	var names []string
	for _, e := range entries {
		if e.IsDir() && shm.ValidName(e.Name()) == nil {
			names = append(names, e.Name())
		}
	}
	return names, nil
}

// exchangeDir returns the directory of an existing exchange.
func exchangeDir(root, name string) (string, error) {
	dir, err := shm.ExchangeDir(root, name)
	if err != nil {
		return "", err
	}
	if err := shm.CheckDir(dir); err != nil {
		if errors.Is(err, shm.ErrNotExist) {
			return "", fmt.Errorf("no exchange %s under %s", name, root)
		}
		return "", err
	}
	return dir, nil
}

// dirSize sums the sizes of the regular files in dir.
func dirSize(dir string) (int64, error) {
	entries, err := shm.ReadDir(dir)
	if err != nil {
		return 0, err
	}
	var total int64
	for _, e := range entries {
		if fi, err := e.Info(); err == nil && fi.Mode().IsRegular() {
			total += fi.Size()
		}
	}
	return total, nil
}

func runLs(ctx context.Context, env *env, opts any, names []string) error {
	o := opts.(*lsOptions)
	detail := len(names) > 0
	if !detail {
		var err error
		if names, err = exchanges(env.root); err != nil {
			return err
		}
	}
	infos := make([]*exchangeInfo, 0, len(names))
	var errs []error
	for _, name := range names {
		if err := ctx.Err(); err != nil {
			return err
		}
		in := inspect(ctx, env.root, name, o.all)
		infos = append(infos, in)
		if err := in.err(); err != nil {
			errs = append(errs, err)
		}
	}
	switch {
	case o.json:
		enc := json.NewEncoder(env.stdout)
		enc.SetIndent("", "  ")
		if err := enc.Encode(infos); err != nil {
			return err
		}
	case detail:
		for i, in := range infos {
			if i > 0 {
				fmt.Fprintln(env.stdout)
			}
			if err := printExchange(env.stdout, in, o.all); err != nil {
				return err
			}
		}
	default:
		if err := printExchanges(env.stdout, infos); err != nil {
			return err
		}
	}
	return errors.Join(errs...)
}

// printExchanges prints the one-line summaries of ls.
func printExchanges(w io.Writer, infos []*exchangeInfo) error {
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "EXCHANGE\tPIDS\tDEAD\tACTIVE\tTERMINATED\tBYTES")
	for _, in := range infos {
		active, terminated := strconv.Itoa(in.Active), strconv.Itoa(in.Terminated)
		if !in.counted {
			active, terminated = "?", "?"
		}
		fmt.Fprintf(tw, "%s\t%s\t%d\t%s\t%s\t%s\n", in.Name, pidList(in.livePIDs()), in.dead(), active, terminated, humanBytes(in.Bytes))
	}
	return tw.Flush()
}

// printExchange prints the processes and mailboxes of one exchange.
func printExchange(w io.Writer, in *exchangeInfo, all bool) error {
	if in.Dir == "" {
		return nil // no such exchange: the error says so
	}
	fmt.Fprintf(w, "exchange %s: %s, %s\n", in.Name, in.Dir, humanBytes(in.Bytes))
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "PID\tPROCESS\tLOCK FILE")
	for _, p := range in.Processes {
		state := "dead"
		if p.Alive {
			state = "alive"
		}
		pid := "?"
		if p.PID > 0 {
			pid = strconv.Itoa(p.PID)
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\n", pid, state, p.Lock)
	}
	fmt.Fprintln(tw)
	if !in.counted {
		fmt.Fprintln(tw, "mailboxes: unknown, the registry could not be read (see the error)")
		return tw.Flush()
	}
	fmt.Fprintln(tw, "MAILBOX\tSTATUS\tOWNER\tDEPTH\tCAPACITY\tNAME\tBEHAVIOR")
	for _, m := range in.Mailboxes {
		beh := m.Behavior
		if len(m.Implements) > 0 {
			beh += " (" + strings.Join(m.Implements, ", ") + ")"
		}
		capacity := "-" // the ring is gone
		if m.Capacity > 0 {
			capacity = humanBytes(int64(m.Capacity))
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\t%s\n", m.ID, m.Status, procLabel(m.Owner), humanBytes(int64(m.Depth)), capacity, m.Name, beh)
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	if !all && in.Terminated > 0 {
		fmt.Fprintf(w, "(%d terminated mailbox(es) not listed: -a lists them)\n", in.Terminated)
	}
	return nil
}

func pidList(pids []int) string {
	if len(pids) == 0 {
		return "-"
	}
	s := make([]string, len(pids))
	for i, p := range pids {
		s[i] = strconv.Itoa(p)
	}
	return strings.Join(s, ",")
}

// humanBytes formats n bytes in binary units.
func humanBytes(n int64) string {
	const unit = 1024
	if n < unit {
		return fmt.Sprintf("%d B", n)
	}
	div, exp := int64(unit), 0
	for m := n / unit; m >= unit && exp < 4; m /= unit {
		div *= unit
		exp++
	}
	return fmt.Sprintf("%.1f %ciB", float64(n)/float64(div), "KMGTP"[exp])
}

// proc is a process in the output of ls and stat.
type proc struct {
	PID   int  `json:"pid"` // 0: unknown
	Alive bool `json:"alive"`
}

// procLabel is a process's pid, with "dead" once it died.
func procLabel(p proc) string {
	if p.Alive {
		return pidLabel(p.PID)
	}
	return pidLabel(p.PID) + " dead"
}

func pidLabel(pid int) string {
	if pid <= 0 {
		return "?"
	}
	return strconv.Itoa(pid)
}
