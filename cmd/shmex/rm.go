package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"

	"github.com/shmex/shmex/shm"
)

var rmCommand = &command{
	name: "rm",
	args: "[-f] NAME",
	help: `Removes exchange NAME: its directory and every file in it. It is refused
while a live process uses the exchange (holds a liveness lock in it): the
error names the pids of those processes and their lock files. With -f it
removes the exchange anyway; processes that map its files keep valid views
of them, but nothing new can join them.

A lock file that cannot be tested (a FIFO or a link where one is expected)
refuses the removal too, naming the file, unless -f.`,
	flags: func(fs *flag.FlagSet) any {
		return fs.Bool("f", false, "remove even while live processes use the exchange")
	},
	run: runRm,
}

func runRm(ctx context.Context, env *env, opts any, args []string) error {
	force := *opts.(*bool)
	if len(args) != 1 {
		return usageError("one exchange name, please")
	}
	name := args[0]
	dir, err := exchangeDir(env.root, name)
	if err != nil {
		return err
	}
	lives, err := shm.Lives(dir)
	if err != nil && !force {
		return errors.Join(fmt.Errorf("cannot tell whether exchange %s is in use (-f removes it anyway):", name), err)
	}
	// The live processes by pid, with their lock files (a process holds
	// one per exchange handle family and one per arena store).
	var pids []int
	locks := map[int][]string{}
	for _, l := range lives {
		if l.Alive {
			if locks[l.PID] == nil {
				pids = append(pids, l.PID)
			}
			locks[l.PID] = append(locks[l.PID], filepath.Base(l.Path))
		}
	}
	if len(pids) > 0 && !force {
		slices.Sort(pids)
		procs := make([]string, len(pids))
		for i, pid := range pids {
			name := "?"
			if pid > 0 {
				name = strconv.Itoa(pid)
			}
			procs[i] = fmt.Sprintf("%s (%s)", name, strings.Join(locks[pid], ", "))
		}
		return fmt.Errorf("exchange %s is in use by live process(es) %s; -f removes it anyway",
			name, strings.Join(procs, ", "))
	}
	if err := os.RemoveAll(dir); err != nil {
		return err
	}
	fmt.Fprintf(env.stdout, "removed %s\n", dir)
	return nil
}
