//go:build linux

// Command shmbench measures, in one run, how close shmex comes to what this
// machine allows and how it compares with what users use today.
//
// It measures the limits of the machine across two processes (a shared word
// bounced by spinning, a raw futex ping-pong, memory copy bandwidth), shmex
// itself, and its peers on the same work (Unix domain sockets, TCP loopback,
// Go channels, Redis lists against a redis-server it starts itself when one
// is on PATH, iceoryx against a RouDi it starts itself when the iceoryx
// packages are installed, shmipc-go). Every figure is printed with its ratio to a limit or peer
// measured in the same run; latencies come with HDR-histogram percentiles.
//
// Usage:
//
//	shmbench [flags]
//
// Flags:
//
//	-json            print the report as JSON (one object, a row per metric)
//	-csv             print the report as CSV
//	-run REGEX       run only the scenarios whose name or a metric matches
//	-list            list the scenarios and their metrics, and exit
//	-full            the long version: longer phases, more repetitions, larger buffers
//	-duration D      length of one measuring phase (default 200ms, 2s with -full)
//	-iterations N    run exactly N round trips or messages per phase instead
//	-reps N          repetitions of every measurement (default 3, 5 with -full)
//	-pin             pin the two processes of a pair to different CPUs
//	-redis-server P  redis-server program to start ("none" skips the Redis rows)
//	-timeout D       give up after D (default 10m)
//	-quick           smoke-test sizes: checks the harness, the figures mean nothing
//	-plot FILE.png   also draw the report (.png or .svg): latency against payload size for every
//	                 transport (log-log), then latencies with percentiles, rates, bandwidth
//	-progress        tell on standard error which scenario runs (default true; a status
//	                 line on a terminal, a line per scenario on a pipe or file)
//	-v               log diagnostics to standard error
//
// The table fits 120 columns: VALUE is the p50 of a latency row (its bulk
// mean is MEAN), RATIO the row's p50 over the VS row's measured in the same
// run, TARGET the goal of an open issue and MET whether this run met it; "!"
// flags a row whose p50 is far from the other rows of its transport (the
// pair was placed differently). Notes under the table say how each row was
// measured and why a row was skipped.
//
// shmbench starts every peer process itself by re-running its own binary, and
// kills them, and any redis-server it started, on every exit path.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/signal"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	"github.com/shmex/shmex/bench"
)

func main() {
	bench.ChildMain()
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	code := run(ctx, os.Args[1:], os.Stdout, os.Stderr)
	stop()
	os.Exit(code)
}

// Exit codes.
const (
	exitOK          = 0
	exitFailed      = 1 // a scenario failed
	exitUsage       = 2
	exitInterrupted = 3
)

// run is the whole program but for ChildMain and os.Exit, so that tests can
// call it.
func run(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("shmbench", flag.ContinueOnError)
	fs.SetOutput(stderr)
	var (
		asJSON      = fs.Bool("json", false, "print the report as JSON (one object, a row per metric)")
		asCSV       = fs.Bool("csv", false, "print the report as CSV")
		runExpr     = fs.String("run", "", "run only the scenarios whose name or one of whose metrics matches this regular expression")
		list        = fs.Bool("list", false, "list the scenarios and their metrics, and exit")
		full        = fs.Bool("full", false, "the long version: longer phases, more repetitions, larger buffers")
		quick       = fs.Bool("quick", false, "smoke-test sizes: checks the harness, the figures mean nothing")
		duration    = fs.Duration("duration", 0, "length of one measuring phase (default 200ms, 2s with -full)")
		iterations  = fs.Int("iterations", 0, "run exactly this many round trips or messages per phase instead of -duration")
		reps        = fs.Int("reps", 0, "repetitions of every measurement (default 3, 5 with -full)")
		pin         = fs.Bool("pin", true, "pin the two processes of a pair to different CPUs (-pin=false: let the scheduler place them; on a VM futex wake-ups then mix two speeds)")
		redisServer = fs.String("redis-server", "redis-server", `redis-server program to start for the Redis rows ("none" skips them)`)
		timeout     = fs.Duration("timeout", 10*time.Minute, "give up after this long")
		verbose     = fs.Bool("v", false, "log diagnostics to standard error")
		plotFile    = fs.String("plot", "", "also draw the report to this PNG or SVG file")
		sizes       = fs.String("sizes", "", "payload sizes of the sweep and proxy scenarios, such as 64,1KiB,1MiB,1GiB (default 64 B to 4 MiB inline, to 1 GiB by proxy)")
		showProg    = fs.Bool("progress", true, "tell on standard error which scenario runs: a status line on a terminal, a line per scenario elsewhere")
	)
	fs.Usage = func() {
		fmt.Fprintf(fs.Output(), "Usage: shmbench [flags]\n\nMeasures shmex against the limits of this machine and its peers.\n\n")
		fs.PrintDefaults()
	}
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return exitOK
		}
		return exitUsage
	}
	if fs.NArg() > 0 {
		fmt.Fprintf(stderr, "shmbench: unexpected arguments %q\n", fs.Args())
		return exitUsage
	}
	if *asJSON && *asCSV {
		fmt.Fprintln(stderr, "shmbench: -json and -csv exclude each other")
		return exitUsage
	}
	if ext := strings.ToLower(filepath.Ext(*plotFile)); *plotFile != "" && ext != ".png" && ext != ".svg" {
		fmt.Fprintln(stderr, "shmbench: -plot wants a .png or .svg file")
		return exitUsage
	}
	if *duration < 0 || *iterations < 0 || *reps < 0 {
		fmt.Fprintln(stderr, "shmbench: -duration, -iterations and -reps must not be negative")
		return exitUsage
	}
	var sizeList []int
	if *sizes != "" {
		var err error
		if sizeList, err = bench.ParseSizes(*sizes); err != nil {
			fmt.Fprintln(stderr, "shmbench:", err)
			return exitUsage
		}
	}
	scenarios, err := bench.Select(*runExpr)
	if err != nil {
		fmt.Fprintln(stderr, "shmbench:", err)
		return exitUsage
	}
	if *list {
		writeList(stdout, scenarios)
		return exitOK
	}
	if len(scenarios) == 0 {
		fmt.Fprintf(stderr, "shmbench: no scenario matches %q (see -list)\n", *runExpr)
		return exitUsage
	}

	level := slog.LevelWarn
	if *verbose {
		level = slog.LevelDebug
	}
	cfg := bench.Config{
		Duration: *duration, Iterations: *iterations, Reps: *reps,
		Full: *full, Quick: *quick, Pin: *pin, RedisServer: *redisServer, Sizes: sizeList,
		Logger: slog.New(slog.NewTextHandler(stderr, &slog.HandlerOptions{Level: level})),
	}
	if *showProg {
		// A redrawn status line on a terminal (unless -v logs there too),
		// a line per scenario on a pipe or file: a run piped to a file or
		// to tee still says where it is.
		cfg.Progress = stderr
		if f, ok := stderr.(*os.File); ok && *verbose && bench.IsTerminal(f) {
			cfg.Progress = lineWriter{f}
		}
	}
	ctx, cancel := context.WithTimeout(ctx, *timeout)
	defer cancel()
	env := bench.NewEnv(cfg)
	defer env.Close()

	report, runErr := bench.Run(ctx, env, scenarios, *runExpr)
	if err := env.Close(); err != nil {
		cfg.Logger.Warn("cleanup", "err", err)
	}
	switch {
	case *asJSON:
		err = report.WriteJSON(stdout)
	case *asCSV:
		err = report.WriteCSV(stdout)
	default:
		err = report.WriteTable(stdout)
	}
	if err != nil {
		fmt.Fprintln(stderr, "shmbench: write report:", err)
		return exitFailed
	}
	if *plotFile != "" {
		if err := writePlot(report, *plotFile); err != nil {
			fmt.Fprintln(stderr, "shmbench:", err)
			return exitFailed
		}
		abs, err := filepath.Abs(*plotFile)
		if err != nil {
			abs = *plotFile
		}
		fmt.Fprintln(stderr, "shmbench: plot written to", abs)
	}
	switch {
	case runErr != nil:
		fmt.Fprintln(stderr, "shmbench: stopped:", runErr)
		return exitInterrupted
	case report.Failed():
		for _, r := range report.Rows {
			if r.Error != "" {
				fmt.Fprintf(stderr, "shmbench: %s failed: %s\n", r.Metric, r.Error)
			}
		}
		return exitFailed
	}
	return exitOK
}

// lineWriter makes the progress of a run write lines instead of redrawing
// one (it hides the terminal from the progress).
type lineWriter struct{ io.Writer }

// writeList writes the scenarios, their metrics and their targets, within
// bench.TableWidth columns.
func writeList(w io.Writer, scenarios []bench.Scenario) {
	const indent = 19
	for _, s := range scenarios {
		for i, l := range wrapText(s.Doc, bench.TableWidth-indent) {
			if i == 0 {
				l = fmt.Sprintf("%-*s%s", indent, s.Name+" ", l)
			} else {
				l = strings.Repeat(" ", indent) + l
			}
			fmt.Fprintln(w, l)
		}
		for _, m := range s.Metrics {
			line := "    " + m
			for _, t := range s.TargetsFor(m) {
				line += "  target: " + strings.TrimPrefix(t.String(), m+" ")
			}
			fmt.Fprintln(w, line)
		}
	}
}

// wrapText cuts s into lines of at most width runes at spaces.
func wrapText(s string, width int) []string {
	var lines []string
	line := ""
	for _, word := range strings.Fields(s) {
		switch {
		case line == "":
			line = word
		case len([]rune(line))+1+len([]rune(word)) > width:
			lines = append(lines, line)
			line = word
		default:
			line += " " + word
		}
	}
	return append(lines, line)
}
