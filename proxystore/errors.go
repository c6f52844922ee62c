package proxystore

import (
	"errors"
	"fmt"

	"github.com/tinylib/msgp/msgp"
)

// Sentinel errors. Methods return them wrapped with detail; test with
// [errors.Is].
var (
	// ErrBadProxy reports a proxy that cannot be valid: malformed bytes,
	// an unknown kind, an offset or length outside its segment.
	ErrBadProxy = errors.New("proxystore: bad proxy")

	// ErrForeignProxy reports a proxy made by another store (another
	// exchange's arenas, another file store).
	ErrForeignProxy = errors.New("proxystore: proxy from another store")

	// ErrStaleProxy reports a proxy whose payload is gone: freed, evicted
	// after single use, or its block reused (generation mismatch).
	ErrStaleProxy = errors.New("proxystore: stale proxy")

	// ErrExpired reports a resolve of a leased payload after its deadline.
	ErrExpired = errors.New("proxystore: lease expired")

	// ErrOwnerDead reports a proxy into an arena whose owning process has
	// died: the arena is gone (or going) and cannot be resolved anymore.
	ErrOwnerDead = errors.New("proxystore: arena owner is dead")

	// ErrNotOwner reports a Free of a payload by a process other than its
	// maker.
	ErrNotOwner = errors.New("proxystore: not the owner")

	// ErrStoreFull reports that the store cannot hold a payload: its arenas
	// reached their configured limit (or the file system is full).
	ErrStoreFull = errors.New("proxystore: store full")

	// ErrReleased reports a second Release of a view, or a Commit or Abort
	// of a loan already committed or aborted.
	ErrReleased = errors.New("proxystore: already released")

	// ErrClosed reports a call on a closed store.
	ErrClosed = errors.New("proxystore: store closed")
)

// notAProxy is the error for a value where a proxy was expected: the
// sender sent the value itself. It says how to make the sender send a
// proxy, and how to take either.
func notAProxy(b []byte) error {
	what := "no bytes"
	if len(b) > 0 {
		what = fmt.Sprintf("a plain MessagePack %v (type byte %#x, %d bytes)", msgp.NextType(b), b[0], len(b))
	}
	return fmt.Errorf("%w: expected a proxy, got %s: the sender did not proxy the value. "+
		"Make it send one (its exchange a proxystore.Wrap whose policy proxies the value, see WithThreshold; "+
		"or a proxystore.Blob, or a Proxy made with AllocBytes or Put), "+
		"or declare this side's type as proxystore.Blob, which takes a proxy and a plain value alike", ErrBadProxy, what)
}
