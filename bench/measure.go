//go:build linux

package bench

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"time"
)

// Phase bounds one measuring loop: Count operations when Count is positive,
// otherwise as many as fit in Duration.
type Phase struct {
	Duration time.Duration
	Count    int64
}

// Phase returns the run's measuring phase (Config.Duration, or
// Config.Iterations operations when set).
func (e *Env) Phase() Phase {
	return Phase{Duration: e.Duration, Count: int64(e.Iterations)}
}

// WarmupPhase returns the run's warm-up phase (Config.Warmup).
func (e *Env) WarmupPhase() Phase { return Phase{Duration: e.Warmup} }

// maxBatch bounds the number of operations between two looks at the clock.
const maxBatch = 1 << 14

// Loop calls op until the phase is over and returns how many calls completed
// and the time they took. It reads the clock only between batches of calls,
// whose size grows until a batch lasts about 100 µs, so that reading the
// clock adds nothing measurable to sub-microsecond operations. It stops at
// the first error of op, and when ctx is done.
func (p Phase) Loop(ctx context.Context, op func() error) (n int64, elapsed time.Duration, err error) {
	start := time.Now()
	batch := int64(1)
	for {
		if err := ctx.Err(); err != nil {
			return n, time.Since(start), err
		}
		b := batch
		if p.Count > 0 && n+b > p.Count {
			b = p.Count - n
		}
		t0 := time.Since(start)
		for i := int64(0); i < b; i++ {
			if err := op(); err != nil {
				return n + i, time.Since(start), err
			}
		}
		n += b
		now := time.Since(start)
		if p.Count > 0 {
			if n >= p.Count {
				return n, now, nil
			}
		} else if now >= p.Duration {
			return n, now, nil
		}
		if now-t0 < 100*time.Microsecond && batch < maxBatch {
			batch *= 2
		}
	}
}

// TimedLoop is Loop with every call timed on its own into h (nanoseconds, on
// the monotonic clock). The two clock reads around each call are included in
// the samples: 20 to 50 ns on this kind of machine.
func (p Phase) TimedLoop(ctx context.Context, h *Histogram, op func() error) (n int64, elapsed time.Duration, err error) {
	start := time.Now()
	for {
		if n&255 == 0 {
			if err := ctx.Err(); err != nil {
				return n, time.Since(start), err
			}
		}
		t0 := time.Since(start)
		if err := op(); err != nil {
			return n, time.Since(start), err
		}
		t1 := time.Since(start)
		h.Record(t1 - t0)
		n++
		if p.Count > 0 {
			if n >= p.Count {
				return n, t1, nil
			}
		} else if t1 >= p.Duration {
			return n, t1, nil
		}
	}
}

// Latency is the result of MeasureRTT.
type Latency struct {
	// Mean is the headline round trip in nanoseconds: the median over
	// repetitions of the bulk phase's elapsed time divided by its count.
	Mean float64
	// Reps holds each repetition's bulk mean.
	Reps []float64
	// Hist holds every individually timed round trip of all repetitions.
	Hist *Histogram
}

// rttSlices is the number of slices into which MeasureRTT cuts each phase,
// alternating bulk and timed slices so that both see the same conditions.
const rttSlices = 10

// MeasureRTT measures a round trip. rt performs one complete round trip
// (send, wait for the answer); it must bound its own waits. MeasureRTT warms
// up for Config.Warmup, then for each of Config.Reps repetitions runs a bulk
// phase (timed as a whole: the mean) and a timed phase (every round trip
// timed: the percentiles), each of Config.Duration (or Config.Iterations
// round trips). The two phases are cut into slices that alternate, so that a
// burst of load from elsewhere on the machine hits both alike. Call it
// between Env.LockThread and its unlock when the round trip spins or pins.
func (e *Env) MeasureRTT(ctx context.Context, rt func() error) (Latency, error) {
	l := Latency{Hist: NewHistogram()}
	if _, _, err := e.WarmupPhase().Loop(ctx, rt); err != nil {
		return l, fmt.Errorf("warm-up: %w", err)
	}
	for range e.Reps {
		if err := e.MeasureRTTRep(ctx, rt, &l); err != nil {
			return l, err
		}
	}
	l.Mean = median(l.Reps)
	return l, nil
}

// MeasureRTTRep adds one repetition of MeasureRTT's measurement of rt to
// l, without a warm-up: rttSlices bulk and timed slices in turn, the bulk
// ones giving the repetition's mean.
func (e *Env) MeasureRTTRep(ctx context.Context, rt func() error, l *Latency) error {
	slice := Phase{Duration: e.Duration / rttSlices}
	if e.Iterations > 0 {
		slice = Phase{Count: max(1, int64(e.Iterations)/rttSlices)}
	}
	var n int64
	var el time.Duration
	for range rttSlices {
		sn, sel, err := slice.Loop(ctx, rt)
		if err != nil {
			return err
		}
		n, el = n+sn, el+sel
		if _, _, err := slice.TimedLoop(ctx, l.Hist, rt); err != nil {
			return err
		}
	}
	if n == 0 {
		return errors.New("bench: no round trip completed")
	}
	l.Reps = append(l.Reps, float64(el.Nanoseconds())/float64(n))
	return nil
}

// LatencyRow returns the row of a round-trip latency in ns. When the mean is
// far above the median, the note says so: the process was stalled (by
// preemption, usually) for a noticeable part of the run, and the p50 is the
// better guide to the mechanism's cost.
func (e *Env) LatencyRow(metric string, l Latency, compareTo string) Row {
	r := Row{Metric: metric, Value: l.Mean, Unit: "ns", Hist: l.Hist.Summary(),
		CompareTo: compareTo, Note: e.note("", len(l.Reps))}
	if r.Hist != nil && r.Hist.P50 > 0 && l.Mean > 3*r.Hist.P50 {
		r.Note = join(r.Note, fmt.Sprintf("stalls: mean %.0fx the p50", l.Mean/r.Hist.P50))
	}
	return r
}

// Rate is the result of MeasureRate.
type Rate struct {
	// PerSec is the median over repetitions of operations per second.
	PerSec float64
	// Reps holds each repetition's rate.
	Reps []float64
}

// MeasureRate measures a throughput. run transfers as many messages (or
// operations) as the phase allows, typically with Phase.Loop on the sending
// side, and returns how many were delivered and the elapsed time from the
// first send to the consumer's confirmation that it got the last one. run is
// called once with the warm-up phase, then once per repetition.
func (e *Env) MeasureRate(ctx context.Context, run func(ctx context.Context, p Phase) (n int64, elapsed time.Duration, err error)) (Rate, error) {
	var r Rate
	if _, _, err := run(ctx, e.WarmupPhase()); err != nil {
		return r, fmt.Errorf("warm-up: %w", err)
	}
	for range e.Reps {
		n, el, err := run(ctx, e.Phase())
		if err != nil {
			return r, err
		}
		if n == 0 || el <= 0 {
			return r, errors.New("bench: no message delivered")
		}
		r.Reps = append(r.Reps, float64(n)/el.Seconds())
	}
	r.PerSec = median(r.Reps)
	return r, nil
}

// RateRow returns the row of a rate in unit ("msgs/s", "ops/s").
func (e *Env) RateRow(metric, unit string, r Rate, compareTo string) Row {
	return Row{Metric: metric, Value: r.PerSec, Unit: unit, CompareTo: compareTo, Note: e.note("", len(r.Reps))}
}

// median returns the median of v (the mean of the middle two for an even
// count), 0 for none.
func median(v []float64) float64 {
	if len(v) == 0 {
		return 0
	}
	s := slices.Clone(v)
	slices.Sort(s)
	m := len(s) / 2
	if len(s)%2 == 1 {
		return s[m]
	}
	return (s[m-1] + s[m]) / 2
}
