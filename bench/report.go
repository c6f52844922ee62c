//go:build linux

package bench

import (
	"context"
	"encoding/csv"
	"encoding/json"
	"fmt"
	"io"
	"math"
	"os"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"time"
)

// Report is the outcome of a run: every row of every scenario run, with
// ratios computed, and what the run was on. Its JSON form is the --json
// output of shmbench.
type Report struct {
	Tool     string    `json:"tool"`      // "shmbench"
	Schema   int       `json:"schema"`    // ReportSchema
	Started  time.Time `json:"started"`   // when the run started
	Elapsed  float64   `json:"elapsed_s"` // how long it took, in seconds
	Host     Host      `json:"host"`      // the machine
	Settings Settings  `json:"settings"`  // the Config of the run
	Rows     []Row     `json:"rows"`      // one per metric, in run order
}

// ReportSchema is the version of the Report layout. It changes only when a
// field changes meaning or disappears; new metrics and fields keep it.
// Version 2: Ratio divides p50s when both rows have percentiles.
const ReportSchema = 2

// Host describes the machine of a run.
type Host struct {
	Hostname  string `json:"hostname"`
	CPUs      int    `json:"cpus"` // runtime.NumCPU
	GOOS      string `json:"goos"`
	GOARCH    string `json:"goarch"`
	GoVersion string `json:"go"` // runtime.Version
}

// Settings records the Config of a run (see Config for the fields) and the
// --run expression.
type Settings struct {
	Duration    string `json:"duration"`
	Iterations  int    `json:"iterations,omitempty"`
	Warmup      string `json:"warmup"`
	Reps        int    `json:"reps"`
	Full        bool   `json:"full,omitempty"`
	Quick       bool   `json:"quick,omitempty"`
	Pin         bool   `json:"pin,omitempty"`
	MemcpyBytes int64  `json:"memcpy_bytes"`
	Run         string `json:"run,omitempty"`
}

// Run runs the scenarios in order in env and returns the report with ratios
// computed. A scenario that fails yields error rows for its metrics and the
// run goes on; Report.Failed tells. Run returns an error only when ctx is
// done, with the report of what ran.
func Run(ctx context.Context, env *Env, scenarios []Scenario, runExpr string) (*Report, error) {
	host, _ := os.Hostname()
	r := &Report{
		Tool: "shmbench", Schema: ReportSchema, Started: time.Now(),
		Host: Host{Hostname: host, CPUs: runtime.NumCPU(), GOOS: runtime.GOOS,
			GOARCH: runtime.GOARCH, GoVersion: runtime.Version()},
		Settings: Settings{Duration: env.Duration.String(), Iterations: env.Iterations,
			Warmup: env.Warmup.String(), Reps: env.Reps, Full: env.Full, Quick: env.Quick,
			Pin: env.Pin, MemcpyBytes: env.MemcpyBytes, Run: runExpr},
	}
	defer func() { r.Elapsed = time.Since(r.Started).Seconds() }()
	env.progress.start(len(scenarios))
	defer env.progress.stop()
	for i, s := range scenarios {
		if err := ctx.Err(); err != nil {
			r.ComputeRatios()
			return r, err
		}
		env.progress.begin(i, s.Name)
		t0 := time.Now()
		rows, err := s.Run(ctx, env)
		env.Logger.Info("scenario done", "scenario", s.Name, "rows", len(rows),
			"elapsed", time.Since(t0).Round(time.Millisecond), "err", err)
		for j := range rows {
			rows[j].Scenario = s.Name
			rows[j].Targets = s.TargetsFor(rows[j].Metric)
			if rows[j].Value != 0 && (math.IsNaN(rows[j].Value) || math.IsInf(rows[j].Value, 0)) {
				rows[j].Error = join(rows[j].Error, fmt.Sprintf("non-finite value %v", rows[j].Value))
				rows[j].Value = 0
			}
			if !slices.Contains(s.Metrics, rows[j].Metric) {
				env.Logger.Warn("scenario produced an undeclared metric", "scenario", s.Name, "metric", rows[j].Metric)
			}
		}
		if err != nil {
			if ctx.Err() != nil {
				r.Rows = append(r.Rows, rows...)
				r.ComputeRatios()
				return r, ctx.Err()
			}
			for _, m := range s.Metrics {
				if !slices.ContainsFunc(rows, func(x Row) bool { return x.Metric == m }) {
					rows = append(rows, Row{Metric: m, Scenario: s.Name, Error: err.Error()})
				}
			}
		}
		r.Rows = append(r.Rows, rows...)
	}
	r.ComputeRatios()
	return r, nil
}

// Failed reports whether a row of the report has an error.
func (r *Report) Failed() bool {
	return slices.ContainsFunc(r.Rows, func(x Row) bool { return x.Error != "" })
}

// Row returns the row of a metric, if present.
func (r *Report) Row(metric string) (Row, bool) {
	i := slices.IndexFunc(r.Rows, func(x Row) bool { return x.Metric == metric })
	if i < 0 {
		return Row{}, false
	}
	return r.Rows[i], true
}

// ComputeRatios sets every row's Ratio to its figure divided by the figure
// of the row named in its CompareTo: the p50s when both rows have
// percentiles, else the Values. Rows whose reference is missing (not run,
// skipped, failed or zero) get ratio 0, shown as "-". It then judges every
// row against its Targets (Met) and flags rows whose p50 is far from the
// other rows of their Transport (Flag).
func (r *Report) ComputeRatios() {
	byMetric := map[string]*Row{}
	for i := range r.Rows {
		byMetric[r.Rows[i].Metric] = &r.Rows[i]
	}
	for i := range r.Rows {
		x := &r.Rows[i]
		x.Ratio, x.RatioOf = 0, ""
		ref := byMetric[x.CompareTo]
		if x.CompareTo == "" || !measured(x) || !measured(ref) {
			continue
		}
		v, stat := figure(x, StatAuto, ref)
		rv, _ := figure(ref, stat, nil)
		if v != 0 && rv != 0 {
			x.Ratio, x.RatioOf = v/rv, stat
		}
	}
	for i := range r.Rows {
		x := &r.Rows[i]
		x.Met = ""
		if len(x.Targets) == 0 {
			continue
		}
		// short when one target is missed; pass only when every one is
		// judged and met.
		x.Met = MetPass
		for _, t := range x.Targets {
			met, judged := t.judge(byMetric)
			switch {
			case judged && !met:
				x.Met = MetShort
			case !judged && x.Met == MetPass:
				x.Met = MetNone
			}
		}
	}
	r.flagPlacement()
}

// flagFactor is how far (either way) a row's p50 may be from the median
// p50 of the other rows of its transport before it is flagged.
const flagFactor = 1.5

// flagMaxBytes is the largest payload of a sweep row that stands for its
// series' transport when flagging.
const flagMaxBytes = 4 << 10

// transportOf returns the transport key of a row for flagging, "" for none.
func transportOf(x *Row) string {
	switch {
	case x.Transport != "":
		return x.Transport
	case x.Series != "" && x.Bytes > 0 && x.Bytes <= flagMaxBytes:
		return x.Series
	}
	return ""
}

// flagPlacement sets Flag on the latency rows whose p50 is more than
// flagFactor away from the median p50 of the other rows of the same
// transport. On a virtual machine the host may place the two vCPUs of a
// pinned pair differently from one scenario to the next (a shared core, two
// cores, two sockets): the same round trip then measures twice as fast or
// slow, and a ratio taken across that change means nothing.
func (r *Report) flagPlacement() {
	groups := map[string][]int{}
	var order []string
	for i := range r.Rows {
		x := &r.Rows[i]
		x.Flag = ""
		k := transportOf(x)
		if k == "" || !measured(x) || x.Hist == nil || x.Hist.P50 <= 0 {
			continue
		}
		if _, ok := groups[k]; !ok {
			order = append(order, k)
		}
		groups[k] = append(groups[k], i)
	}
	for _, k := range order {
		g := groups[k]
		if len(g) < 2 {
			continue
		}
		for _, i := range g {
			var others []float64
			var names []string
			for _, j := range g {
				if j != i {
					others = append(others, r.Rows[j].Hist.P50)
					names = append(names, r.Rows[j].Metric)
				}
			}
			m := median(others)
			f := r.Rows[i].Hist.P50 / m
			if f > flagFactor || f < 1/flagFactor {
				r.Rows[i].Flag = fmt.Sprintf("p50 %s the median of the other %s rows (%s): "+
					"the pair was likely placed differently (placement lottery); ratios with this row are suspect",
					FormatRatio(f), k, strings.Join(names, ", "))
			}
		}
	}
}

// WriteJSON writes the report as one indented JSON object.
func (r *Report) WriteJSON(w io.Writer) error {
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	return enc.Encode(r)
}

// CSVHeader is the header line of WriteCSV.
var CSVHeader = []string{"metric", "scenario", "value", "unit", "count", "mean", "p50", "p99", "p999", "max",
	"compare_to", "ratio", "skipped", "error", "note", "ratio_of", "target", "met", "flag"}

// WriteCSV writes one line per row after the CSVHeader line. Empty cells
// stand for missing values.
func (r *Report) WriteCSV(w io.Writer) error {
	cw := csv.NewWriter(w)
	cw.Write(CSVHeader)
	f := func(v float64) string { return strconv.FormatFloat(v, 'g', -1, 64) }
	for _, x := range r.Rows {
		rec := []string{x.Metric, x.Scenario, f(x.Value), x.Unit, "", "", "", "", "", "", x.CompareTo, "",
			strconv.FormatBool(x.Skipped), x.Error, x.Note, string(x.RatioOf), x.targetText(), x.Met, x.Flag}
		if x.Hist != nil {
			rec[4] = strconv.FormatInt(x.Hist.Count, 10)
			rec[5], rec[6], rec[7], rec[8], rec[9] = f(x.Hist.Mean), f(x.Hist.P50), f(x.Hist.P99), f(x.Hist.P999), f(x.Hist.Max)
		}
		if x.Ratio != 0 {
			rec[11] = f(x.Ratio)
		}
		cw.Write(rec)
	}
	cw.Flush()
	return cw.Error()
}

// FormatRatio formats a ratio as the table shows it: "151x", "13.9x",
// "2.03x", "0.0059x".
func FormatRatio(v float64) string {
	digits := 4
	switch a := math.Abs(v); {
	case a >= 100:
		digits = 0
	case a >= 10:
		digits = 1
	case a >= 0.1:
		digits = 2
	}
	return strconv.FormatFloat(v, 'f', digits, 64) + "x"
}

// Human formats a figure with four significant digits and a k, M or G suffix
// from 100 000 up: 12.35, 812.4, 56780, 123.5k, 25.10M, 9.870G.
func Human(v float64) string {
	a := math.Abs(v)
	switch {
	case v == 0:
		return "0"
	case a >= 1e9:
		return trimFloat(v/1e9, 4) + "G"
	case a >= 1e6:
		return trimFloat(v/1e6, 4) + "M"
	case a >= 1e5:
		return trimFloat(v/1e3, 4) + "k"
	}
	return trimFloat(v, 4)
}

// trimFloat formats v with sig significant digits in fixed notation.
func trimFloat(v float64, sig int) string {
	a := math.Abs(v)
	digits := 0
	for lim := math.Pow(10, float64(sig-1)); a < lim && digits < 6; lim /= 10 {
		digits++
	}
	return strconv.FormatFloat(v, 'f', digits, 64)
}
