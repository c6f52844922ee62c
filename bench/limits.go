//go:build linux

package bench

import (
	"context"
	"errors"
	"fmt"
	"path/filepath"
	"runtime/debug"
	"sync/atomic"
	"time"
	"unsafe"

	"github.com/shmex/shmex/shm"
	"golang.org/x/sys/unix"
)

// Metric names of the limits of the machine, for CompareTo.
const (
	MetricSharedWordRTT = "limit.shared_word_rtt_ns"
	MetricFutexRTT      = "limit.futex_rtt_ns"
	MetricMemcpy        = "limit.memcpy_gbps"
)

func init() {
	Register(Scenario{
		Name: "limit/shared_word", Rank: RankLimit,
		Doc:     "a 64-bit word in shared memory bounced between two spinning processes (plain stores, a PAUSE between polls, yielding after 4096 polls)",
		Metrics: []string{MetricSharedWordRTT},
		Run:     runSharedWord,
	})
	Register(Scenario{
		Name: "limit/futex", Rank: RankLimit + 1,
		Doc:     "raw futex ping-pong between two processes on words in a shared segment (no spinning)",
		Metrics: []string{MetricFutexRTT},
		Run:     runFutex,
	})
	Register(Scenario{
		Name: "limit/memcpy", Rank: RankLimit + 2,
		Doc:     "memory copy bandwidth of one thread for large buffers",
		Metrics: []string{MetricMemcpy},
		Run:     runMemcpy,
	})
	RegisterChild("limit-word", childSharedWord)
	RegisterChild("limit-futex", childFutex)
}

// Layout of the scratch segment of the two-process limits: two words, each on
// a cache line of its own (shm.CacheLine, which covers adjacent-line
// prefetch). The parent writes ping, the child answers on pong with the same
// value; stopWord on ping makes the child exit.
const (
	pairOffPing   = 0
	pairOffPong   = shm.CacheLine
	pairBodySize  = 2 * shm.CacheLine
	stopWord64    = ^uint64(0)
	stopWord32    = ^uint32(0)
	spinYield     = 1<<12 - 1 // spins before yielding the CPU (see yield)
	spinCheck     = 1<<16 - 1 // spins between two looks at the clock
	futexWaitStep = 100 * time.Millisecond
)

// yield gives the CPU to another runnable thread. The spinning sides of the
// shared-word limit call it after spinYield unanswered spins (several
// microseconds, far above a round trip on an idle machine): when both
// processes have to share one CPU because the machine is busy, a round trip
// then costs a yield instead of a whole scheduler time slice.
func yield() { unix.RawSyscall(unix.SYS_SCHED_YIELD, 0, 0, 0) }

func word64(body []byte, off int) *uint64 { return (*uint64)(unsafe.Pointer(&body[off])) }
func word32(body []byte, off int) *uint32 { return (*uint32)(unsafe.Pointer(&body[off])) }

// pair is the parent side of a two-process ping-pong on a scratch segment.
type pair struct {
	seg     *shm.Segment
	child   *Child
	body    []byte
	seq     uint64
	timeout time.Duration
	stalled time.Time // when the current wait started looking stuck
}

// startPair creates the segment and starts the child role on it.
func startPair(ctx context.Context, env *Env, role, name string) (*pair, error) {
	dir, err := env.Dir()
	if err != nil {
		return nil, err
	}
	seg, err := env.NewSegment(name, pairBodySize)
	if err != nil {
		return nil, err
	}
	c, err := env.StartChild(ctx, role, filepath.Join(dir, name))
	if err != nil {
		seg.Close()
		seg.Remove()
		return nil, err
	}
	p := &pair{seg: seg, child: c, body: seg.Body(), timeout: env.ChildTimeout}
	if _, err := c.Expect(ctx, "ready"); err != nil {
		p.close(false)
		return nil, err
	}
	return p, nil
}

// stuck is the slow path of a wait: it fails when the child has exited or
// the wait has lasted longer than the timeout.
func (p *pair) stuck() error {
	if p.child.Exited() {
		return fmt.Errorf("bench: child %s exited during a round trip", p.child.Role)
	}
	now := time.Now()
	if p.stalled.IsZero() {
		p.stalled = now
	} else if now.Sub(p.stalled) > p.timeout {
		return fmt.Errorf("bench: child %s did not answer within %v", p.child.Role, p.timeout)
	}
	return nil
}

// close stops the child (by the stop word when futex is false or true) and
// removes the segment.
func (p *pair) close(futex bool) error {
	if futex {
		atomic.StoreUint32(word32(p.body, pairOffPing), stopWord32)
		shm.Wake(word32(p.body, pairOffPing), 1)
	} else {
		atomic.StoreUint64(word64(p.body, pairOffPing), stopWord64)
	}
	err := p.child.Wait()
	p.child.Close()
	p.seg.Close()
	p.seg.Remove()
	return err
}

// wordRTT is one round trip of the shared-word limit: store the next
// sequence number, spin until the child echoes it. Both sides store with a
// plain MOV (shm.StoreRelease) and pause once between two polls
// (shm.SpinPause), the fastest bounce measured: an XCHG store (sync/atomic)
// or polling without a pause made the round trip twice as long on the AMD
// machines, which would make the limit slower than the ring it bounds.
func (p *pair) wordRTT() error {
	ping, pong := word64(p.body, pairOffPing), word64(p.body, pairOffPong)
	p.seq++
	shm.StoreRelease(ping, p.seq)
	for spins := 1; atomic.LoadUint64(pong) != p.seq; spins++ {
		shm.SpinPause()
		if spins&spinYield == 0 {
			yield()
			if spins&spinCheck == 0 {
				if err := p.stuck(); err != nil {
					return err
				}
			}
		}
	}
	if !p.stalled.IsZero() {
		p.stalled = time.Time{}
	}
	return nil
}

// futexRTT is one round trip of the futex limit: store and wake, then sleep
// on the answer word until the child echoes.
func (p *pair) futexRTT() error {
	ping, pong := word32(p.body, pairOffPing), word32(p.body, pairOffPong)
	p.seq++
	seq := uint32(p.seq)
	if seq == stopWord32 || seq == 0 {
		p.seq, seq = 1, 1
	}
	atomic.StoreUint32(ping, seq)
	if _, err := shm.Wake(ping, 1); err != nil {
		return err
	}
	for {
		v := atomic.LoadUint32(pong)
		if v == seq {
			break
		}
		err := shm.Wait(pong, v, futexWaitStep)
		if errors.Is(err, shm.ErrTimedOut) {
			if err := p.stuck(); err != nil {
				return err
			}
		} else if err != nil {
			return err
		}
	}
	if !p.stalled.IsZero() {
		p.stalled = time.Time{}
	}
	return nil
}

func openPairSegment(args []string) (*shm.Segment, error) {
	if len(args) != 1 {
		return nil, fmt.Errorf("want 1 argument (segment path), got %d", len(args))
	}
	return shm.Open(args[0], shm.KindScratch, shm.Populate())
}

// childSharedWord echoes ping to pong by spinning until the stop word.
func childSharedWord(args []string) error {
	seg, err := openPairSegment(args)
	if err != nil {
		return err
	}
	defer seg.Close()
	body := seg.Body()
	ping, pong := word64(body, pairOffPing), word64(body, pairOffPong)
	if err := Ready(""); err != nil {
		return err
	}
	var last uint64
	var stalled time.Time
	for spins := 1; ; spins++ {
		v := atomic.LoadUint64(ping)
		if v != last {
			if v == stopWord64 {
				return nil
			}
			shm.StoreRelease(pong, v)
			last = v
			if !stalled.IsZero() {
				stalled = time.Time{}
			}
			continue
		}
		shm.SpinPause()
		if spins&spinYield == 0 {
			yield()
			if spins&spinCheck == 0 {
				now := time.Now()
				if stalled.IsZero() {
					stalled = now
				} else if now.Sub(stalled) > ChildTimeout() {
					return fmt.Errorf("no ping for %v", ChildTimeout())
				}
			}
		}
	}
}

// childFutex echoes ping to pong, sleeping on ping between round trips.
func childFutex(args []string) error {
	seg, err := openPairSegment(args)
	if err != nil {
		return err
	}
	defer seg.Close()
	body := seg.Body()
	ping, pong := word32(body, pairOffPing), word32(body, pairOffPong)
	if err := Ready(""); err != nil {
		return err
	}
	var last uint32
	var idle time.Duration
	for {
		v := atomic.LoadUint32(ping)
		if v == last {
			err := shm.Wait(ping, last, futexWaitStep)
			if errors.Is(err, shm.ErrTimedOut) {
				if idle += futexWaitStep; idle > ChildTimeout() {
					return fmt.Errorf("no ping for %v", ChildTimeout())
				}
			} else if err != nil {
				return err
			}
			continue
		}
		if v == stopWord32 {
			return nil
		}
		idle = 0
		atomic.StoreUint32(pong, v)
		if _, err := shm.Wake(pong, 1); err != nil {
			return err
		}
		last = v
	}
}

func runSharedWord(ctx context.Context, env *Env) ([]Row, error) {
	p, err := startPair(ctx, env, "limit-word", "limit-word")
	if err != nil {
		return nil, err
	}
	unlock := env.LockThread()
	l, err := env.MeasureRTT(ctx, p.wordRTT)
	unlock()
	if cerr := p.close(false); err == nil {
		err = cerr
	}
	if err != nil {
		return nil, err
	}
	return []Row{env.LatencyRow(MetricSharedWordRTT, l, "")}, nil
}

func runFutex(ctx context.Context, env *Env) ([]Row, error) {
	p, err := startPair(ctx, env, "limit-futex", "limit-futex")
	if err != nil {
		return nil, err
	}
	unlock := env.LockThread()
	l, err := env.MeasureRTT(ctx, p.futexRTT)
	unlock()
	if cerr := p.close(true); err == nil {
		err = cerr
	}
	if err != nil {
		return nil, err
	}
	return []Row{env.LatencyRow(MetricFutexRTT, l, MetricSharedWordRTT)}, nil
}

// memcpyBuffers returns two buffers of size bytes with every page touched, so
// that the copy measures memory and not page faults.
func memcpyBuffers(size int64) (src, dst []byte) {
	src, dst = make([]byte, size), make([]byte, size)
	for i := range src {
		src[i] = byte(i)
	}
	for i := 0; i < len(dst); i += 4096 {
		dst[i] = 1
	}
	return src, dst
}

func runMemcpy(ctx context.Context, env *Env) ([]Row, error) {
	src, dst := memcpyBuffers(env.MemcpyBytes)
	defer debug.FreeOSMemory()
	copy(dst, src) // warm the caches and TLBs as a real copy would find them
	reps := env.Reps + 2
	var best float64
	for range reps {
		if err := ctx.Err(); err != nil {
			return nil, err
		}
		t0 := time.Now()
		copy(dst, src)
		el := time.Since(t0)
		best = max(best, float64(len(src))/el.Seconds()/1e9)
	}
	if dst[len(dst)-1] != src[len(src)-1] {
		return nil, errors.New("bench: copy did not copy")
	}
	note := fmt.Sprintf("best of %d copies of %d MiB, one thread", reps, env.MemcpyBytes>>20)
	return []Row{{Metric: MetricMemcpy, Value: best, Unit: "GB/s", Note: note}}, nil
}
