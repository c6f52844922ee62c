package proxystore

import (
	"context"
	"encoding/binary"
	"fmt"

	"github.com/tinylib/msgp/msgp"
)

// A proxy in a message stands for the MessagePack encoding of a value (it is
// what the wrapper puts in the store when it proxies an argument or a
// result, and what a receiving wrapper substitutes back). BytesLoan and
// BytesOf let a producer lend, and a consumer read, a []byte value in place
// under that rule: the loan starts with a MessagePack bin header, written in
// place, and the caller fills the n bytes after it.

// bytesHeader is the size of the MessagePack bin 32 header.
const bytesHeader = 5

// BytesLoan is a loan of room for a []byte value (see [AllocBytes]).
type BytesLoan struct{ l Loan }

// AllocBytes lends room in s for an n-byte []byte value encoded as
// MessagePack: a bin header written in place, then the n bytes that the
// caller fills through [BytesLoan.Bytes]. Its proxy resolves, through a
// wrapped exchange, to a []byte argument or result like any other, without
// the payload ever being copied.
func AllocBytes(ctx context.Context, s Store, n int, opts ...PutOption) (*BytesLoan, error) {
	if n < 0 || uint64(n) > 1<<32-1 {
		return nil, fmt.Errorf("proxystore: %d bytes do not fit a MessagePack bin", n)
	}
	l, err := s.Alloc(ctx, bytesHeader+n, opts...)
	if err != nil {
		return nil, err
	}
	b := l.Bytes()
	b[0] = 0xc6 // bin 32
	binary.BigEndian.PutUint32(b[1:bytesHeader], uint32(n))
	return &BytesLoan{l}, nil
}

// Bytes returns the n bytes to fill. Valid until Commit or Abort.
func (b *BytesLoan) Bytes() []byte { return b.l.Bytes()[bytesHeader:] }

// Commit publishes the value and returns its proxy.
func (b *BytesLoan) Commit() (Proxy, error) { return b.l.Commit() }

// Abort gives the room back.
func (b *BytesLoan) Abort() error { return b.l.Abort() }

// BytesOf returns the []byte value held by a resolved view, without a copy:
// the view must hold the MessagePack encoding of a []byte (a bin), as the
// proxies of [AllocBytes] and of the wrapper's proxied []byte values do.
// The slice is valid until the view's Release.
func BytesOf(v View) ([]byte, error) {
	b, rest, err := msgp.ReadBytesZC(v.Bytes())
	if err != nil {
		return nil, fmt.Errorf("%w: payload is not a MessagePack bin: %v", ErrBadProxy, err)
	}
	if len(rest) != 0 {
		return nil, fmt.Errorf("%w: %d bytes after the MessagePack bin", ErrBadProxy, len(rest))
	}
	return b, nil
}
