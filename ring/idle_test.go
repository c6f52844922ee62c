package ring

import (
	"errors"
	"testing"
	"time"
)

func TestLearn(t *testing.T) {
	backoff := SpinYieldPark(1000, 8)
	for _, tc := range []struct {
		name   string
		idle   IdleStrategy
		before int
		w      waitState
		parked bool
		after  int
	}{
		{"spin found it", backoff, 1000, waitState{}, false, 1000},
		{"spin found it at 0", backoff, 0, waitState{}, false, 0},
		{"yield ran another thread", backoff, 1000, waitState{yields: 1, shared: true}, false, 0},
		{"Gosched ran another goroutine while spinning", backoff, 1000, waitState{shared: true}, false, 0},
		{"yields ran nobody: regrow from 0", backoff, 0, waitState{yields: 3}, false, spinRegrow},
		{"yields ran nobody: double", backoff, 100, waitState{yields: 1}, false, 200},
		{"yields ran nobody: capped", backoff, 900, waitState{yields: 1}, false, 1000},
		{"parked: no news", backoff, 16, waitState{yields: 8, shared: true}, true, 16},
		{"spin-then-park never adapts", SpinThenPark(1000), 1000, waitState{yields: 1, shared: true}, false, 1000},
		{"yield only: nothing to adapt", SpinYieldPark(0, 8), 0, waitState{yields: 1}, false, 0},
		{"small cap", SpinYieldPark(4, 8), 0, waitState{yields: 1}, false, 4},
	} {
		c := &Consumer{idle: tc.idle, spins: tc.before}
		c.learn(&tc.w, tc.parked)
		if c.spins != tc.after {
			t.Errorf("%s: budget %d -> %d, want %d", tc.name, tc.before, c.spins, tc.after)
		}
	}
}

func TestRanOther(t *testing.T) {
	q := 650 * time.Nanosecond
	for _, tc := range []struct {
		d    time.Duration
		want bool
	}{
		{600 * time.Nanosecond, false},
		{1200 * time.Nanosecond, false}, // under 2q
		{1400 * time.Nanosecond, true},
		{40 * time.Microsecond, true},
	} {
		if got := ranOther(tc.d, q); got != tc.want {
			t.Errorf("ranOther(%v, %v) = %v", tc.d, q, got)
		}
	}
	// A tiny reference needs 500 ns more than it, not just twice it.
	if ranOther(300*time.Nanosecond, 80*time.Nanosecond) {
		t.Error("300ns against 80ns counted as another thread running")
	}
}

// The calibrated durations are plausible: positive, and a yield alone no
// slower than the slowest yield ever timed here under load.
func TestCalibration(t *testing.T) {
	if q := quickYield(time.Hour); q <= 0 || q > 100*time.Millisecond {
		t.Errorf("quick yield %v", q)
	}
	if q := quickGosched(time.Hour); q <= 0 || q > maxQuickGosched {
		t.Errorf("quick Gosched %v", q)
	}
}

func TestIdleStrategyText(t *testing.T) {
	for _, tc := range []struct {
		s    IdleStrategy
		text string
	}{
		{Spin, "spin"},
		{Park, "park"},
		{SpinThenPark(2000), "spinpark:2000"},
		{Backoff, "backoff:2000:64"},
		{SpinYieldPark(0, 8), "backoff:0:8"},
		{SpinYieldPark(5, 0), "spinpark:5"},
		{IdleStrategy{Spins: SpinForever, NoBurstBackoff: true}, "spin,noburstbackoff"},
	} {
		if got := tc.s.String(); got != tc.text {
			t.Errorf("%#v.String() = %q, want %q", tc.s, got, tc.text)
		}
		back, err := ParseIdleStrategy(tc.text)
		if err != nil || back != tc.s {
			t.Errorf("ParseIdleStrategy(%q) = %#v, %v; want %#v", tc.text, back, err, tc.s)
		}
	}
	if s, err := ParseIdleStrategy("backoff"); err != nil || s != Backoff {
		t.Errorf(`ParseIdleStrategy("backoff") = %v, %v`, s, err)
	}
	for _, bad := range []string{"", "spin:3", "park:1", "spinpark", "spinpark:-1", "spinpark:x",
		"backoff:1", "backoff:1:0", "backoff:1:2:3", "spinpark:9999999999", "spin,fast", "yield"} {
		if s, err := ParseIdleStrategy(bad); !errors.Is(err, ErrBadIdleStrategy) {
			t.Errorf("ParseIdleStrategy(%q) = %v, %v; want ErrBadIdleStrategy", bad, s, err)
		}
	}
}

// FuzzParseIdleStrategy: text from an environment variable or a flag either
// fails cleanly or reads back the same from its String.
func FuzzParseIdleStrategy(f *testing.F) {
	for _, s := range []string{"spin", "park", "spinpark:10", "backoff", "backoff:2000:64,noburstbackoff", "backoff:1:", ":::"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, text string) {
		s, err := ParseIdleStrategy(text)
		if err != nil {
			if !errors.Is(err, ErrBadIdleStrategy) {
				t.Fatalf("%q: %v", text, err)
			}
			return
		}
		back, err := ParseIdleStrategy(s.String())
		if err != nil || back != s {
			t.Fatalf("%q -> %#v -> %q -> %#v, %v", text, s, s.String(), back, err)
		}
	})
}
