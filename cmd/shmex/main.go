// Command shmex inspects and cleans the shared-memory exchanges of the
// current user.
//
// Usage:
//
//	shmex [-root DIR] ls            list the exchanges under the root
//	shmex [-root DIR] ls NAME       list the mailboxes of exchange NAME
//	shmex [-root DIR] gc [NAME...]  remove what dead processes left (all exchanges by default)
//	shmex [-root DIR] rm [-f] NAME  remove exchange NAME (refused while a process uses it, unless -f)
//
// The root defaults to $SHMEX_ROOT, else /dev/shm/shmex-<uid>.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"text/tabwriter"

	"github.com/shmex/shmex/exchange"
	"github.com/shmex/shmex/proxystore"
	"github.com/shmex/shmex/shm"
)

// Exit codes.
const (
	exitOK    = 0
	exitError = 1
	exitUsage = 2
)

func main() {
	os.Exit(run(context.Background(), os.Args[1:], os.Stdout, os.Stderr))
}

const usage = `Usage: shmex [-root DIR] COMMAND

Inspects and cleans the shared-memory exchanges of this user.

Commands:
  ls            list the exchanges under the root
  ls NAME       list the mailboxes of exchange NAME
  gc [NAME...]  remove what dead processes left: rings of terminated
                mailboxes nobody can drain, arenas of dead owners, liveness
                files, abandoned temporary files (every exchange by default)
  rm [-f] NAME  remove exchange NAME; refused while a live process uses it,
                unless -f

Flags:
`

// run is the whole program; it returns the exit status.
func run(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	fl := flag.NewFlagSet("shmex", flag.ContinueOnError)
	fl.SetOutput(stderr)
	fl.Usage = func() {
		fmt.Fprint(stderr, usage)
		fl.PrintDefaults()
	}
	root := fl.String("root", shm.DefaultRoot(), "root directory of the exchanges")
	if err := fl.Parse(args); err != nil {
		return exitUsage
	}
	if fl.NArg() == 0 {
		fl.Usage()
		return exitUsage
	}
	log := slog.New(slog.NewTextHandler(stderr, &slog.HandlerOptions{Level: slog.LevelWarn}))
	var err error
	switch cmd, rest := fl.Arg(0), fl.Args()[1:]; cmd {
	case "ls":
		switch len(rest) {
		case 0:
			err = listExchanges(ctx, *root, stdout, log)
		case 1:
			err = listMailboxes(ctx, *root, rest[0], stdout, log)
		default:
			fmt.Fprintln(stderr, "shmex ls: at most one exchange name")
			return exitUsage
		}
	case "gc":
		err = collect(ctx, *root, rest, stdout, log)
	case "rm":
		rf := flag.NewFlagSet("shmex rm", flag.ContinueOnError)
		rf.SetOutput(stderr)
		force := rf.Bool("f", false, "remove even while live processes use the exchange")
		if rf.Parse(rest) != nil || rf.NArg() != 1 {
			fmt.Fprintln(stderr, "usage: shmex rm [-f] NAME")
			return exitUsage
		}
		err = remove(*root, rf.Arg(0), *force, stdout)
	default:
		fmt.Fprintf(stderr, "shmex: unknown command %q\n", cmd)
		fl.Usage()
		return exitUsage
	}
	if err != nil {
		fmt.Fprintln(stderr, "shmex:", err)
		return exitError
	}
	return exitOK
}

// exchanges returns the names of the exchange directories under root.
func exchanges(root string) ([]string, error) {
	entries, err := os.ReadDir(root)
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
	sort.Strings(names)
	return names, nil
}

// exchangeDir returns the directory of an existing exchange.
func exchangeDir(root, name string) (string, error) {
	dir, err := shm.ExchangeDir(root, name)
	if err != nil {
		return "", err
	}
	if err := shm.CheckDir(dir); err != nil {
		return "", err
	}
	return dir, nil
}

// liveProcesses counts the live liveness locks in dir (a process may hold
// more than one: its exchange handles share one, each arena store has its
// own).
func liveProcesses(dir string) (int, error) {
	entries, err := os.ReadDir(dir)
	if err != nil {
		return 0, err
	}
	n := 0
	for _, e := range entries {
		if _, ok := shm.ParseLifeName(e.Name()); !ok {
			continue
		}
		alive, err := shm.AlivePath(filepath.Join(dir, e.Name()))
		if err != nil {
			return 0, err
		}
		if alive {
			n++
		}
	}
	return n, nil
}

// dirSize sums the sizes of the files in dir.
func dirSize(dir string) int64 {
	var total int64
	entries, _ := os.ReadDir(dir)
	for _, e := range entries {
		if fi, err := e.Info(); err == nil && fi.Mode().IsRegular() {
			total += fi.Size()
		}
	}
	return total
}

func listExchanges(ctx context.Context, root string, w io.Writer, log *slog.Logger) error {
	names, err := exchanges(root)
	if err != nil {
		return err
	}
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	// LOCKS counts live liveness locks: a process holds one per exchange
	// handle family and one per arena store it opened.
	fmt.Fprintln(tw, "EXCHANGE\tLOCKS\tACTIVE\tTERMINATED\tBYTES")
	for _, name := range names {
		dir := filepath.Join(root, name)
		procs, err := liveProcesses(dir)
		if err != nil {
			return err
		}
		size := dirSize(dir)
		infos, err := entities(ctx, root, name, log)
		if err != nil {
			fmt.Fprintf(tw, "%s\t%d\t?\t?\t%d\t(%v)\n", name, procs, size, err)
			continue
		}
		var active, terminated int
		for _, in := range infos {
			if in.Status == exchange.StatusActive {
				active++
			} else {
				terminated++
			}
		}
		fmt.Fprintf(tw, "%s\t%d\t%d\t%d\t%d\n", name, procs, active, terminated, size)
	}
	return tw.Flush()
}

// entities joins an existing exchange and lists its entities.
func entities(ctx context.Context, root, name string, log *slog.Logger) ([]exchange.EntityInfo, error) {
	if _, err := exchangeDir(root, name); err != nil {
		return nil, err
	}
	x, err := exchange.Open(name, exchange.WithRoot(root), exchange.WithLogger(log))
	if err != nil {
		return nil, err
	}
	defer x.Close()
	return x.Entities(ctx)
}

func listMailboxes(ctx context.Context, root, name string, w io.Writer, log *slog.Logger) error {
	infos, err := entities(ctx, root, name, log)
	if err != nil {
		return err
	}
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "ID\tSTATUS\tNAME\tBEHAVIOR")
	for _, in := range infos {
		beh := in.Behavior.Name
		if len(in.Behavior.Implements) > 0 {
			beh += " (" + strings.Join(in.Behavior.Implements, ", ") + ")"
		}
		fmt.Fprintf(tw, "%v\t%v\t%s\t%s\n", in.ID, in.Status, in.Name, beh)
	}
	return tw.Flush()
}

func collect(ctx context.Context, root string, names []string, w io.Writer, log *slog.Logger) error {
	if len(names) == 0 {
		var err error
		if names, err = exchanges(root); err != nil {
			return err
		}
	}
	var errs []error
	for _, name := range names {
		dir, err := exchangeDir(root, name)
		if err != nil {
			errs = append(errs, err)
			continue
		}
		arenas, err := proxystore.Collect(dir)
		if err != nil {
			errs = append(errs, fmt.Errorf("%s: arenas: %w", name, err))
		}
		x, err := exchange.Open(name, exchange.WithRoot(root), exchange.WithLogger(log))
		if err != nil {
			errs = append(errs, fmt.Errorf("%s: %w", name, err))
			continue
		}
		st, err := x.Collect(ctx)
		x.Close()
		if err != nil {
			errs = append(errs, fmt.Errorf("%s: %w", name, err))
			continue
		}
		fmt.Fprintf(w, "%s: removed %d ring(s), %d arena file(s), %d liveness file(s), %d temporary file(s)\n", name, st.Rings, len(arenas), st.Lives, st.Temps)
	}
	return errors.Join(errs...)
}

func remove(root, name string, force bool, w io.Writer) error {
	dir, err := exchangeDir(root, name)
	if err != nil {
		return err
	}
	procs, err := liveProcesses(dir)
	if err != nil {
		return err
	}
	if procs > 0 && !force {
		return fmt.Errorf("exchange %s is in use (%d live liveness lock(s)); -f removes it anyway", name, procs)
	}
	if err := os.RemoveAll(dir); err != nil {
		return err
	}
	fmt.Fprintf(w, "removed %s\n", dir)
	return nil
}
