package exchange

import (
	"fmt"

	"github.com/shmex/shmex/ring"
)

// IdleStrategy says how a receiver waits when its mailbox is empty: it
// polls a while, may give up its CPU a while, then sleeps until a sender
// wakes it. It is the ring package's [ring.IdleStrategy], named here so
// that programs choose one without importing ring: a small comparable
// value, printed by String ("spin", "park", "spinpark:N", "backoff:N:M")
// and read back by [ParseIdleStrategy], for flags and environment
// variables.
//
// It applies to the shared-memory exchange ([SHM]): per handle
// ([WithIdle]) and per mailbox client ([WithMailboxIdle]). [Local]'s
// receivers wait on channels and ignore it.
type IdleStrategy = ring.IdleStrategy

// Idle strategies.
var (
	// IdleBackoff spins, then yields the CPU, then sleeps, and learns
	// where the sender runs: a receiver whose sender runs on another CPU
	// spins (the lowest latency short of IdleSpin), one that shares its
	// CPU with the sender yields at once, so that a round trip between
	// two processes on one CPU costs a pair of context switches instead
	// of two spin budgets. The default ([DefaultIdle]); see
	// [ring.Backoff].
	IdleBackoff = ring.Backoff
	// IdleSpin polls until a message comes: the lowest latency when the
	// sender runs on another CPU, one core busy for as long as the
	// receiver waits, and slow when the two share a CPU.
	IdleSpin = ring.Spin
	// IdlePark sleeps at once: no CPU while idle, a system call per
	// wake-up.
	IdlePark = ring.Park
)

// DefaultIdle is the idle strategy of a receiver for which none is set:
// IdleBackoff.
var DefaultIdle = IdleBackoff

// IdleSpinThenPark polls n times, then sleeps; it never yields.
func IdleSpinThenPark(n int) IdleStrategy { return ring.SpinThenPark(n) }

// ParseIdleStrategy reads an idle strategy in the form its String
// method writes: "spin", "park", "backoff" (IdleBackoff),
// "backoff:N:M" (N spins at most, M yields), "spinpark:N" (N spins), each
// optionally followed by ",noburstbackoff" (accepted for ring's batch
// receivers; a mailbox receives one message at a time, which that flag
// does not change). A bad text is
// [ErrInvalidArgument] (wrapping [ring.ErrBadIdleStrategy]).
func ParseIdleStrategy(text string) (IdleStrategy, error) {
	s, err := ring.ParseIdleStrategy(text)
	if err != nil {
		return IdleStrategy{}, fmt.Errorf("%w: %w", ErrInvalidArgument, err)
	}
	return s, nil
}

// MailboxOption configures [Exchange.Mailbox].
type MailboxOption func(*MailboxOptions)

// MailboxOptions holds the settings that MailboxOption functions make; an
// implementation of [Exchange] reads them with [ApplyMailboxOptions].
type MailboxOptions struct {
	// Idle is how the client's Recv waits for messages, or nil for the
	// handle's strategy ([WithIdle], default [DefaultIdle]).
	Idle *IdleStrategy
}

// WithMailboxIdle sets how the Recv of this mailbox client waits for
// messages, overriding the handle's strategy ([WithIdle]); implementations
// whose receivers do not poll ([Local]) ignore it.
func WithMailboxIdle(s IdleStrategy) MailboxOption {
	return func(o *MailboxOptions) { o.Idle = &s }
}

// ApplyMailboxOptions applies opts in order (nil ones are skipped) to zero
// MailboxOptions and returns them.
func ApplyMailboxOptions(opts []MailboxOption) MailboxOptions {
	var o MailboxOptions
	for _, opt := range opts {
		if opt != nil {
			opt(&o)
		}
	}
	return o
}
