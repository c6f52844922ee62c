// Command shmex inspects and cleans the shared-memory exchanges of the
// current user.
//
// Usage:
//
//	shmex [--root DIR] ls [-a] [--json] [NAME...]  list the exchanges, or the processes and mailboxes of NAMEs
//	shmex [--root DIR] stat [-a] [--json] [--watch] [NAME...]  the counters of mailboxes, arenas and processes
//	shmex [--root DIR] gc [--dry-run] [NAME...]    remove what dead processes left, saying what (every exchange by default)
//	shmex [--root DIR] rm [-f] NAME                remove exchange NAME (refused while a process uses it, unless -f)
//	shmex help [COMMAND]                           print help
//
// The root defaults to $SHMEX_ROOT, else /dev/shm/shmex-<uid>. `shmex help
// COMMAND` (or `shmex COMMAND --help`) describes a command. Exit status: 0
// on success and for help, 1 when something failed, 2 for a usage error.
//
// Nothing in an exchange directory can make shmex block: a FIFO, a socket
// or a link where shmex expects one of its files is reported, with its
// path, as what it is.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"slices"
	"strings"
	"text/tabwriter"

	"github.com/shmex/shmex/shm"
)

// Exit codes.
const (
	exitOK    = 0
	exitError = 1
	exitUsage = 2
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt)
	code := run(ctx, os.Args[1:], os.Stdout, os.Stderr)
	stop()
	os.Exit(code)
}

const usage = `Usage: shmex [--root DIR] COMMAND [ARGS]

Inspects and cleans the shared-memory exchanges of this user.

Commands:
  ls [-a] [--json] [NAME...]  list the exchanges under the root (the pids of
                              the processes that use each, their mailboxes,
                              bytes), or the processes and mailboxes of the
                              named exchanges
  stat [-a] [--json] [--watch] [NAME...]
                              the counters kept in shared memory: per mailbox
                              (messages and bytes sent and received, depth,
                              full waits, sleeps, wake-ups, recovered), per
                              arena (bytes in use and free, blocks), per
                              process (pid, alive); --watch refreshes them
                              with rates per second
  gc [--dry-run] [NAME...]    remove what dead processes left and say what:
                              rings of terminated mailboxes nobody can drain,
                              arenas of dead owners, their liveness files,
                              abandoned temporary files (every exchange by
                              default); --dry-run names them, removing nothing
  rm [-f] NAME                remove exchange NAME; refused while a live
                              process uses it (named by pid), unless -f
  help [COMMAND]              print this help, or a command's

"shmex COMMAND --help" prints a command's help too.

Flags:
`

// usageError is a usage error of a command (exit status 2); the command's
// help is printed after it.
type usageError string

func (e usageError) Error() string { return string(e) }

// command is a subcommand: its flags, its help and what it does.
type command struct {
	name  string
	args  string // synopsis of the arguments
	help  string // what it does, in full
	flags func(fs *flag.FlagSet) any
	run   func(ctx context.Context, env *env, opts any, args []string) error
}

// env is what every command gets: the root and where to write.
type env struct {
	root           string
	stdout, stderr io.Writer
}

var commands []*command // filled in init: the commands refer to the table in their help

func init() {
	commands = []*command{lsCommand, statCommand, gcCommand, rmCommand}
}

func lookup(name string) *command {
	for _, c := range commands {
		if c.name == name {
			return c
		}
	}
	return nil
}

// run is the whole program; it returns the exit status.
func run(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	fl := flag.NewFlagSet("shmex", flag.ContinueOnError)
	fl.SetOutput(io.Discard) // errors and help are printed below
	root := fl.String("root", shm.DefaultRoot(), "the `DIR` that holds the exchanges ($"+shm.RootEnv+" overrides the default)")
	printUsage := func(w io.Writer) {
		fmt.Fprint(w, usage)
		printFlags(w, fl)
	}
	if err := fl.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			printUsage(stdout)
			return exitOK
		}
		fmt.Fprintln(stderr, "shmex:", err)
		printUsage(stderr)
		return exitUsage
	}
	if fl.NArg() == 0 {
		printUsage(stderr)
		return exitUsage
	}
	name, rest := fl.Arg(0), fl.Args()[1:]
	if name == "help" {
		switch {
		case len(rest) == 0:
			printUsage(stdout)
			return exitOK
		case len(rest) == 1 && lookup(rest[0]) != nil:
			printHelp(stdout, lookup(rest[0]))
			return exitOK
		}
		fmt.Fprintf(stderr, "shmex help: no command %q\n", strings.Join(rest, " "))
		printUsage(stderr)
		return exitUsage
	}
	c := lookup(name)
	if c == nil {
		fmt.Fprintf(stderr, "shmex: unknown command %q\n", name)
		printUsage(stderr)
		return exitUsage
	}
	cf := flag.NewFlagSet("shmex "+c.name, flag.ContinueOnError)
	cf.SetOutput(io.Discard)
	opts := c.flags(cf)
	pos, err := parseInterspersed(cf, rest)
	if errors.Is(err, flag.ErrHelp) {
		printHelp(stdout, c)
		return exitOK
	}
	if err != nil {
		fmt.Fprintf(stderr, "shmex %s: %v\n", c.name, err)
		printHelp(stderr, c)
		return exitUsage
	}
	err = c.run(ctx, &env{root: *root, stdout: stdout, stderr: stderr}, opts, pos)
	var ue usageError
	switch {
	case errors.As(err, &ue):
		fmt.Fprintf(stderr, "shmex %s: %v\n", c.name, ue)
		printHelp(stderr, c)
		return exitUsage
	case err != nil:
		// One line per error: joined errors each get the prefix.
		for _, l := range strings.Split(err.Error(), "\n") {
			fmt.Fprintf(stderr, "shmex %s: %s\n", c.name, l)
		}
		return exitError
	}
	return exitOK
}

// printHelp prints the help of command c.
func printHelp(w io.Writer, c *command) {
	fmt.Fprintf(w, "Usage: shmex [--root DIR] %s %s\n\n%s\n", c.name, c.args, c.help)
	fs := flag.NewFlagSet(c.name, flag.ContinueOnError)
	c.flags(fs)
	n := 0
	fs.VisitAll(func(*flag.Flag) { n++ })
	if n > 0 {
		fmt.Fprintln(w, "\nFlags:")
		printFlags(w, fs)
	}
}

// printFlags lists the flags of fs as the help shows them: one dash for a
// one-letter flag, two for a word (flag accepts either).
func printFlags(w io.Writer, fs *flag.FlagSet) {
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fs.VisitAll(func(f *flag.Flag) {
		name := "-" + f.Name
		if len(f.Name) > 1 {
			name = "-" + name
		}
		arg, usage := flag.UnquoteUsage(f)
		if arg != "" {
			name += " " + arg
		}
		if f.DefValue != "" && f.DefValue != "false" {
			usage += " (default " + f.DefValue + ")"
		}
		fmt.Fprintf(tw, "  %s\t%s\n", name, usage)
	})
	tw.Flush()
}

// parseInterspersed parses fs's flags wherever they stand among the
// arguments (`ls lab -a` as well as `ls -a lab`), up to a "--", and
// returns the other arguments.
func parseInterspersed(fs *flag.FlagSet, args []string) ([]string, error) {
	var tail []string
	if i := slices.Index(args, "--"); i >= 0 {
		args, tail = args[:i], args[i+1:]
	}
	var pos []string
	for {
		if err := fs.Parse(args); err != nil {
			return nil, err
		}
		if args = fs.Args(); len(args) == 0 {
			return append(pos, tail...), nil
		}
		pos, args = append(pos, args[0]), args[1:]
	}
}
