// Package ring is a lock-free many-to-one ring of variable-length records in a
// byte region that several processes map: the mailbox of shmex.
//
// The design follows Agrona's ManyToOneRingBuffer. Producers claim space by
// CAS on a 64-bit tail, write the record header with a negative length, write
// the payload in place ([Producer.Claim], [Claim.Bytes]) and commit by storing
// the positive length. A record that does not fit before the end of the data
// area is preceded by a padding record. The single [Consumer] reads committed
// records in batches ([Consumer.Read]), records how far it read (the
// consumed word, where a successor starts), and zeroes what it consumed and
// advances the head when it is idle (or holds back a quarter of the ring,
// or a producer waits for space): zeroing takes each line back from the
// producer's core, and done at once it would delay the consumer's own next
// send. The layout is in descriptor.go; the invariants are written next to
// the code that keeps them (producer.go, consumer.go, recover.go).
//
// # Waiting
//
// [Consumer.Receive] waits for records as its [IdleStrategy] says: it polls
// the ring a number of times (spins), then, for a strategy with yields,
// polls with a yield of the CPU between two polls, then sleeps on a futex
// doorbell in the ring header after raising a waiter flag; a producer that
// commits makes a system call only when that flag is raised. A sleep lasts
// [ParkRecheck] (100 ms) at most, after which the consumer looks at the
// ring and sleeps again: a producer killed between clearing the flag and
// ringing delays a record by that much, instead of wedging the ring. A producer
// that finds the ring full sleeps on a second doorbell until the consumer
// frees space or its context is done, and then fails with [ErrFull]: a
// record is never dropped silently.
//
// Strategies: [Spin] (never sleeps), [Park] (sleeps at once),
// [SpinThenPark] (spins, then sleeps) and [Backoff] / [SpinYieldPark]
// (spins, yields, then sleeps). Spinning pays only when the producer runs
// on another CPU: when both share one (an oversubscribed node, a container
// with one CPU, taskset), the producer cannot run while the consumer spins,
// and a spinning round trip costs two whole spin budgets or scheduler time
// slices (about 350 µs measured, against 7 to 14 µs for a futex ping-pong
// on that CPU). Backoff learns the placement from its yields: a yield that
// let another thread run on this CPU and was followed by the record means
// the producer shares the CPU, and the consumer then yields at once
// instead of spinning (a round trip costs a pair of context switches, less
// than a futex ping-pong); yields that ran nobody mean another CPU, and
// the spin budget grows back. Nothing is shared between processes for it:
// each consumer keeps its own budget, and the durations it compares with
// are calibrated once per process (idle.go).
//
// Caveats: a yield may run some other busy thread rather than the
// producer; on a busy machine Backoff then yields rather than spins, which
// is the polite thing there. A runtime.Gosched lets goroutines of the
// consumer's own process run on its P; with more than one P, Receive calls
// it only when the runtime counts goroutines waiting for a P, because a
// Gosched with a P idle wakes a thread of the runtime to look for work on
// another CPU (often the peer's), which cost a pipelined client up to
// 400 ns per action. A goroutine locked to its OS thread pays a hand-off
// of the thread for each runtime.Gosched (15 to 25 µs), so Receive calls
// it rarely there. IdleStrategy is a small comparable value:
// String and [ParseIdleStrategy] turn it into text and back, for options
// and environment variables.
//
// # Crashed producers
//
// Each producer owns a slot in the ring header where it publishes its claim
// intent (position and length) before the CAS, and the record header names
// the slot while the record is claimed. A record that stays uncommitted is
// thus always attributable to a producer; when [Options.Alive] says that
// producer's process is dead, the consumer turns the record into padding and
// counts it ([Stats]). Nothing committed is lost and nothing torn is
// delivered. When the owner cannot be known (no Alive function), the record is
// padded after [Options.UnknownOwnerTimeout].
//
// # Counters
//
// A ring counts what goes through it, in its shared memory: records and
// bytes sent (per producer slot) and received, full-ring waits, futex
// sleeps and wake-ups, records of dead producers recovered. [Ring.Stats]
// reads them from any process that maps the ring; `shmex stat` shows them.
// Counting takes no lock, no system call and no atomic read-modify-write,
// and writes only lines the message's path writes anyway: 46 instructions
// of a 6146-instruction exchange round trip (+0.75%; counters.go, and the
// build tag shmex_nocounters that leaves them out).
//
// # Validity of slices
//
// The payload handed to a [Handler] aliases the ring and is valid only until
// the handler returns. The slice of a [Claim] is valid until Commit or Abort.
//
// # Bad input
//
// [Attach] validates the header (magic, version, checksum, geometry) and the
// positions. The consumer checks every record header before following it: a
// length or type that is impossible yields [ErrCorrupt], never a read outside
// the region.
package ring
