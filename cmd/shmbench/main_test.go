//go:build linux

package main

import (
	"bytes"
	"context"
	"encoding/csv"
	"encoding/json"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/shmex/shmex/bench"
)

func TestMain(m *testing.M) {
	bench.ChildMain()
	os.Exit(m.Run())
}

// shmbench runs the program with args and returns its exit code and output.
func shmbench(t *testing.T, args ...string) (int, string, string) {
	t.Helper()
	var out, errb bytes.Buffer
	code := run(context.Background(), args, &out, &errb)
	if errb.Len() > 0 {
		t.Logf("stderr of shmbench %s:\n%s", strings.Join(args, " "), errb.String())
	}
	return code, out.String(), errb.String()
}

// TestJSON runs every scenario at smoke-test sizes and checks that the JSON
// parses and has a good row for every metric that the scenarios declare.
func TestJSON(t *testing.T) {
	code, out, _ := shmbench(t, "-quick", "-json")
	if code != exitOK {
		t.Fatalf("exit %d:\n%s", code, out)
	}
	var r bench.Report
	if err := json.Unmarshal([]byte(out), &r); err != nil {
		t.Fatalf("JSON: %v\n%s", err, out)
	}
	if r.Tool != "shmbench" || r.Schema != bench.ReportSchema || !r.Settings.Quick || r.Host.CPUs < 1 {
		t.Errorf("header: %+v %+v %+v", r.Tool, r.Settings, r.Host)
	}
	for _, s := range bench.Scenarios() {
		for _, m := range s.Metrics {
			row, ok := r.Row(m)
			switch {
			case !ok:
				t.Errorf("no row %s", m)
			case row.Error != "":
				t.Errorf("%s: %s", m, row.Error)
			case row.Skipped:
				if row.Note == "" {
					t.Errorf("%s skipped without a reason", m)
				}
			case row.Value < 0 || row.Value == 0 && row.Unit != "%" || row.Unit == "" || row.Scenario != s.Name:
				t.Errorf("bad row %+v", row)
			case row.CompareTo != "":
				if ref, ok := r.Row(row.CompareTo); ok && !ref.Skipped && row.Ratio == 0 {
					t.Errorf("%s: no ratio to %s", m, row.CompareTo)
				}
			}
		}
	}
	// The iceoryx rows: skipped only with a reason, and never under
	// CI=true, where .ci/run installs iceoryx. (A -race build skips
	// shmipc-go; TestShmipcOutsideRace measures it.)
	for _, m := range []string{bench.MetricIceoryxRRPoll, bench.MetricIceoryxRRWait, bench.MetricIceoryxPSPoll,
		bench.MetricIceoryxPSWait} {
		if row, ok := r.Row(m); ok && row.Skipped && os.Getenv("CI") == "true" {
			t.Errorf("CI=true and %s skipped: %s", m, row.Note)
		}
	}
	for _, m := range []string{"limit.shared_word_rtt_ns", "limit.futex_rtt_ns", "limit.memcpy_gbps",
		"ring.rtt_spin_ns", "ring.rtt_futex_ns", "exchange.rtt_spin_ns", "exchange.rtt_futex_ns",
		"ring.throughput_1to1_msgs", "ring.throughput_8to1_msgs", "chan.throughput_msgs",
		"uds.rtt_ns", "tcp.rtt_ns", "redis.rtt_ns", "uds.throughput_msgs", "idle.cpu_percent",
		"proxy.loan_rtt_1KiB_ns", "proxy.loan_rtt_1GiB_ns", "proxy.put_gbps",
		bench.MetricIceoryxRRPoll, bench.MetricShmipcRTT} {
		if _, ok := r.Row(m); !ok {
			t.Errorf("required metric %s missing", m)
		}
	}
}

func TestCSV(t *testing.T) {
	code, out, _ := shmbench(t, "-quick", "-csv", "-run", `^(limit/futex|chan)$`)
	if code != exitOK {
		t.Fatalf("exit %d:\n%s", code, out)
	}
	recs, err := csv.NewReader(strings.NewReader(out)).ReadAll()
	if err != nil {
		t.Fatalf("CSV: %v\n%s", err, out)
	}
	if len(recs) != 4 || !slices.Equal(recs[0], bench.CSVHeader) {
		t.Fatalf("CSV records: %q", recs)
	}
	var metrics []string
	for _, rec := range recs[1:] {
		metrics = append(metrics, rec[0])
		if len(rec) != len(bench.CSVHeader) || rec[2] == "" || rec[2] == "0" {
			t.Errorf("record %q", rec)
		}
	}
	if !slices.Equal(metrics, []string{"limit.futex_rtt_ns", "chan.rtt_ns", "chan.throughput_msgs"}) {
		t.Errorf("metrics %q", metrics)
	}
}

func TestTable(t *testing.T) {
	code, out, _ := shmbench(t, "-quick", "-iterations", "200", "-reps", "2", "-pin", "-run", `^uds$`)
	if code != exitOK {
		t.Fatalf("exit %d:\n%s", code, out)
	}
	for _, s := range []string{"METRIC", "TARGET", "MET", "uds.rtt_ns", "uds.throughput_msgs", "limit.futex_rtt",
		"medians of 2 repetitions", "pinned"} {
		if !strings.Contains(out, s) {
			t.Errorf("table lacks %q:\n%s", s, out)
		}
	}
	checkWidth(t, out)
}

// checkWidth fails when a line of out is wider than the table's width.
func checkWidth(t *testing.T, out string) {
	t.Helper()
	for _, l := range strings.Split(out, "\n") {
		if n := len([]rune(l)); n > bench.TableWidth {
			t.Errorf("line of %d columns: %q", n, l)
		}
	}
}

// TestProgressPiped checks that a run whose standard error is not a
// terminal still says which scenario runs, one line each, and that
// -progress=false silences it.
func TestProgressPiped(t *testing.T) {
	code, _, errOut := shmbench(t, "-quick", "-run", "^chan$")
	if code != exitOK || !strings.Contains(errOut, "shmbench: [1/1] chan") || strings.Contains(errOut, "\r") {
		t.Errorf("exit %d, stderr %q", code, errOut)
	}
	code, _, errOut = shmbench(t, "-quick", "-run", "^chan$", "-progress=false")
	if code != exitOK || strings.Contains(errOut, "[1/1]") {
		t.Errorf("-progress=false: exit %d, stderr %q", code, errOut)
	}
}

// TestRedisMissing checks that a missing redis-server is a skipped row with
// a reason and not a failure, whether PATH lacks it or the flag names a
// missing program.
func TestRedisMissing(t *testing.T) {
	check := func(t *testing.T, args ...string) {
		code, out, _ := shmbench(t, append([]string{"-quick", "-json", "-run", "^redis$"}, args...)...)
		if code != exitOK {
			t.Fatalf("exit %d:\n%s", code, out)
		}
		var r bench.Report
		if err := json.Unmarshal([]byte(out), &r); err != nil {
			t.Fatal(err)
		}
		if len(r.Rows) != 2 {
			t.Fatalf("rows %+v", r.Rows)
		}
		for _, row := range r.Rows {
			if !row.Skipped || !strings.Contains(row.Note, "not found") {
				t.Errorf("row %+v", row)
			}
		}
	}
	t.Run("flag", func(t *testing.T) { check(t, "-redis-server", "/nonexistent/redis-server") })
	t.Run("PATH", func(t *testing.T) {
		t.Setenv("PATH", t.TempDir())
		check(t)
	})
}

func TestPlot(t *testing.T) {
	file := filepath.Join(t.TempDir(), "report.png")
	code, out, errOut := shmbench(t, "-quick", "-run", `^(limit/|chan$)`, "-plot", file)
	if code != exitOK {
		t.Fatalf("exit %d:\n%s", code, out)
	}
	if !strings.Contains(errOut, "shmbench: plot written to "+file) {
		t.Errorf("the plot's path is not printed: %q", errOut)
	}
	b, err := os.ReadFile(file)
	if err != nil || !bytes.HasPrefix(b, []byte("\x89PNG")) {
		t.Fatalf("plot: %v, %d bytes", err, len(b))
	}
	svg := filepath.Join(t.TempDir(), "sweep.svg")
	code, out, _ = shmbench(t, "-quick", "-run", `^sweep$`, "-redis-server", "none", "-plot", svg)
	if code != exitOK {
		t.Fatalf("exit %d:\n%s", code, out)
	}
	b, err = os.ReadFile(svg)
	if err != nil || !bytes.Contains(b, []byte("<svg")) || !bytes.Contains(b, []byte("payload, bytes")) {
		t.Fatalf("svg plot: %v, %d bytes", err, len(b))
	}
	if code, _, _ := shmbench(t, "-quick", "-plot", "x.gif"); code != exitUsage {
		t.Errorf("-plot x.gif: exit %d", code)
	}
}

func TestUsage(t *testing.T) {
	for _, args := range [][]string{{"-json", "-csv"}, {"-nosuchflag"}, {"-run", "("}, {"-run", "^nothing$"},
		{"extra"}, {"-reps", "-1"}} {
		if code, _, _ := shmbench(t, args...); code != exitUsage {
			t.Errorf("shmbench %q: exit %d, want %d", args, code, exitUsage)
		}
	}
	code, out, _ := shmbench(t, "-list")
	if code != exitOK || !strings.Contains(out, "limit.shared_word_rtt_ns") || !strings.Contains(out, "redis") ||
		!strings.Contains(out, bench.MetricIceoryxRRPoll+"  target: ≥ 2x exchange.rtt_spin_ns") {
		t.Errorf("-list: %d\n%s", code, out)
	}
	checkWidth(t, out)
	if code, _, _ := shmbench(t, "-h"); code != exitOK {
		t.Errorf("-h: exit %d", code)
	}
}

func TestInterrupted(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	var out, errb bytes.Buffer
	if code := run(ctx, []string{"-quick", "-run", "chan"}, &out, &errb); code != exitInterrupted {
		t.Errorf("cancelled run: exit %d\n%s", code, errb.String())
	}
}
