package ring

import (
	"sync/atomic"
	"unsafe"
)

// Counters. A ring counts, in its own shared memory, what went through it:
// records and payload bytes committed and handed over, full-ring waits,
// futex sleeps and wake-ups, and (recover.go) stuck records of dead
// producers turned into padding. Any process that maps the ring reads them
// with Stats, at any time, without taking part in the protocol.
//
// Cost. Counting takes no lock and no system call, and adds no write to a
// cache line that the message's path did not write already:
//   - a producer counts in its own slot (descriptor.go), on the line where
//     it publishes its claim intent at every claim; the ring's totals are
//     the sums over the slots, made by the reader;
//   - the consumer counts in the line of its consumed word, which it
//     stores after every batch, once per batch;
//   - sleeps and wake-ups are counted beside the system call they count.
//
// Each counter has one writer at a time (the producer that holds the slot,
// the consumer), so an increment is a plain load and store, not an atomic
// read-modify-write: on amd64 and arm64 an aligned 8-byte store is
// single-copy atomic, so a reader never sees a torn value. Under the race
// detector, and on other architectures, increments are atomic adds
// (count_atomic.go). Built with the tag shmex_nocounters, nothing is
// counted (the counters read zero): that build exists to measure what
// counting costs.
//
// Measured (README, "What the counters cost"): 46 instructions added to
// the 6146 of a request/response round trip through the exchange, +0.75%
// (exchange's BenchmarkSHMRoundTripInline, instructions counted by
// cachegrind), and 24 to the 465 of one record written and read in the
// ring alone (BenchmarkWriteRead, +5.1%, the undiluted worst case). Timed,
// the CPU time of the round trip's shortest windows read 1.01-1.10x
// without counters, per interleaved round, on 2 CPUs at load 9 to 12,
// where a placebo build read 0.87-1.29x: the time cannot resolve a few
// percent there.
//
// Counters only grow, and are cumulative over the processes that held a
// slot or the consumer: they wrap after 2^64 and are never reset while the
// ring lives. A reader that takes two snapshots gets rates from their
// differences. Snapshots are not atomic as a whole: Stats reads the
// consumer's counters before the producers', and producers count a record
// before they commit it, so a snapshot never shows more records received
// than sent (a producer that dies between the count and the commit leaves
// one record counted sent that nobody receives: the consumer pads it, and
// counts it recovered).

// slotCounters are the counter words of a producer slot, at slotSent.
type slotCounters struct {
	sent      uint64
	sentBytes uint64
	fullWaits uint64
	wakeups   uint64
}

// consumerCounters are the consumer's counter words, at offReceived.
type consumerCounters struct {
	received      uint64
	receivedBytes uint64
	sleeps        uint64
	spaceWakeups  uint64
}

func (r *Ring) slotCounters(i int) *slotCounters {
	return (*slotCounters)(unsafe.Pointer(r.slotWord(i, slotSent)))
}

// Counters are the cumulative counts of a ring (see Stats).
type Counters struct {
	Sent          uint64 // records committed by producers (padding and aborted claims excluded)
	SentBytes     uint64 // payload bytes of those records
	Received      uint64 // records handed to the consumer's handler
	ReceivedBytes uint64 // payload bytes of those records
	FullWaits     uint64 // times a producer found the ring full (counted once per wait, however long)
	Wakeups       uint64 // futex wakes of a sleeping consumer by producers
	Sleeps        uint64 // futex waits of the consumer for records
	SpaceWakeups  uint64 // futex wakes of producers waiting for space, by the consumer
}

// counters reads the counters: the consumer's first, then the slots' (see
// the ordering above).
func (r *Ring) counters() Counters {
	cc := r.cc
	c := Counters{
		Received:      atomic.LoadUint64(&cc.received),
		ReceivedBytes: atomic.LoadUint64(&cc.receivedBytes),
		Sleeps:        atomic.LoadUint64(&cc.sleeps),
		SpaceWakeups:  atomic.LoadUint64(&cc.spaceWakeups),
	}
	for i := 0; i < r.slots; i++ {
		s := r.slotCounters(i)
		c.Sent += atomic.LoadUint64(&s.sent)
		c.SentBytes += atomic.LoadUint64(&s.sentBytes)
		c.FullWaits += atomic.LoadUint64(&s.fullWaits)
		c.Wakeups += atomic.LoadUint64(&s.wakeups)
	}
	return c
}

// Counting reports whether this build counts (false with the build tag
// shmex_nocounters). Counters in a ring are written by every process that
// uses it, each as its own build says.
func Counting() bool { return counting }
