//go:build linux

package bench

import (
	"errors"

	"github.com/HdrHistogram/hdrhistogram-go"
)

// encode returns the histogram in HDR's V2 compressed form, base64, for a
// child to send its measurement to the parent on one line.
func (h *Histogram) encode() (string, error) {
	b, err := h.h.Encode(hdrhistogram.V2CompressedEncodingCookieBase)
	return string(b), err
}

// decodeHistogram reads what encode wrote. A histogram of another range
// than NewHistogram's is rejected: merging it would misplace its samples.
func decodeHistogram(s string) (*Histogram, error) {
	d, err := hdrhistogram.Decode([]byte(s))
	if err != nil {
		return nil, err
	}
	if d.LowestTrackableValue() != histLowest || d.HighestTrackableValue() != histHighest || d.SignificantFigures() != histDigits {
		return nil, errors.New("bench: histogram of another range")
	}
	return &Histogram{h: d}, nil
}
