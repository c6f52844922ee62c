// Package golden is the input of codegen's golden-file test: one method of
// every shape and every kind of type the generator accepts.
package golden

import (
	stdctx "context"
	"time"
)

// Point has msgp codecs (written by hand here; `go tool msgp` writes them
// in a real package).
type Point struct{ X, Y float64 }

// MarshalMsg appends p to b.
func (p *Point) MarshalMsg(b []byte) ([]byte, error) { return b, nil }

// UnmarshalMsg reads p from b.
func (p *Point) UnmarshalMsg(b []byte) ([]byte, error) { return b, nil }

// Celsius is a named basic type.
type Celsius float64

// Stats is the interface generated for.
type Stats interface {
	// Mean returns the mean of v.
	Mean(ctx stdctx.Context, v []float64) (float64, error)
	// Histogram counts the values.
	Histogram(ctx stdctx.Context, v []int) (map[int64]int, error)
	// Centroid of the points.
	Centroid(ctx stdctx.Context, ps []Point) (*Point, error)
	// Warm sets a temperature.
	//
	//shmex:action set_temperature
	Warm(ctx stdctx.Context, c Celsius) error
	// Reset takes and returns nothing.
	Reset(stdctx.Context) error
	// Uptime takes nothing.
	Uptime(ctx stdctx.Context) (time.Duration, error)
	// Labels maps names to tags.
	Labels(ctx stdctx.Context, names map[string][]string) ([]byte, error)
}
