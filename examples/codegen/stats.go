package main

import "context"

//go:generate go run github.com/shmex/shmex/codegen -type Stats

// Stats is what a statistics agent does. The codegen tool (the go:generate
// line above) turns it into stats_shmex.go: StatsHandle, whose methods call
// a remote agent's actions and wait for the results, with an Async form of
// each that returns a future; and AddStatsActions, which serves an
// implementation as a behavior's actions. Every method takes a context,
// at most one argument, and returns at most one result and an error.
type Stats interface {
	// Mean returns the mean of v. Its action is "mean": by default, the
	// snake_case name that Academy's Python peers would call.
	Mean(ctx context.Context, v []float64) (float64, error)
	// Summarize returns the count, the extremes and the mean of v: a
	// struct of this package, with msgp codecs (summary.go).
	Summarize(ctx context.Context, v []float64) (Summary, error)
	// Histogram counts the occurrences of each value. A comment line
	// names its action whatever the rule:
	//
	//shmex:action hist
	Histogram(ctx context.Context, v []int) (map[int64]int, error)
}
