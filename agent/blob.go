package agent

import (
	"context"
	"reflect"

	"github.com/shmex/shmex/exchange"
	"github.com/shmex/shmex/proxystore"
)

// Large payloads. Over a proxy-store wrapper (proxystore.Wrap), an action's
// arguments or result may arrive as a proxy: a whole payload proxied by the
// sender's wrapper (a []byte, a large struct), or a proxystore.Blob, alone
// or inside a struct. The agent layer reads them in place:
//
//   - runtimes and clients receive with the wrapper's ManualMailbox, so that
//     the wrapper never copies a proxied payload into the message;
//   - decodePayload resolves a proxied payload with the store of this
//     process that shares its id (proxystore.ResolvePayload), decodes the
//     value from the view, and releases the view: a []byte costs the one
//     copy its decoder makes, nothing more;
//   - a Blob decodes (its own UnmarshalMsg) into a view of the sender's
//     payload, without a copy; the Blobs of an action's arguments are
//     released when the action returns (releaseFor), unless the action
//     retained them.
//
// The hooks into the rest of the package are one call each: openMailbox in
// NewRuntime and NewClient; releaseArgs and decodePayload in
// AddActionCodec; decodePayload in Future.result; resolveRawArgs in
// AddRawAction.

// manualMailboxer is the wrapper's ManualMailbox.
type manualMailboxer interface {
	ManualMailbox(ctx context.Context, id exchange.EntityID, opts ...exchange.MailboxOption) (exchange.Mailbox, error)
}

// openMailbox opens a client of the mailbox of id for a runtime or a
// client with the options o (WithIdle): on a proxy-store wrapper, one that
// leaves proxies in place for decodePayload.
func openMailbox(ctx context.Context, x exchange.Exchange, id exchange.EntityID, o *options) (exchange.Mailbox, error) {
	var mopts []exchange.MailboxOption
	if o.idle != nil {
		mopts = append(mopts, exchange.WithMailboxIdle(*o.idle))
	}
	if m, ok := x.(manualMailboxer); ok {
		return m.ManualMailbox(ctx, id, mopts...)
	}
	return x.Mailbox(ctx, id, mopts...)
}

// decodePayload decodes the arguments or result b into v with c, reading a
// payload that is one proxy in place:
//   - a codec that decodes proxies itself (proxystore.ProxyDecoder, such as
//     proxystore.PayloadCodec) and a Blob get the proxy as it came;
//   - a proxied value is resolved, decoded from the view, and the view
//     released (c must not keep the bytes it decodes from, as every Codec);
//   - a Blob's proxy (bytes) decodes into a []byte with the default codec
//     (one copy), so that a caller may send a Blob to an action that takes
//     []byte.
//
// Decoding errors that come from a proxy where the type expects something
// else say so. A failed decode releases the Blobs it resolved before it
// failed.
// blobsIn reports whether values of type T can hold Blobs (cached by type).
func blobsIn[T any]() bool { return proxystore.HasBlobs(reflect.TypeFor[T]()) }

// codecBlobs is blobsIn for values decoded with c, without a look-up per
// call where the codec tells: a basic type holds no Blob, and a msgp
// type's codec knows from when it was made.
func codecBlobs[T any](c Codec[T]) bool {
	switch cc := c.(type) {
	case basicCodec[T]:
		return false
	case *msgpCodec[T]:
		return cc.blobs
	}
	return blobsIn[T]()
}

// decodeArg decodes the arguments (or a result) b with c. The common case,
// a value on the ring with no Blob in its type, takes decodeValue's path,
// which allocates nothing; a proxied payload, or a type holding Blobs
// (released again if the decode fails), takes decodePayload's.
func decodeArg[T any](c Codec[T], b []byte, blobs bool) (T, error) {
	if blobs || proxystore.IsPayload(b) {
		var v T
		err := decodePayload(c, b, &v)
		return v, err
	}
	v, err := decodeValue(c, b)
	if err != nil {
		err = proxystore.ExplainDecodeError(err)
	}
	return v, err
}

func decodePayload[T any](c Codec[T], b []byte, v *T) error {
	err := decodeProxied(c, b, v)
	if err != nil && proxystore.HasBlobs(reflect.TypeFor[T]()) {
		proxystore.ReleaseBlobs(v)
	}
	return err
}

func decodeProxied[T any](c Codec[T], b []byte, v *T) error {
	if !proxystore.IsPayload(b) {
		return proxystore.ExplainDecodeError(c.Decode(b, v))
	}
	if _, ok := c.(proxystore.ProxyDecoder); ok {
		return c.Decode(b, v)
	}
	if _, ok := any(v).(*proxystore.Blob); ok {
		return c.Decode(b, v)
	}
	_, f, err := proxystore.ParseProxy(b)
	if err != nil {
		return err
	}
	if f == proxystore.FormBytes {
		p, isBytes := any(v).(*[]byte)
		if _, basic := c.(basicCodec[T]); !isBytes || !basic {
			return proxystore.ExplainDecodeError(c.Decode(b, v))
		}
		var bl proxystore.Blob
		if _, err := bl.UnmarshalMsg(b); err != nil {
			return err
		}
		*p = append((*p)[:0], bl.Bytes()...)
		return bl.Release()
	}
	view, _, err := proxystore.ResolvePayload(context.Background(), b)
	if err != nil {
		return err
	}
	err = proxystore.ExplainDecodeError(c.Decode(view.Bytes(), v))
	if rerr := view.Release(); err == nil {
		err = rerr
	}
	return err
}

// releaseArgs returns what an action's handler defers to release the Blobs
// of its decoded arguments once the action is done (and its result
// encoded), also after a failed decode, which may have resolved some. For
// a type that cannot hold a Blob it does nothing: decided once, when the
// action is added.
func releaseArgs[T any]() func(*T) {
	if !proxystore.HasBlobs(reflect.TypeFor[T]()) {
		return func(*T) {}
	}
	return func(v *T) { proxystore.ReleaseBlobs(v) }
}

// resolveRawArgs wraps a raw action: arguments that are one proxied value
// are resolved, and fn gets the value's bytes in place (valid until it
// returns, as raw arguments always are). A Blob's proxy is passed as it
// came.
func resolveRawArgs(fn func(ctx context.Context, args []byte, out []byte) ([]byte, error)) handler {
	return func(ctx context.Context, args []byte, out []byte) ([]byte, error) {
		if !proxystore.IsPayload(args) {
			return fn(ctx, args, out)
		}
		if _, f, err := proxystore.ParseProxy(args); err != nil || f != proxystore.FormValue {
			return fn(ctx, args, out)
		}
		view, _, err := proxystore.ResolvePayload(context.Background(), args)
		if err != nil {
			return out, &exchange.RemoteError{Kind: ErrorKindBadArguments, Message: err.Error()}
		}
		defer view.Release()
		return fn(ctx, view.Bytes(), out)
	}
}
