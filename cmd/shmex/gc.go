package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"path/filepath"
	"strings"
	"time"

	"github.com/shmex/shmex/exchange"
	"github.com/shmex/shmex/proxystore"
	"github.com/shmex/shmex/shm"
)

var gcCommand = &command{
	name: "gc",
	args: "[--dry-run] [NAME...]",
	help: `Removes from the named exchanges (every exchange by default) what dead
processes left, and names each file it removed:
  - the rings of terminated mailboxes that no live process can drain;
  - the arena segments of dead owners;
  - the liveness lock files of dead processes (with the pid each held);
  - temporary files older than a minute (segments whose creator died
    before publishing them).
It ends with the counts for each exchange. Processes that still map a
removed file keep a valid view of it. A file that disappeared while gc ran
is listed as removed, even if another process removed it meanwhile.

--dry-run removes nothing and lists the lock files of dead processes and
the abandoned temporary files that gc would remove. It cannot yet tell
which rings and arenas gc would remove (the exchange and the arena store
decide that only as they remove them): it says how many terminated
mailboxes there are, whose rings gc may remove. Like ls, it marks
terminated the active mailboxes of dead owners.

A file that is not what shmex puts there (a FIFO, a socket, a link) is
reported with its path, and gc exits with status 1.`,
	flags: func(fs *flag.FlagSet) any {
		o := &gcOptions{}
		fs.BoolVar(&o.dryRun, "dry-run", false, "say what would be removed, remove nothing")
		return o
	},
	run: runGc,
}

type gcOptions struct{ dryRun bool }

// tempGrace is how old a temporary file must be for gc to take it for
// abandoned: the age after which the exchange and the arena store remove
// them.
const tempGrace = time.Minute

func runGc(ctx context.Context, env *env, opts any, names []string) error {
	o := opts.(*gcOptions)
	if len(names) == 0 {
		var err error
		if names, err = exchanges(env.root); err != nil {
			return err
		}
	}
	var errs []error
	for _, name := range names {
		if err := ctx.Err(); err != nil {
			return err
		}
		var err error
		if o.dryRun {
			err = dryRun(ctx, env.root, name, env.stdout)
		} else {
			err = collect(ctx, env.root, name, env.stdout)
		}
		errs = append(errs, under(name, err))
	}
	return errors.Join(errs...)
}

// deadPIDs returns the pids written in the lock files of the dead
// processes of dir, by lock file name, and the errors of the lock files
// that could not be read.
func deadPIDs(dir string) (map[string]int, error) {
	lives, err := shm.Lives(dir)
	dead := map[string]int{}
	for _, l := range lives {
		if !l.Alive {
			dead[filepath.Base(l.Path)] = l.PID
		}
	}
	return dead, err
}

// describe says what the file called name in an exchange directory is.
func describe(name string, dead map[string]int) string {
	switch {
	case strings.HasPrefix(name, shm.LivePrefix):
		if pid := dead[name]; pid > 0 {
			return fmt.Sprintf("lock file of dead process %d", pid)
		}
		return "lock file of a dead process"
	case shm.IsTemp(name):
		return "abandoned temporary file"
	case strings.HasPrefix(name, shm.RingPrefix):
		return "ring of a terminated mailbox"
	case strings.HasPrefix(name, shm.ArenaPrefix):
		return "arena segment of a dead process"
	}
	return "file"
}

// collect runs the collections of the exchange and of its arena store on
// exchange name, and names what they removed.
func collect(ctx context.Context, root, name string, w io.Writer) error {
	dir, err := exchangeDir(root, name)
	if err != nil {
		return err
	}
	var errs []error
	dead, err := deadPIDs(dir)
	if err != nil {
		errs = append(errs, err)
	}
	before, err := shm.ReadDir(dir)
	if err != nil {
		return err
	}
	arenas, err := proxystore.Collect(dir)
	if err != nil {
		errs = append(errs, fmt.Errorf("arenas: %w", err))
	}
	var st exchange.CollectStats
	x, xerr := exchange.Open(name, exchange.WithRoot(root), exchange.WithLogger(slog.New(slog.DiscardHandler)))
	if xerr == nil {
		st, xerr = x.Collect(ctx)
		x.Close()
	}
	if xerr != nil {
		errs = append(errs, xerr)
	}
	after, err := shm.ReadDir(dir)
	if err != nil {
		return errors.Join(append(errs, err)...)
	}
	left := make(map[string]bool, len(after))
	for _, e := range after {
		left[e.Name()] = true
	}
	for _, e := range before {
		if !left[e.Name()] {
			fmt.Fprintf(w, "%s: removed %s (%s)\n", name, e.Name(), describe(e.Name(), dead))
		}
	}
	if xerr != nil {
		fmt.Fprintf(w, "%s: removed %d arena file(s); rings, liveness and temporary files not collected (see the error)\n", name, len(arenas))
	} else {
		fmt.Fprintf(w, "%s: removed %d ring(s), %d arena file(s), %d liveness file(s), %d temporary file(s)\n",
			name, st.Rings, len(arenas), st.Lives, st.Temps)
	}
	return errors.Join(errs...)
}

// dryRun says what gc would remove from exchange name, as far as it can be
// known without removing.
func dryRun(ctx context.Context, root, name string, w io.Writer) error {
	dir, err := exchangeDir(root, name)
	if err != nil {
		return err
	}
	var errs []error
	dead, err := deadPIDs(dir)
	if err != nil {
		errs = append(errs, err)
	}
	entries, err := shm.ReadDir(dir)
	if err != nil {
		return errors.Join(append(errs, err)...)
	}
	n := 0
	for _, e := range entries {
		_, isDead := dead[e.Name()]
		if shm.IsTemp(e.Name()) {
			fi, err := e.Info()
			isDead = err == nil && time.Since(fi.ModTime()) > tempGrace
		}
		if isDead {
			fmt.Fprintf(w, "%s: would remove %s (%s)\n", name, e.Name(), describe(e.Name(), dead))
			n++
		}
	}
	ents, err := entities(ctx, root, name)
	if err != nil {
		return errors.Join(append(errs, err)...)
	}
	terminated := 0
	for _, e := range ents {
		if e.Status != exchange.StatusActive {
			terminated++
		}
	}
	fmt.Fprintf(w, "%s: would remove %d file(s) listed above; not listed: the rings of the %d terminated mailbox(es) that no live process drains, and arenas of dead processes\n",
		name, n, terminated)
	return errors.Join(errs...)
}
