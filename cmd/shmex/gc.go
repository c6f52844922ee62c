package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"path/filepath"
	"strings"

	"github.com/shmex/shmex/exchange"
	"github.com/shmex/shmex/proxystore"
	"github.com/shmex/shmex/shm"
)

var gcCommand = &command{
	name: "gc",
	args: "[--dry-run] [NAME...]",
	help: `Removes from the named exchanges (every exchange by default) what dead
processes left, and names each file it removed:
  - the rings of terminated mailboxes that no live process can drain
    (first, the active mailboxes of dead owners are terminated);
  - rings that no registry entry names (left by a
    registration that died before it published its entry);
  - the arena segments of dead owners;
  - the liveness lock files of dead processes (with the pid each held);
  - abandoned temporary files (segments whose creator died before
    publishing them).
It ends with the counts for each exchange. Processes that still map a
removed file keep a valid view of it.

--dry-run removes nothing, terminates nothing and repairs nothing: it
names every file gc would remove, decided as gc decides, as the exchange
stands.

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
		errs = append(errs, under(name, collect(ctx, env.root, name, o.dryRun, env.stdout)))
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

// collect runs the collections of the arena store and of the exchange on
// exchange name (dry: their dry runs), and names each file they removed
// (would remove), as they report them.
func collect(ctx context.Context, root, name string, dry bool, w io.Writer) error {
	dir, err := exchangeDir(root, name)
	if err != nil {
		return err
	}
	var errs []error
	dead, err := deadPIDs(dir) // before the lock files go
	if err != nil {
		errs = append(errs, err)
	}
	verb := "removed"
	var popts []proxystore.CollectOption
	var xopts []exchange.CollectOption
	if dry {
		verb = "would remove"
		popts, xopts = append(popts, proxystore.DryRun()), append(xopts, exchange.DryRun())
	}
	// The arenas first: their owners' lock files tell whether they live.
	arenas, err := proxystore.Collect(dir, popts...)
	if err != nil {
		errs = append(errs, fmt.Errorf("arenas: %w", err))
	}
	var st exchange.CollectStats
	x, xerr := openQuiet(root, name)
	if xerr == nil {
		st, xerr = x.Collect(ctx, xopts...)
		x.Close()
	}
	if xerr != nil {
		errs = append(errs, xerr)
	}
	// Both collectors take abandoned temporary files of arenas: name
	// each file once.
	seen := map[string]bool{}
	temps := st.Temps
	for _, f := range arenas {
		seen[f] = true
		fmt.Fprintf(w, "%s: %s %s (%s)\n", name, verb, f, describe(f, dead))
		if shm.IsTemp(f) {
			temps++
		}
	}
	for _, f := range st.Removed {
		if seen[f] {
			temps--
			continue
		}
		seen[f] = true
		fmt.Fprintf(w, "%s: %s %s (%s)\n", name, verb, f, describe(f, dead))
	}
	segments := len(arenas)
	for _, f := range arenas {
		if shm.IsTemp(f) {
			segments--
		}
	}
	if xerr != nil {
		fmt.Fprintf(w, "%s: %s %d arena file(s); rings, liveness and temporary files not collected (see the error)\n", name, verb, segments)
	} else {
		fmt.Fprintf(w, "%s: %s %d ring(s), %d arena file(s), %d liveness file(s), %d temporary file(s)\n",
			name, verb, st.Rings, segments, st.Lives, temps)
	}
	return errors.Join(errs...)
}
