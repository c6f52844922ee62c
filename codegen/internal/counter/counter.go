// Package counter is the interface the codegen tests generate for: a
// counter agent whose handle reads like a local value.
package counter

import "context"

//go:generate go run github.com/shmex/shmex/codegen -type Counter

// Counter is a counter agent's actions.
type Counter interface {
	// Add adds by and returns the new count.
	Add(ctx context.Context, by int) (int, error)
	// Count returns the count.
	Count(ctx context.Context) (int, error)
	// Reset sets the count to zero.
	Reset(ctx context.Context) error
	// Set sets the count.
	Set(ctx context.Context, n int) error
	// Name returns the counter's name.
	Name(context.Context) (string, error)
	// Echo returns its argument.
	Echo(_ context.Context, b []byte) ([]byte, error)
}
