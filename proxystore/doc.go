// Package proxystore moves payloads of any size between the processes of an
// exchange without copying them: a payload lives in a [Store] and a
// [Proxy], a few dozen bytes, travels in its place.
//
// # Blobs
//
// [Blob] is the payload type for action arguments and results: a sender
// lends room in its arena and fills it ([AllocBlob], no copy) or copies
// bytes in ([NewBlob], one copy); the Blob travels as a proxy (a 59-byte
// MessagePack extension, proxy_layout.go and docs/wire.md), alone or as a
// field of a msgp struct; the receiver decodes it into a read-only view of
// the sender's bytes, resolved with the store of its own process that has
// the proxy's store id ([StoreFor]). The agent package releases the Blobs of
// an action's arguments when the action returns; [Blob.Retain] keeps one
// longer. No resolve mode to choose and no codec to register: a Blob's
// methods are msgp's.
//
// Two stores implement the [Store] contract: the arena store ([Arena],
// shared-memory arenas of one exchange directory, zero copies between the
// processes of a node) and the file store ([FileStore], files under a
// directory, for payloads that must outlive the processes or do not fit
// the arenas).
//
// # The arena store
//
// Every process opens its own [Arena] on the exchange directory with
// [OpenArena]; all of them share one [StoreID], kept in a small descriptor
// segment (arena-store) created by the first. A process owns the arena
// segments it creates and allocates from them alone, with no lock shared
// with any other process: size classes (1 KiB to 32 KiB, in 64 KiB slabs)
// for small payloads, runs of 64 KiB chunks for large ones, and a segment
// of its own for a payload larger than a regular segment
// ([WithSegmentSize]). The arena grows by adding segments up to
// [WithMaxBytes] and [WithMaxSegments]; past them, and when /dev/shm is
// full (segments are reserved with fallocate at creation, never a SIGBUS
// later), Put and Alloc fail with [ErrStoreFull].
//
// [Arena.Alloc] lends a writable slice inside the arena: the producer fills
// it in place and [Loan.Commit] turns it into a proxy, so the payload is
// never copied. [Arena.Put] copies a payload in (one memmove). A proxy
// names the segment, the offset and length of the block, and its
// generation: every reuse of a block takes a generation never used before
// in its segment, so a proxy whose payload is gone fails with
// [ErrStaleProxy] and never resolves to someone else's bytes.
//
// [Arena.Resolve] checks the proxy (store id, kind, bounds, generation,
// lifetime, the owner being alive) and returns a [View] whose slice aliases
// the owner's arena: no byte is read or copied. Each arena segment is two
// files: the data pages, which readers map read-only (writing to a view
// faults), and a small meta segment with the blocks' descriptors
// (reference count, state and generation in one atomic word) and the
// readers' hold slots, which every process maps read-write. The layout is
// in arena_layout.go, the reference protocol and its invariants in
// arena_hold.go.
//
// # How long a view stays valid
//
// A view's slice is valid until its [View.Release], whatever happens to the
// payload meanwhile: a freed, evicted or expired block is not reused while
// a reference to it remains, and a segment whose owner died or closed stays
// mapped in the reader until its last view is released. [Arena.Close]
// unmaps everything: the views and loans of a closed Arena must not be
// touched (their Release, Commit and Abort return [ErrClosed]). A loan's
// slice is valid until Commit or Abort, and must not be written after
// Commit.
//
// # Lifetimes
//
//   - Owned (the default): until [Arena.Free] by the process that made it
//     (another process gets [ErrNotOwner]) or the owner's Close.
//   - SingleUse ([WithSingleUse]): evicted when the first view taken on it
//     is released; later resolves fail with [ErrStaleProxy].
//   - Leased ([WithLease]): resolves after the deadline fail with
//     [ErrExpired]; views taken before it stay valid.
//
// In every case the block is reclaimed by its owner only once no reference
// remains. Reclaiming is lazy: the owner scans its released blocks when it
// needs room and in a background pass ([WithReapInterval]).
//
// # Process death
//
// A reader that dies holding views leaks nothing: each reader records what
// it holds in hold slots of the segment, tagged with its liveness id
// (shm.HoldLife), and the owner's background pass drops the references of
// readers whose liveness lock is gone (single-use blocks they held count as
// used). The references a dead reader held to a live Owned or Leased block
// are dropped once that block is freed or its lease expires (before, they
// cannot be told from a live reader's without a race), so until then the
// dead reader's hold slot stays taken. A reader holds at most 31 views per hold slot and claims slots as
// it needs them; when every slot of a segment is taken by live readers,
// Resolve fails with [ErrTooManyViews] ([WithHoldSlots]).
//
// When an owner dies (even by SIGKILL), its arena segments are unlinked by
// the first store that notices (a resolve, a background pass, the next
// OpenArena) or by [Collect], which `shmex gc` calls. Readers that mapped a
// segment keep valid views of it; every later resolve of its proxies fails
// with [ErrOwnerDead] (a reader looks at an owner's liveness lock at most
// every 10 ms, so resolves in the hot path make no system call: within
// that interval of the death, committed payloads still resolve). An owner
// that closes its Arena retires its segments the same way, noticed at
// once.
//
// # The file store
//
// [OpenFileStore] opens a directory as a [FileStore]: one file per payload,
// written aside and renamed into place without replacing (whole or absent,
// whatever kills the writer). An 80-byte header (magic, version, codec,
// lifetime, store id, segment, generation, lengths, lease deadline,
// checksums of the data and of the header; see filestore_layout.go) is
// checked at every resolve: a tampered or truncated file is [ErrCorrupt].
// Uncompressed payloads of 64 KiB or more resolve to a read-only mapping;
// compressed ones ([WithCompression]: zstd or S2, from
// github.com/klauspost/compress) decompress into a buffer bounded by
// [WithFileMaxPayload]. Single-use files go at the first release, leased
// ones after their deadline (or by [FileStore.Sweep]), owned ones by
// [FileStore.Free]. Views outlive Close until released. Another process
// that truncates a file while a view maps it can make the reader fault:
// the file store trusts the processes of its user not to.
//
// # The exchange wrapper
//
// [Wrap] is Academy's ProxyStoreExchange: Send replaces the ActionRequest
// arguments and ActionResponse results that the policy selects
// ([WithThreshold], default 64 KiB, or [WithShouldProxy]) with a proxy,
// single use by default, and leaves payloads that already are proxies
// (Blobs included) alone. Whatever the policy, a payload too large to
// travel inline (over exchange.MaxPayloadSize, or refused by the wrapped
// exchange's mailbox) is proxied too: a wrapper carries any size its store
// holds ([WithMaxPayload] bounds it). Mailboxes resolve on Recv: by copy
// ([ResolveCopy], the default: the Message behaves as with any exchange),
// without a copy ([ResolveZeroCopy]: the field is read-only and valid
// until the next Recv on that Mailbox or its Close), or not at all
// ([ResolveManual]: the caller resolves with [Exchange.Resolve] when it
// wants the bytes). [WithResolveAsync] resolves one message ahead
// (Academy's resolve_async). A failed resolve returns the message with a
// [*ResolveError]. The agent package receives with [Exchange.ManualMailbox]
// and resolves as it decodes ([ResolvePayload]), reading payloads in
// place: the resolve mode applies to mailboxes used directly. Requests
// still queued in a mailbox when it is terminated
// are answered by the wrapped exchange without being resolved: their
// single-use payloads stay until their owner frees them or closes its
// store.
//
// # Bad input
//
// Proxies come from other processes and are never trusted: a forged or
// stale proxy (out-of-range offset or length, a misaligned offset, a wrong
// generation, an unknown, dead or foreign segment) is an error
// ([ErrBadProxy], [ErrStaleProxy], [ErrOwnerDead], [ErrForeignProxy]),
// never a read outside a mapping. An arena file whose headers were tampered
// with is refused with [ErrBadArena]. All sizes used to address a mapping
// come from headers validated once, at attach, and kept in process memory.
//
// # Caveats
//
// A payload takes at least one 1 KiB granule; payloads between 32 KiB and a
// segment's size take whole 64 KiB chunks. The meta segment is writable by
// every process of the (single-user) exchange: a process that scribbles on
// it can make blocks leak or resolve as stale, but cannot make another
// process read outside its mappings.
package proxystore
