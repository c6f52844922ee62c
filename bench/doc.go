//go:build linux

// Package bench holds shmbench's scenarios (machine limits, shmex, and its peers: Unix sockets, TCP, Go channels, Redis lists, iceoryx, shmipc-go); read each figure as its ratio to the limit or peer in its CompareTo, measured in the same run, not as an absolute.
//
// The limits are a 64-bit word bounced between two spinning processes, a raw
// futex ping-pong between two processes, and the memory copy bandwidth of one
// thread: an exchange that spins cannot beat the first, one that sleeps cannot
// beat the second, and one that copies cannot beat the third.
//
// The *_same_cpu rows place both processes of a pair on one CPU (every
// thread, GOMAXPROCS 1: see [Env.OnOneCPU]), as on an oversubscribed node or
// in a container with one CPU, and measure the ring, the exchange and an
// action with the default idle strategy (ring.Backoff) against a raw futex
// ping-pong placed the same way (limit.futex_rtt_same_cpu_ns). A receiver
// that spins there only delays its peer, which cannot run meanwhile.
//
// # Reading the figures
//
// A latency row (unit "ns") is a round trip between two processes (or two
// goroutines for chan.*): its Value is the mean over a bulk phase of N round
// trips timed as a whole, and its Hist holds percentiles from a second phase in
// which every round trip was timed on its own with the monotonic clock
// (time.Since a fixed base). Reading the clock costs 20 to 50 ns here, which
// biases the histogram of sub-microsecond round trips upwards; the bulk mean
// does not carry that cost, but one stall of a process (a preemption) can
// double it, so the table's headline and the ratios use the p50, and the mean
// stays as a column. With several repetitions the Value is the median of the
// repetitions and the histogram merges them all. Throughput rows (unit "msgs/s") are messages delivered and consumed
// end to end divided by the elapsed time, median over repetitions. Memory
// bandwidth (unit "GB/s", 10^9 bytes) is the best repetition of one large
// copy, counting the bytes copied once.
//
// Ratio is the row's figure divided by the figure of the row named in
// CompareTo, their p50s when both have percentiles, else their Values: for a
// latency compared with a limit, 3.0 means three times the limit's round
// trip; for a throughput compared with a peer, 3.0 means three times the
// peer's rate. Ratios are computed by [Report.ComputeRatios] after every
// scenario has run, so a scenario never depends on the order of others; it
// also judges each row against its targets ([Target], declared in
// Scenario.Targets next to the rows: the goals of the open issues) and flags
// a row whose p50 is far from the other rows of its Transport, which on a
// virtual machine means the pair was placed differently for it.
//
// # Adding a scenario
//
// A scenario is a [Scenario] registered from an init function with
// [Register], in a file of its own (ring.go, exchange.go). Its Run function
// receives an [*Env] with the run's settings (durations, repetitions,
// pinning, scratch directory, children) and returns one [Row] per metric it
// declared in Scenario.Metrics:
//
//   - a round trip: wrap one complete round trip in a func() error, call
//     [Env.MeasureRTT] between [Env.LockThread] and its unlock, and turn the
//     [Latency] into a row with [Env.LatencyRow](metric, l, compareTo);
//   - a rate: write a func(ctx, Phase) (n, elapsed, err) that sends with
//     [Phase.Loop] and waits for the consumer's count, call
//     [Env.MeasureRate], and use [Env.RateRow];
//   - anything else: build the Row by hand (Metric, Value, Unit, Note).
//
// Set Row.CompareTo to the metric the row is judged against (the Metric*
// constants name the limits and peers); the ratio is filled in for you. Add
// to Row.Note whatever the reader needs to interpret the figure. A scenario
// that cannot run on this machine returns [SkipRows] with a reason, not an
// error. Honour Config.Quick (smoke-test sizes) and Config.Full (long sizes):
// TestScenarios runs every registered scenario in quick mode.
//
// # Adding a child role
//
// A peer process is the current program re-run in a role registered with
// [RegisterChild] from an init function. The role gets the arguments passed
// to [Env.StartChild], sets itself up, calls [Ready], then serves; it bounds
// its own waits with [ChildTimeout] and returns an error to fail (the parent
// sees it from [Child.Expect]). The parent waits for readiness with
// Child.Expect(ctx, "ready") and stops the child with [Child.Close]; Close of
// the Env kills whatever is left. Shared-memory scenarios create their
// segments with [Env.NewSegment] in the run's scratch directory [Env.Dir] and
// pass the paths to the child. See limits.go for a shared-memory pair,
// sockets.go for a socket peer and redis.go for an external server.
//
// # Adding a Go benchmark
//
// bench_test.go exposes the scenarios as `go test -bench` benchmarks built
// from the same pieces: start the pair or peer, then time b.Loop() round
// trips (ns/op is one round trip), or pass Phase{Count: int64(b.N)} to the
// throughput function and report b.ReportMetric(n/elapsed, "msgs/s").
package bench
