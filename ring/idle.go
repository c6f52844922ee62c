package ring

// Idle strategies: how Consumer.Receive waits when it finds the ring empty.

import "github.com/shmex/shmex/shm"

// SpinForever is IdleStrategy.Spins for a receiver that never sleeps.
const SpinForever = -1

// IdleStrategy says how a blocking receive waits for records.
type IdleStrategy struct {
	// Spins is how many times Receive polls an empty ring before it sleeps
	// on the futex; SpinForever never sleeps (lowest latency, one core
	// busy), 0 sleeps at once (no CPU while idle, a system call per wake).
	Spins int
	// NoBurstBackoff turns off the pause that Receive takes when it finds
	// the ring empty right after handing over a batch of at least
	// BurstSize records (see Receive).
	NoBurstBackoff bool
}

// Burst backoff: a consumer that has just drained a batch of BurstSize
// records or more is keeping pace with a stream. Finding the ring empty, it
// pauses (burstRelaxes spin-wait hints, a few microseconds) before polling
// again, so that the producers write a batch without the consumer reading
// the very cache line they are writing; polling that line after every
// record made the producers' commits stall and cut throughput by half or
// more. A consumer that reads one record at a time (a request-response
// mailbox) never pauses, and the pause is taken once per Receive.
const (
	BurstSize    = 8
	burstRelaxes = 128 // cpuRelax calls: several microseconds
)

// cpuRelax backs off inside a spin-wait loop: relaxPauses spin-wait hints
// (about 85 ns on the AMD machines measured, more on Intel's), long enough
// that a polling consumer leaves the line a producer writes alone, short
// enough to see a record soon after its commit.
func cpuRelax() {
	for range relaxPauses {
		shm.SpinPause()
	}
}

const relaxPauses = 4

// Idle strategies.
var (
	Spin = IdleStrategy{Spins: SpinForever}
	Park = IdleStrategy{Spins: 0}
)

// SpinThenPark polls n times before sleeping.
func SpinThenPark(n int) IdleStrategy { return IdleStrategy{Spins: n} }
