//go:build linux

package bench

import (
	"time"

	"github.com/HdrHistogram/hdrhistogram-go"
)

// Summary is the distribution of a latency row: how many samples were timed
// one by one, and their percentiles, in the row's unit.
type Summary struct {
	Count int64   `json:"count"` // samples timed one by one
	Mean  float64 `json:"mean"`  // their mean (clock reads included)
	P50   float64 `json:"p50"`   // median
	P99   float64 `json:"p99"`   // 99th percentile
	P999  float64 `json:"p999"`  // 99.9th percentile
	Max   float64 `json:"max"`   // largest sample
}

// Histogram limits: 1 ns to 1 minute with three significant digits (a
// recorded value is within 0.1% of the true one).
const (
	histLowest  = 1
	histHighest = int64(time.Minute)
	histDigits  = 3
)

// Histogram records durations in nanoseconds in an HDR histogram. It is not
// safe for concurrent use.
type Histogram struct {
	h *hdrhistogram.Histogram
}

// NewHistogram returns an empty histogram for latencies from 1 ns to 1 min.
func NewHistogram() *Histogram {
	return &Histogram{h: hdrhistogram.New(histLowest, histHighest, histDigits)}
}

// Record adds one sample; values outside the trackable range are clamped.
func (h *Histogram) Record(d time.Duration) {
	v := int64(d)
	if v < histLowest {
		v = histLowest
	} else if v > histHighest {
		v = histHighest
	}
	h.h.RecordValue(v) // cannot fail within the range
}

// Count returns the number of samples.
func (h *Histogram) Count() int64 { return h.h.TotalCount() }

// Summary returns the percentiles in nanoseconds, or nil when empty.
func (h *Histogram) Summary() *Summary {
	if h == nil || h.h.TotalCount() == 0 {
		return nil
	}
	return &Summary{
		Count: h.h.TotalCount(),
		Mean:  h.h.Mean(),
		P50:   float64(h.h.ValueAtPercentile(50)),
		P99:   float64(h.h.ValueAtPercentile(99)),
		P999:  float64(h.h.ValueAtPercentile(99.9)),
		Max:   float64(h.h.Max()),
	}
}
