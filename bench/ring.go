//go:build linux

package bench

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"sync"
	"sync/atomic"
	"time"

	"github.com/shmex/shmex/ring"
	"github.com/shmex/shmex/shm"
)

// Metric names of the ring scenarios.
const (
	MetricRingRTTSpin           = "ring.rtt_spin_ns"
	MetricRingRTTFutex          = "ring.rtt_futex_ns"
	MetricRingThroughput1       = "ring.throughput_1to1_msgs"
	MetricRingThroughput8       = "ring.throughput_8to1_msgs"
	MetricRingInproc1           = "ring.inproc_throughput_1to1_msgs"
	MetricRingInproc4           = "ring.inproc_throughput_4to1_msgs"
	ringBenchCapacity           = 1 << 20
	ringBenchSlots              = 16
	ringTypeData          int32 = 1
	ringTypeStop          int32 = 2
)

func init() {
	Register(Scenario{
		Name: "ring/rtt", Rank: RankShmex,
		Doc:     "64-byte record round trip between two processes over two rings, spinning receivers and futex-parked receivers",
		Metrics: []string{MetricRingRTTSpin, MetricRingRTTFutex},
		Run:     runRingRTT,
	})
	Register(Scenario{
		Name: "ring/throughput", Rank: RankShmex + 1,
		Doc:     "64-byte records from 1 and 8 producer processes to one consumer process; and from 1 and 4 goroutines in one process",
		Metrics: []string{MetricRingThroughput1, MetricRingThroughput8, MetricRingInproc1, MetricRingInproc4},
		Run:     runRingThroughput,
	})
	RegisterChild("ring-echo", childRingEcho)
	RegisterChild("ring-produce", childRingProduce)
}

// ringPairSize is the body of a segment holding two rings.
func ringPairSize() int { return 2 * ring.Size(ringBenchCapacity, ringBenchSlots) }

// ringsIn lays out (create) or attaches the two rings of a pair segment.
// Their users take their process id as owner id: the benchmark does not
// exercise crash recovery, so owners need only be distinct.
func ringsIn(body []byte, create bool) (a, b *ring.Ring, err error) {
	size := ring.Size(ringBenchCapacity, ringBenchSlots)
	cfg := ring.Config{Capacity: ringBenchCapacity, Slots: ringBenchSlots}
	for i, r := range []**ring.Ring{&a, &b} {
		region := body[i*size : (i+1)*size]
		if create {
			*r, err = ring.New(region, cfg, ring.Options{})
		} else {
			*r, err = ring.Attach(region, ring.Options{})
		}
		if err != nil {
			return nil, nil, err
		}
	}
	return a, b, nil
}

// idleOf returns the idle strategy of a mode: "spin", "park", or "default"
// for ring.Backoff (spin, yield, then park), the default meant for the
// exchange's mailboxes.
func idleOf(mode string) ring.IdleStrategy {
	switch mode {
	case "spin":
		return ring.Spin
	case "default":
		return ring.Backoff
	}
	return ring.Park
}

// childRingEcho attaches the pair segment args[0] and echoes every record of
// ring a into ring b, receiving with the idle strategy args[1], until a stop
// record.
func childRingEcho(args []string) error {
	if len(args) != 2 {
		return fmt.Errorf("want 2 arguments, got %d", len(args))
	}
	seg, err := shm.Open(args[0], shm.KindScratch, shm.Populate())
	if err != nil {
		return err
	}
	defer seg.Close()
	a, b, err := ringsIn(seg.Body(), false)
	if err != nil {
		return err
	}
	owner := uint64(os.Getpid())
	c, err := a.NewConsumer(owner, idleOf(args[1]))
	if err != nil {
		return err
	}
	p, err := b.NewProducer(owner)
	if err != nil {
		return err
	}
	if err := Ready(""); err != nil {
		return err
	}
	stop := false
	var werr error
	echo := func(typ int32, msg []byte) {
		if typ == ringTypeStop {
			stop = true
			return
		}
		cl, err := p.TryClaim(typ, len(msg))
		if err != nil {
			werr = err
			return
		}
		copy(cl.Bytes(), msg)
		cl.Commit()
	}
	wd := NewWatchdog()
	defer wd.Stop()
	for !stop && werr == nil {
		_, err := c.Receive(wd, echo, 0)
		wd.Progress()
		if err != nil {
			return fmt.Errorf("no record within %v: %w", ChildTimeout(), err)
		}
	}
	return werr
}

// ringPair is the parent side of the ring round trip.
type ringPair struct {
	seg   *shm.Segment
	child *Child
	p     *ring.Producer
	c     *ring.Consumer
	ctx   context.Context // done when the child exits
	stop  context.CancelFunc
	msg   [MsgSize]byte
	back  [MsgSize]byte // the echo, read out of the ring as a receiver would
	n     int           // bytes of the last echo
	read  ring.Handler  // copies an echo into back
}

func startRingPair(ctx context.Context, env *Env, mode string) (*ringPair, error) {
	dir, err := env.Dir()
	if err != nil {
		return nil, err
	}
	name := "ring-rtt-" + mode
	seg, err := env.NewSegment(name, ringPairSize())
	if err != nil {
		return nil, err
	}
	a, b, err := ringsIn(seg.Body(), true)
	if err != nil {
		seg.Close()
		return nil, err
	}
	rp := &ringPair{seg: seg}
	rp.read = func(_ int32, p []byte) { rp.n = copy(rp.back[:], p) }
	owner := uint64(os.Getpid())
	rp.p, _ = a.NewProducer(owner)
	rp.c, _ = b.NewConsumer(owner, idleOf(mode))
	rp.child, err = env.StartChild(ctx, "ring-echo", filepath.Join(dir, name), mode)
	if err == nil {
		_, err = rp.child.Expect(ctx, "ready")
	}
	if err != nil {
		rp.close()
		return nil, err
	}
	rp.ctx, rp.stop = rp.child.Context(ctx)
	return rp, nil
}

// rtt writes one record and waits for its echo, which it reads out of the
// ring (the exchange's round trip decodes its response: a round trip that
// left the echo unread would save the receiver's fetch of its lines).
func (rp *ringPair) rtt() error {
	cl, err := rp.p.TryClaim(ringTypeData, MsgSize)
	if err != nil {
		return err
	}
	copy(cl.Bytes(), rp.msg[:])
	cl.Commit()
	got := 0
	for got == 0 {
		n, err := rp.c.Receive(rp.ctx, rp.read, 1)
		if err != nil {
			return fmt.Errorf("bench: ring echo: %w", err)
		}
		got = n
	}
	if rp.n != MsgSize {
		return fmt.Errorf("bench: ring echo of %d bytes, sent %d", rp.n, MsgSize)
	}
	return nil
}

func (rp *ringPair) close() error {
	var err error
	if rp.child != nil {
		if cl, cerr := rp.p.TryClaim(ringTypeStop, 0); cerr == nil {
			cl.Commit()
		}
		err = rp.child.Wait()
		rp.child.Close()
	}
	if rp.stop != nil {
		rp.stop()
	}
	rp.seg.Close()
	rp.seg.Remove()
	return err
}

func runRingRTT(ctx context.Context, env *Env) ([]Row, error) {
	var rows []Row
	for _, m := range []struct {
		mode, metric, vs, note string
	}{
		{"spin", MetricRingRTTSpin, MetricSharedWordRTT, "receivers spin"},
		{"park", MetricRingRTTFutex, MetricFutexRTT, "receivers sleep on the futex"},
	} {
		rp, err := startRingPair(ctx, env, m.mode)
		if err != nil {
			return nil, err
		}
		unlock := env.LockThread()
		l, err := env.MeasureRTT(ctx, rp.rtt)
		unlock()
		if cerr := rp.close(); err == nil {
			err = cerr
		}
		if err != nil {
			return nil, fmt.Errorf("%s: %w", m.mode, err)
		}
		row := env.LatencyRow(m.metric, l, m.vs)
		row.Note = join(m.note, row.Note)
		rows = append(rows, row)
	}
	return rows, nil
}

// childRingProduce attaches ring a of the pair segment args[0] and writes
// 64-byte records in the fan-in protocol (see produceLoop).
func childRingProduce(args []string) error {
	if len(args) != 1 {
		return fmt.Errorf("want 1 argument, got %d", len(args))
	}
	seg, err := shm.Open(args[0], shm.KindScratch, shm.Populate())
	if err != nil {
		return err
	}
	defer seg.Close()
	a, _, err := ringsIn(seg.Body(), false)
	if err != nil {
		return err
	}
	p, err := a.NewProducer(uint64(os.Getpid()))
	if err != nil {
		return err
	}
	var msg [MsgSize]byte
	return produceLoop(func(ctx context.Context) error {
		cl, err := p.Claim(ctx, ringTypeData, MsgSize)
		if err != nil {
			return err
		}
		copy(cl.Bytes(), msg[:])
		cl.Commit()
		return nil
	})
}

// ringFanIn runs producers child processes writing into one ring that this
// process consumes.
func ringFanIn(ctx context.Context, env *Env, producers int) (Rate, error) {
	f, err := startRingFanIn(ctx, env, producers)
	if err != nil {
		return Rate{}, err
	}
	defer f.close()
	return env.MeasureRate(ctx, f.phase)
}

// ringFanInPeers is a ring in a scratch segment, its consumer in this
// process, and the producer children writing into it.
type ringFanInPeers struct {
	env  *Env
	seg  *shm.Segment
	c    *ring.Consumer
	kids []*Child
	stop func()
}

func startRingFanIn(ctx context.Context, env *Env, producers int) (*ringFanInPeers, error) {
	dir, err := env.Dir()
	if err != nil {
		return nil, err
	}
	name := fmt.Sprintf("ring-fanin-%d", producers)
	seg, err := env.NewSegment(name, ringPairSize())
	if err != nil {
		return nil, err
	}
	f := &ringFanInPeers{env: env, seg: seg, stop: func() {}}
	a, _, err := ringsIn(seg.Body(), true)
	if err == nil {
		f.c, err = a.NewConsumer(uint64(os.Getpid()), ring.Spin)
	}
	if err == nil { // startProducers stops what it started when it fails
		var stop func()
		if f.kids, stop, err = startProducers(ctx, env, producers, "ring-produce", filepath.Join(dir, name)); err == nil {
			f.stop = stop
		}
	}
	if err != nil {
		f.close()
		return nil, err
	}
	return f, nil
}

// phase runs one fan-in phase (see fanInPhase).
func (f *ringFanInPeers) phase(ctx context.Context, p Phase) (int64, time.Duration, error) {
	var got int64
	count := func(int32, []byte) { got++ }
	return fanInPhase(ctx, f.env, f.kids, p, func(ctx context.Context, block bool) (int64, error) {
		got = 0
		var err error
		if block {
			_, err = f.c.Receive(ctx, count, 0)
		} else {
			_, err = f.c.Read(count, 0)
		}
		return got, err
	})
}

func (f *ringFanInPeers) close() {
	f.stop()
	f.seg.Close()
	f.seg.Remove()
}

// ringInproc measures producers goroutines writing into a ring that one
// goroutine consumes, all in this process.
func ringInproc(ctx context.Context, p Phase, producers int) (int64, time.Duration, error) {
	region := make([]byte, ring.Size(ringBenchCapacity, ringBenchSlots))
	r, err := ring.New(region, ring.Config{Capacity: ringBenchCapacity, Slots: ringBenchSlots}, ring.Options{})
	if err != nil {
		return 0, 0, err
	}
	c, _ := r.NewConsumer(1, ring.Spin)
	var sent atomic.Int64
	var wg sync.WaitGroup
	errc := make(chan error, producers)
	each := Phase{Duration: p.Duration, Count: p.Count / int64(producers)}
	start := time.Now()
	for i := 0; i < producers; i++ {
		wg.Add(1)
		go func(owner uint64) {
			defer wg.Done()
			pr, err := r.NewProducer(owner)
			if err != nil {
				errc <- err
				return
			}
			var msg [MsgSize]byte
			n, _, err := each.Loop(ctx, func() error {
				cl, err := pr.Claim(ctx, ringTypeData, MsgSize)
				if err != nil {
					return err
				}
				copy(cl.Bytes(), msg[:])
				cl.Commit()
				return nil
			})
			sent.Add(n)
			if err != nil {
				errc <- err
			}
		}(uint64(i + 2))
	}
	var got int64
	var sink [MsgSize]byte
	count := func(_ int32, b []byte) { copy(sink[:], b); got++ }
	// Receive until the producers are done (which cancels rctx), then
	// drain what they left.
	rctx, cancel := context.WithCancel(ctx)
	defer cancel()
	go func() { wg.Wait(); cancel() }()
	for {
		if _, err := c.Receive(rctx, count, 0); err != nil {
			if ctx.Err() != nil {
				return 0, 0, ctx.Err()
			}
			break
		}
	}
	for got < sent.Load() {
		if _, err := c.Read(count, 0); err != nil {
			return 0, 0, err
		}
	}
	select {
	case err := <-errc:
		return 0, 0, err
	default:
	}
	return got, time.Since(start), nil
}

func runRingThroughput(ctx context.Context, env *Env) ([]Row, error) {
	var rows []Row
	for _, k := range []struct {
		n      int
		metric string
	}{{1, MetricRingThroughput1}, {8, MetricRingThroughput8}} {
		r, err := ringFanIn(ctx, env, k.n)
		if err != nil {
			return nil, fmt.Errorf("%d to 1: %w", k.n, err)
		}
		row := env.RateRow(k.metric, "msgs/s", r, MetricChanThroughput)
		row.Note = join(fmt.Sprintf("%d producer process(es), consumer spins", k.n), row.Note)
		rows = append(rows, row)
	}
	for _, k := range []struct {
		n      int
		metric string
	}{{1, MetricRingInproc1}, {4, MetricRingInproc4}} {
		r, err := env.MeasureRate(ctx, func(ctx context.Context, p Phase) (int64, time.Duration, error) {
			return ringInproc(ctx, p, k.n)
		})
		if err != nil {
			return nil, fmt.Errorf("in-process %d to 1: %w", k.n, err)
		}
		row := env.RateRow(k.metric, "msgs/s", r, MetricChanThroughput)
		row.Note = join(fmt.Sprintf("%d goroutine(s) in one process", k.n), row.Note)
		rows = append(rows, row)
	}
	return rows, nil
}
