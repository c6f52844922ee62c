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
	"text/tabwriter"
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
const ReportSchema = 1

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

// ComputeRatios sets every row's Ratio to its Value divided by the Value of
// the row named in its CompareTo. Rows whose reference is missing (not run,
// skipped, failed or zero) get ratio 0, shown as "-".
func (r *Report) ComputeRatios() {
	ref := map[string]float64{}
	for _, x := range r.Rows {
		if !x.Skipped && x.Error == "" && x.Value != 0 {
			ref[x.Metric] = x.Value
		}
	}
	for i := range r.Rows {
		x := &r.Rows[i]
		x.Ratio = 0
		if v, ok := ref[x.CompareTo]; ok && x.CompareTo != "" && !x.Skipped && x.Error == "" {
			x.Ratio = x.Value / v
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
	"compare_to", "ratio", "skipped", "error", "note"}

// WriteCSV writes one line per row after the CSVHeader line. Empty cells
// stand for missing values.
func (r *Report) WriteCSV(w io.Writer) error {
	cw := csv.NewWriter(w)
	cw.Write(CSVHeader)
	f := func(v float64) string { return strconv.FormatFloat(v, 'g', -1, 64) }
	for _, x := range r.Rows {
		rec := []string{x.Metric, x.Scenario, f(x.Value), x.Unit, "", "", "", "", "", "", x.CompareTo, "",
			strconv.FormatBool(x.Skipped), x.Error, x.Note}
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

// WriteTable writes the report as an aligned text table, one line per row.
// Figures are in the row's unit with k, M and G suffixes for thousands,
// millions and billions; RATIO is VALUE divided by the VS row's value.
func (r *Report) WriteTable(w io.Writer) error {
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "SCENARIO\tMETRIC\tVALUE\tUNIT\tP50\tP99\tP99.9\tMAX\tVS\tRATIO\tNOTE")
	for _, x := range r.Rows {
		val := Human(x.Value)
		note := x.Note
		switch {
		case x.Error != "":
			val, note = "FAILED", join(x.Error, note)
		case x.Skipped:
			val = "skipped"
		}
		p := [4]string{"-", "-", "-", "-"}
		if x.Hist != nil {
			p = [4]string{Human(x.Hist.P50), Human(x.Hist.P99), Human(x.Hist.P999), Human(x.Hist.Max)}
		}
		vs, ratio := x.CompareTo, "-"
		if vs == "" {
			vs = "-"
		}
		if x.Ratio != 0 {
			ratio = FormatRatio(x.Ratio)
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n", x.Scenario, x.Metric, val, x.Unit,
			p[0], p[1], p[2], p[3], vs, ratio, note)
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	_, err := fmt.Fprintf(w, "%d rows in %.1fs on %d CPUs (%s); RATIO = VALUE / VS, measured in this run.\n",
		len(r.Rows), r.Elapsed, r.Host.CPUs, r.Host.GoVersion)
	return err
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
