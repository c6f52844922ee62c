package main

import (
	"context"
	"flag"
	"fmt"
	"os"

	"github.com/shmex/shmex/exchange"
)

var rmCommand = &command{
	name: "rm",
	args: "[-f] NAME",
	help: `Removes exchange NAME: its directory and every file in it. It is refused
while a live process uses the exchange (holds a liveness lock in it): the
error names the pids of those processes. With -f it removes the exchange
anyway; processes that map its files keep valid views of them, but nothing
new can join them.

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
	if force {
		err = os.RemoveAll(dir)
	} else {
		// Remove names the pids of the live processes that use it, and
		// puts the exchange back if one opens it meanwhile.
		err = exchange.Remove(name, exchange.WithRoot(env.root))
	}
	if err != nil && !force {
		return fmt.Errorf("%w; -f removes it anyway", err)
	}
	if err != nil {
		return err
	}
	fmt.Fprintf(env.stdout, "removed %s\n", dir)
	return nil
}
