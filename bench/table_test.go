//go:build linux

package bench

import (
	"bytes"
	"context"
	"math"
	"strings"
	"testing"
	"time"
	"unicode/utf8"
)

// lat returns a measured latency row with a p50 and a mean that differ.
func lat(metric string, mean, p50 float64, vs string) Row {
	return Row{Metric: metric, Value: mean, Unit: "ns", CompareTo: vs,
		Hist: &Summary{Count: 100, Mean: mean, P50: p50, P99: 3 * p50, P999: 4 * p50, Max: 5 * p50}}
}

func rate(metric string, v float64, vs string) Row {
	return Row{Metric: metric, Value: v, Unit: "msgs/s", CompareTo: vs}
}

func TestRatiosOnP50(t *testing.T) {
	r := &Report{Rows: []Row{
		lat("a.rtt_ns", 1000, 100, ""),
		lat("b.rtt_ns", 700, 300, "a.rtt_ns"),                               // a stalled mean must not decide the ratio
		{Metric: "c.rtt_ns", Value: 500, Unit: "ns", CompareTo: "a.rtt_ns"}, // no percentiles: values
		rate("d.msgs", 50, "e.msgs"),
		rate("e.msgs", 100, ""),
		{Metric: "f.rtt_ns", Skipped: true, Note: "no"},
		lat("g.rtt_ns", 10, 10, "f.rtt_ns"),
	}}
	r.ComputeRatios()
	want := map[string]struct {
		ratio float64
		of    Stat
	}{"b.rtt_ns": {3, StatP50}, "c.rtt_ns": {0.5, StatValue}, "d.msgs": {0.5, StatValue}, "g.rtt_ns": {0, ""}}
	for m, w := range want {
		x, _ := r.Row(m)
		if math.Abs(x.Ratio-w.ratio) > 1e-9 || x.RatioOf != w.of {
			t.Errorf("%s: ratio %v of %q, want %v of %q", m, x.Ratio, x.RatioOf, w.ratio, w.of)
		}
	}
}

func TestTargetJudge(t *testing.T) {
	rows := []Row{
		lat("x.rtt_ns", 5000, 1000, ""),
		lat("a.rtt_ns", 9000, 1250, "x.rtt_ns"), // p99 3750
		rate("a.ops", 2e6, "x.msgs"),
		rate("x.msgs", 5e6, ""),
		{Metric: "gone.rtt_ns", Skipped: true},
	}
	cases := []struct {
		name string
		t    Target
		met  string
	}{
		{"p50 plus", Target{Metric: "a.rtt_ns", Op: AtMost, Factor: 1, Plus: 300, Vs: "x.rtt_ns"}, MetPass},
		{"p50 plus short", Target{Metric: "a.rtt_ns", Op: AtMost, Factor: 1, Plus: 200, Vs: "x.rtt_ns"}, MetShort},
		{"own p99", Target{Metric: "a.rtt_ns", Stat: StatP99, Op: AtMost, Factor: 3, Vs: "a.rtt_ns", VsStat: StatP50}, MetPass},
		{"own p99 short", Target{Metric: "a.rtt_ns", Stat: StatP99, Op: AtMost, Factor: 2.9, Vs: "a.rtt_ns", VsStat: StatP50}, MetShort},
		{"mean", Target{Metric: "a.rtt_ns", Stat: StatValue, Op: AtMost, Factor: 1, Vs: "x.rtt_ns", VsStat: StatValue}, MetShort},
		{"rate ratio", Target{Metric: "a.ops", Op: AtLeast, Factor: 0.3, Vs: "x.msgs"}, MetPass},
		{"rate absolute", Target{Metric: "a.ops", Op: AtLeast, Factor: 1.5e6}, MetPass},
		{"rate absolute short", Target{Metric: "a.ops", Op: AtLeast, Factor: 2.5e6}, MetShort},
		{"reference skipped", Target{Metric: "a.rtt_ns", Op: AtMost, Factor: 2, Vs: "gone.rtt_ns"}, MetNone},
		{"reference missing", Target{Metric: "a.rtt_ns", Op: AtMost, Factor: 2, Vs: "nowhere.rtt_ns"}, MetNone},
		{"row skipped", Target{Metric: "gone.rtt_ns", Op: AtMost, Factor: 2, Vs: "x.rtt_ns"}, MetNone},
	}
	for _, c := range cases {
		r := &Report{Rows: append([]Row(nil), rows...)}
		for i := range r.Rows {
			if r.Rows[i].Metric == c.t.Metric {
				r.Rows[i].Targets = []Target{c.t}
			}
		}
		r.ComputeRatios()
		x, _ := r.Row(c.t.Metric)
		if x.Met != c.met {
			t.Errorf("%s: met %q, want %q", c.name, x.Met, c.met)
		}
	}
	// Several targets: one short makes the row short, one unjudged keeps
	// it from passing.
	r := &Report{Rows: append([]Row(nil), rows...)}
	r.Rows[1].Targets = []Target{
		{Metric: "a.rtt_ns", Op: AtMost, Factor: 2, Vs: "gone.rtt_ns"},
		{Metric: "a.rtt_ns", Op: AtMost, Factor: 2, Vs: "x.rtt_ns"},
	}
	r.ComputeRatios()
	if r.Rows[1].Met != MetNone {
		t.Errorf("pass and unjudged: %q", r.Rows[1].Met)
	}
	r.Rows[1].Targets = append(r.Rows[1].Targets, Target{Metric: "a.rtt_ns", Op: AtMost, Factor: 1, Vs: "x.rtt_ns"})
	r.ComputeRatios()
	if r.Rows[1].Met != MetShort {
		t.Errorf("pass and short: %q", r.Rows[1].Met)
	}
}

func TestTargetText(t *testing.T) {
	for _, c := range []struct {
		t         Target
		compareTo string
		want      string
	}{
		{Target{Metric: "a", Op: AtMost, Factor: 2, Vs: "b"}, "b", "≤ 2x"},
		{Target{Metric: "a", Op: AtLeast, Factor: 0.3, Vs: "b"}, "b", "≥ 0.3x"},
		{Target{Metric: "a", Op: AtMost, Factor: 1, Plus: 300, Vs: "b"}, "b", "≤ VS+300"},
		{Target{Metric: "a", Op: AtMost, Factor: 0.5, Vs: "c.rtt_ns"}, "b", "≤ 0.5x c.rtt"},
		{Target{Metric: "a", Op: AtLeast, Factor: 1.5e6}, "b", "≥ 1.5M"},
		{Target{Metric: "a", Stat: StatP99, Op: AtMost, Factor: 3, Vs: "a", VsStat: StatP50}, "b", "p99 ≤ 3x p50"},
	} {
		if got := c.t.Text(c.compareTo); got != c.want {
			t.Errorf("%+v: %q, want %q", c.t, got, c.want)
		}
	}
}

func TestFlagPlacement(t *testing.T) {
	sweep := func(series string, bytes int64, p50 float64) Row {
		x := lat("sweep."+series+"."+sizeName(int(bytes)), p50, p50, "")
		x.Series, x.Bytes = series, bytes
		return x
	}
	uds := lat("uds.rtt_ns", 50000, 48000, "")
	uds.Transport = "uds"
	r := &Report{Rows: []Row{
		uds,
		sweep("uds", 64, 20000),       // the outlier of three
		sweep("uds", 1024, 47000),     // close to uds.rtt_ns
		sweep("uds", 1<<20, 900000),   // too large to stand for the transport
		sweep("tcp", 64, 60000),       // two close rows: no flag
		sweep("tcp", 1024, 70000),     //
		sweep("exchange", 64, 500),    // two far rows: both flagged
		sweep("exchange", 1024, 2000), //
		{Metric: "uds.gone_ns", Transport: "uds", Skipped: true}, // not measured: ignored
	}}
	r.ComputeRatios()
	flagged := map[string]bool{}
	for _, x := range r.Rows {
		if x.Flag != "" {
			flagged[x.Metric] = true
		}
	}
	want := map[string]bool{"sweep.uds.64B": true, "sweep.exchange.64B": true, "sweep.exchange.1KiB": true}
	for m := range want {
		if !flagged[m] {
			t.Errorf("%s not flagged", m)
		}
	}
	for m := range flagged {
		if !want[m] {
			x, _ := r.Row(m)
			t.Errorf("%s flagged: %s", m, x.Flag)
		}
	}
	x, _ := r.Row("sweep.uds.64B")
	if !strings.Contains(x.Flag, "uds.rtt_ns") || !strings.Contains(x.Flag, "placement") {
		t.Errorf("flag says %q", x.Flag)
	}
}

// TestTableFormat checks the table against a report with the longest names
// of the run, targets, a flag, a skipped and a failed row: every line fits
// TableWidth, VALUE is the p50, MEAN the value, MET says SHORT and pass, and
// the notes say why rows were skipped, failed or flagged.
func TestTableFormat(t *testing.T) {
	long := lat("ring.inproc_throughput_1to1_msgs", 9000, 1234, "exchange.throughput_64to1_msgs")
	long.Targets = []Target{
		{Metric: long.Metric, Op: AtMost, Factor: 1, Plus: 300, Vs: long.CompareTo},
		{Metric: long.Metric, Stat: StatP99, Op: AtMost, Factor: 3, Vs: long.Metric, VsStat: StatP50},
		{Metric: long.Metric, Op: AtMost, Factor: 0.5, Vs: "iceoryx.rtt_reqresp_poll_ns"},
	}
	long.Note = "spins; median of 3; pinned"
	ref := lat("exchange.throughput_64to1_msgs", 700, 600, "")
	ice := lat("iceoryx.rtt_reqresp_poll_ns", 3000, 2500, "")
	pass := rate("action.throughput_ops", 2e6, "")
	pass.Targets = []Target{{Metric: pass.Metric, Op: AtLeast, Factor: 1.5e6}}
	r := &Report{Settings: Settings{Reps: 3, Pin: true}, Host: Host{CPUs: 2, GoVersion: "go1.x"}, Elapsed: 1.5,
		Rows: []Row{ref, long, ice, pass,
			{Metric: "redis.rtt_ns", Unit: "ns", Skipped: true, Note: "redis-server not found"},
			{Metric: "tcp.rtt_ns", Unit: "ns", Error: "connection refused"},
		}}
	for i := range r.Rows {
		r.Rows[i].Scenario = "s"
	}
	r.Rows[0].Transport, r.Rows[2].Transport = "t", "t" // 600 against 2500: both flagged
	r.ComputeRatios()
	var b bytes.Buffer
	if err := r.WriteTable(&b); err != nil {
		t.Fatal(err)
	}
	out := b.String()
	for _, l := range strings.Split(out, "\n") {
		if n := utf8.RuneCountInString(l); n > TableWidth {
			t.Errorf("line of %d columns: %q", n, l)
		}
	}
	lines := strings.Split(out, "\n")
	if f := strings.Fields(lines[0]); strings.Join(f, " ") != "METRIC VALUE MEAN P99 RATIO VS TARGET MET !" {
		t.Errorf("header %q", lines[0])
	}
	row := func(metric string) []string {
		for _, l := range lines {
			if f := strings.Fields(l); len(f) > 0 && f[0] == metric {
				return f
			}
		}
		t.Fatalf("no line for %s:\n%s", metric, out)
		return nil
	}
	if f := row(long.Metric); f[1] != "1234" || f[2] != "9000" || f[3] != "3702" || f[4] != "2.06x" ||
		f[5] != "exchange.throughput_64to1" || f[len(f)-1] != "SHORT" {
		t.Errorf("long row %q", f)
	}
	// One line per further target, under the first.
	if i := strings.Index(out, long.Metric); !strings.Contains(out[i:], "\n"+strings.Repeat(" ", 60)) ||
		!strings.Contains(out, "p99 ≤ 3x p50") {
		t.Errorf("targets of the long row:\n%s", out)
	}
	if f := row("action.throughput_ops"); f[1] != "2.000M" || f[len(f)-1] != "pass" {
		t.Errorf("rate row %q", f)
	}
	if f := row("exchange.throughput_64to1_msgs"); f[len(f)-1] != "!" {
		t.Errorf("flagged row %q", f)
	}
	if f := row("redis.rtt_ns"); f[1] != "skipped" {
		t.Errorf("skipped row %q", f)
	}
	if f := row("tcp.rtt_ns"); f[1] != "FAILED" {
		t.Errorf("failed row %q", f)
	}
	for _, want := range []string{"redis.rtt_ns: skipped: redis-server not found", "tcp.rtt_ns: FAILED: connection refused",
		"spins", "target " + long.Metric + " ≤ 0.5x iceoryx.rtt_reqresp_poll_ns", "placement lottery",
		"medians of 3 repetitions", "pinned to different CPUs", "Targets: 1 met, 1 short"} {
		if !strings.Contains(strings.Join(strings.Fields(out), " "), want) {
			t.Errorf("table lacks %q:\n%s", want, out)
		}
	}
	if strings.Contains(out, "median of 3;") || strings.Contains(out, "; pinned") {
		t.Errorf("per-row notes repeat the footer:\n%s", out)
	}
}

func TestRegisterTargetOfOtherMetric(t *testing.T) {
	defer func() {
		if recover() == nil {
			t.Error("Register accepted a target for a metric the scenario does not produce")
		}
	}()
	Register(Scenario{Name: "test/bad-target", Metrics: []string{"t.x_ns"},
		Run:     func(context.Context, *Env) ([]Row, error) { return nil, nil },
		Targets: []Target{{Metric: "t.y_ns", Op: AtMost, Factor: 1}}})
}

func TestProgressLines(t *testing.T) {
	var b syncBuffer
	p := newProgress(&b)
	p.start(2)
	p.begin(0, "one")
	p.begin(1, "two")
	p.stop()
	out := string(b.Bytes())
	if !strings.Contains(out, "shmbench: [1/2] one") || !strings.Contains(out, "shmbench: [2/2] two") ||
		strings.Contains(out, "\r") {
		t.Errorf("progress on a pipe wrote %q", out)
	}
	newProgress(nil).start(1) // no writer: nothing, no panic
}

func TestHistogramTravels(t *testing.T) {
	h := NewHistogram()
	for i := 1; i <= 1000; i++ {
		h.Record(time.Duration(i) * time.Microsecond)
	}
	s, err := h.encode()
	if err != nil {
		t.Fatal(err)
	}
	if strings.ContainsAny(s, "\n ") {
		t.Errorf("encoded histogram is not one word: %q", s)
	}
	d, err := decodeHistogram(s)
	if err != nil {
		t.Fatal(err)
	}
	if *d.Summary() != *h.Summary() {
		t.Errorf("decoded %+v, want %+v", d.Summary(), h.Summary())
	}
	for _, bad := range []string{"", "not base64!", "AAAA"} {
		if _, err := decodeHistogram(bad); err == nil {
			t.Errorf("decodeHistogram(%q) accepted", bad)
		}
	}
}
