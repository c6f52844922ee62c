package shm

// Spin-waiting on shared memory. A process that polls a word another
// process writes should put SpinPause between two polls: without it, on
// the x86 machines measured here, the poller's loads keep taking the cache
// line back while the writer waits to own it, which made a bare
// ping-pong of one word twice as slow. StoreRelease publishes a word
// without the full fence of sync/atomic's Store (an XCHG on amd64), for
// the stores that need no StoreLoad ordering; see ring's claim protocol
// for where that holds.
