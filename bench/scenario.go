//go:build linux

package bench

import (
	"cmp"
	"context"
	"fmt"
	"regexp"
	"slices"
	"sync"
)

// Scenario is one measurement that yields one or more metric rows.
//
// Register scenarios from an init function:
//
//	func init() {
//		bench.Register(bench.Scenario{
//			Name:    "ring/rtt",
//			Rank:    bench.RankShmex,
//			Doc:     "64-byte round trip through two mailbox rings",
//			Metrics: []string{"ring.rtt_spin_ns", "ring.rtt_futex_ns"},
//			Run:     runRingRTT,
//		})
//	}
type Scenario struct {
	// Name identifies the scenario on the command line (--run matches it)
	// and in the report. Use lower case, '/' between a family and a
	// variant: "limit/futex", "uds", "ring/rtt".
	Name string

	// Rank orders scenarios in a run and in the report: lower runs first.
	// Use RankLimit, RankShmex, RankPeer or RankOther, plus a small offset
	// to order scenarios of one group.
	Rank int

	// Doc is a one-line description shown by --list.
	Doc string

	// Metrics lists the metric names the scenario produces, in order. The
	// runner uses it for --run, for --list, and to emit error rows when Run
	// fails; tests check that every listed metric is reported.
	Metrics []string

	// Run measures and returns the rows. It must stop early when ctx is
	// done, bound every wait on another process, and release everything it
	// started (children, segments, servers) before it returns, whatever the
	// outcome; children started with Env.StartChild are also killed by
	// Env.Close. A scenario that cannot run here (a missing program, say)
	// returns SkipRows with the reason instead of an error.
	Run func(ctx context.Context, env *Env) ([]Row, error)

	// Targets are the goals the open issues set for the scenario's rows
	// (see Target); the table judges each row against its targets in the
	// same run. Register panics on a target for a metric the scenario does
	// not produce.
	Targets []Target
}

// Ranks of the scenario groups. Limits run first, then shmex itself, then the
// peers it is compared with.
const (
	RankLimit = 100
	RankShmex = 200
	RankPeer  = 300
	RankOther = 400
)

var (
	registryMu sync.Mutex
	registry   []Scenario
)

// Register adds a scenario to the registry. It panics when the name or one of
// the metrics is already registered, or when Name, Metrics or Run is missing:
// these are programming errors caught at init.
func Register(s Scenario) {
	if s.Name == "" || s.Run == nil || len(s.Metrics) == 0 {
		panic(fmt.Sprintf("bench: scenario %q needs Name, Metrics and Run", s.Name))
	}
	registryMu.Lock()
	defer registryMu.Unlock()
	for _, o := range registry {
		if o.Name == s.Name {
			panic(fmt.Sprintf("bench: scenario %q registered twice", s.Name))
		}
		for _, m := range s.Metrics {
			if slices.Contains(o.Metrics, m) {
				panic(fmt.Sprintf("bench: metric %q of scenario %q already produced by %q", m, s.Name, o.Name))
			}
		}
	}
	for _, t := range s.Targets {
		if !slices.Contains(s.Metrics, t.Metric) {
			panic(fmt.Sprintf("bench: scenario %q has a target for %q, which it does not produce", s.Name, t.Metric))
		}
	}
	s.Metrics = slices.Clone(s.Metrics)
	s.Targets = slices.Clone(s.Targets)
	registry = append(registry, s)
}

// Scenarios returns every registered scenario ordered by Rank, then Name.
func Scenarios() []Scenario {
	registryMu.Lock()
	defer registryMu.Unlock()
	out := slices.Clone(registry)
	slices.SortStableFunc(out, func(a, b Scenario) int {
		return cmp.Or(cmp.Compare(a.Rank, b.Rank), cmp.Compare(a.Name, b.Name))
	})
	return out
}

// Select returns the registered scenarios whose name or one of whose metrics
// matches the regular expression (all of them when expr is empty).
func Select(expr string) ([]Scenario, error) {
	all := Scenarios()
	if expr == "" {
		return all, nil
	}
	re, err := regexp.Compile(expr)
	if err != nil {
		return nil, fmt.Errorf("bench: bad --run expression: %w", err)
	}
	var out []Scenario
	for _, s := range all {
		if re.MatchString(s.Name) || slices.ContainsFunc(s.Metrics, re.MatchString) {
			out = append(out, s)
		}
	}
	return out, nil
}

// Row is one metric of a report.
//
// Metric names are stable (tools read them from --json and --csv): a family,
// a dot, and a quantity whose suffix is the unit, as in "uds.rtt_ns",
// "limit.memcpy_gbps", "ring.throughput_8to1_msgs". Units are "ns" (a
// latency), "msgs/s" or "ops/s" (a rate), "GB/s" (10^9 bytes per second) and
// "%".
type Row struct {
	// Metric is the stable metric name.
	Metric string `json:"metric"`
	// Scenario is the name of the scenario that produced the row; the
	// runner fills it in.
	Scenario string `json:"scenario"`
	// Value is the headline figure, in Unit. It is 0 in a skipped or
	// failed row.
	Value float64 `json:"value"`
	// Unit is the unit of Value and of the histogram's figures.
	Unit string `json:"unit"`
	// Hist summarizes the distribution of individually timed samples
	// (latency rows); nil when there is none.
	Hist *Summary `json:"hist,omitempty"`
	// CompareTo names the metric this row is compared with: a limit or a
	// peer measured in the same run. Empty for rows that are not compared.
	CompareTo string `json:"compare_to,omitempty"`
	// Ratio is this row's figure divided by the CompareTo row's: their p50s
	// when both have percentiles (a stall of the mean does not decide it),
	// else their Values; RatioOf says which. Filled in by
	// Report.ComputeRatios, 0 when either row is missing, skipped or zero.
	Ratio float64 `json:"ratio,omitempty"`
	// RatioOf is the figure the Ratio divides: "p50" or "value".
	RatioOf Stat `json:"ratio_of,omitempty"`
	// Targets are the goals the row is judged against (from its
	// scenario's Targets), and Met the verdict of this run: MetPass,
	// MetShort, or MetNone when a row it needs is missing.
	Targets []Target `json:"targets,omitempty"`
	Met     string   `json:"met,omitempty"`
	// Transport names the mechanism a round trip went through ("exchange",
	// "uds"), for rows that measure it on a small payload (at most 4 KiB)
	// in different scenarios; a payload-sweep row's Series stands for it.
	// The report flags a row whose p50 is far from the others' of its
	// transport (Flag): the two processes were placed differently.
	Transport string `json:"transport,omitempty"`
	// Flag says why the row's figure is suspect in this run; empty when
	// it is not.
	Flag string `json:"flag,omitempty"`
	// Note is a short remark for the reader: how the figure was obtained,
	// or why the row was skipped.
	Note string `json:"note,omitempty"`
	// Skipped marks a row that could not be measured on this machine (the
	// reason is in Note). A skipped row is not a failure.
	Skipped bool `json:"skipped,omitempty"`
	// Error is set when the scenario failed; the run then exits non-zero.
	Error string `json:"error,omitempty"`
	// Series names the transport of a payload-sweep row ("exchange",
	// "uds", ...); empty for other rows.
	Series string `json:"series,omitempty"`
	// Bytes is the payload size of a payload-sweep row.
	Bytes int64 `json:"bytes,omitempty"`
}

// SkipRows returns one skipped row per metric, all with the same reason.
func SkipRows(reason string, metrics ...string) []Row {
	rows := make([]Row, len(metrics))
	for i, m := range metrics {
		rows[i] = Row{Metric: m, Skipped: true, Note: reason}
	}
	return rows
}
