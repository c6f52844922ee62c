// Package shm provides the shared-memory primitives that shmex is built on:
// segments (files mapped into several processes), futex waits on words inside
// them, and liveness locks that tell whether the process behind a structure is
// still alive.
//
// # Segments
//
// A segment is a file under a per-user directory (by default
// /dev/shm/shmex-<uid>/<exchange>/) that every participating process maps
// with mmap. The directory is created 0700 and the files 0600. A segment is
// created under a temporary name with O_CREAT|O_EXCL|O_NOFOLLOW, its pages are
// reserved with fallocate (so a full /dev/shm is ENOSPC at create time and
// never a SIGBUS later), its header and body are initialized, and only then is
// it published under its final name with an atomic, non-replacing rename.
// Another process therefore never sees a half-initialized segment.
//
// Every segment starts with a [HeaderSize]-byte header (see descriptor.go):
// magic, layout version, kind, total size, creator and a CRC-32C checksum.
// [Open] validates all of it and fails with a distinct sentinel error for each
// problem ([ErrBadMagic], [ErrVersion], [ErrWrongKind], [ErrTruncated],
// [ErrChecksum], [ErrNotOwner]).
//
// # Opening files
//
// Every open of a path in an exchange directory goes through [OpenFile]
// (Open, Alive and HoldLife use it, as do the packages above): it never
// follows a symbolic link and never blocks (O_NONBLOCK), and it checks with
// fstat what it opened. A FIFO, a socket, a device or a link found where a
// segment, a lock file or the directory itself should be is refused with
// [ErrNotRegular], naming the path, so that no call of an exchange can hang
// in open(2) on a file a process of the same user left there. [ReadDir]
// lists a directory the same way.
//
// # Lifetime of mapped memory
//
// [Segment.Body] and [Segment.Bytes] return slices that alias the mapping.
// They are valid until [Segment.Close]; touching them afterwards faults. A
// segment that is removed (unlinked) while mapped stays valid for every
// process that maps it: removal only stops new processes from opening it.
// Truncating a mapped file, which only the owning user can do, would turn
// accesses past the new end into SIGBUS; shmex never truncates.
//
// # Futex
//
// [Wait] and [Wake] are the raw FUTEX_WAIT and FUTEX_WAKE system calls on a
// 32-bit word, without FUTEX_PRIVATE_FLAG, so that they work across processes
// that map the same file. [Doorbell] builds on them: a sequence word that
// waiters sleep on and ringers bump, with context cancellation.
//
// # Liveness
//
// [HoldLife] takes an exclusive flock on a small lock file for the life of the
// process; [Alive] tests it with a non-blocking lock attempt. The kernel drops
// the lock when the process dies, however it dies, so the test is right after
// SIGKILL and immune to pid reuse.
//
// # Systems
//
// Shared memory needs Linux: futex waits across processes, fallocate,
// renameat2 and madvise's populate advice have no equivalent elsewhere that
// shmex uses. The package builds on macOS and other Unix systems, so that
// programs using only the in-process exchange build there too, but
// [EnsureDir], [Create], [Open], [HoldLife], [Wait] and [Wake] return
// [ErrUnsupported] (which matches errors.ErrUnsupported); [Supported] says
// beforehand.
//
// # Spinning
//
// A process that polls a word another process writes puts [SpinPause]
// between two polls: without it, on the x86 machines measured, the poller's
// loads keep taking the cache line back while the writer waits to own it,
// which made a ping-pong of one word twice as slow. [StoreRelease]
// publishes a word without the full fence of sync/atomic's Store (an XCHG
// on amd64), for stores that need no StoreLoad ordering (see the claim
// protocol of package ring for where that holds). [Populate] makes a
// mapping ready before its first use: on the virtual machines measured, the
// first access to each page of a new mapping costs microseconds.
package shm
