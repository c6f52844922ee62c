package exchange

import (
	"context"
	"runtime/debug"
)

// BatchReceiver is implemented by mailboxes that can receive several
// messages in one call ([SHM]'s): a receiver that routes what arrives (a
// client taking the responses of many calls in flight) pays the receive's
// fixed cost, and its own bookkeeping, once per batch rather than per
// message.
type BatchReceiver interface {
	// RecvBatch waits for the next message as Recv does and decodes it
	// into ms[0], then decodes into ms[1], ms[2], ... the messages that
	// are already there, up to len(ms), without waiting for more. It
	// returns how many of ms it filled, n >= 1, and a nil error; or, as
	// Recv would, an error: with n == 0 when nothing was received, and
	// with n >= 1 when ms[n-1] could not be decoded (it ends the batch,
	// and the error is the one Recv would have returned for it). len(ms)
	// must be at least 1.
	RecvBatch(ctx context.Context, ms []*Message) (int, error)
}

// RecvBatch implements [BatchReceiver]: Recv, then the messages already
// in the ring, in one batch of the ring that stops at a message that does
// not decode (so that nothing behind it is consumed unseen), under one
// lock and one fault guard.
func (mb *shmMailbox) RecvBatch(ctx context.Context, ms []*Message) (n int, err error) {
	if len(ms) == 0 {
		return 0, ErrInvalidArgument
	}
	var derr error
	mb.mu.Lock()
	defer func() {
		// A fault after the first message (the ring truncated under the
		// batch) leaves ms[:n] whole and consumed: they are returned,
		// and the next call reports the mailbox closed (the fault
		// quarantined it). An error with n >= 1 says that ms[n-1] did
		// not decode, which is not so.
		if n > 0 && derr == nil {
			err = nil
		}
	}()
	defer mb.exit(&err, debug.SetPanicOnFault(true)) // unlocks mu; see shm_fault.go
	if mb.closed.Load() {
		return 0, ErrMailboxClosed
	}
	got, rerr := mb.recvLocked(ctx, ms[0])
	if !got {
		return 0, rerr
	}
	derr = rerr
	n = 1
	if n < len(ms) && derr == nil {
		// The rest in one batch of the ring: fn decodes into ms[n] and
		// stops it when ms is full or a message does not decode.
		// An error says the ring is corrupt: the next RecvBatch says so.
		mb.c.ReadWhile(func(typ int32, p []byte) bool {
			if mb.answerIfTerminated(ctx, typ, p) {
				return true
			}
			derr = ms[n].Decode(p)
			n++
			return derr == nil && n < len(ms)
		}, 0)
	}
	return n, derr
}

var _ BatchReceiver = (*shmMailbox)(nil)
