//go:build linux

package bench

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"time"

	"github.com/shmex/shmex/exchange"
	"github.com/shmex/shmex/ring"
)

// Metric names of the exchange scenarios.
const (
	MetricExchangeRTTSpin  = "exchange.rtt_spin_ns"
	MetricExchangeRTTFutex = "exchange.rtt_futex_ns"
	MetricExchangeThrough1 = "exchange.throughput_1to1_msgs"
	MetricExchangeThrough8 = "exchange.throughput_8to1_msgs"
	// MetricExchangeThrough64 is 64 senders: 8 processes of 8 goroutines.
	MetricExchangeThrough64 = "exchange.throughput_64to1_msgs"
)

func init() {
	Register(Scenario{
		Name: "exchange/rtt", Rank: RankShmex + 10,
		Doc:     "ActionRequest with 64 bytes of arguments and its ActionResponse between a client and an echo agent in another process, through the shared-memory exchange",
		Metrics: []string{MetricExchangeRTTSpin, MetricExchangeRTTFutex},
		Run:     runExchangeRTT,
	})
	Register(Scenario{
		Name: "exchange/throughput", Rank: RankShmex + 11,
		Doc:     "ActionRequests with 64 bytes of arguments from 1 and 8 client processes, and from 8 processes of 8 sending goroutines, to one agent process, through the shared-memory exchange (each message encoded and decoded)",
		Metrics: []string{MetricExchangeThrough1, MetricExchangeThrough8, MetricExchangeThrough64},
		Run:     runExchangeThroughput,
	})
	RegisterChild("exchange-echo", childExchangeEcho)
	RegisterChild("exchange-send", childExchangeSend)
}

// exchangeIdle returns the idle strategy of a mode: "spin", "park", or
// anything else for the default, ring.Backoff (spin a while, yield a
// while, then park; the spins adapt to where the peer runs).
func exchangeIdle(mode string) exchange.Option {
	return exchange.WithIdle(idleOf(mode))
}

// childExchangeEcho joins exchange args[1] under root args[0], registers an
// echo agent, tells its id, and answers every ActionRequest with its
// arguments until a ShutdownRequest. With a fourth argument, the mailbox
// size in bytes, it answers with a MsgSize-byte result instead (the payload
// sweep's acknowledgement).
func childExchangeEcho(args []string) error {
	if len(args) != 3 && len(args) != 4 {
		return fmt.Errorf("want 3 or 4 arguments, got %d", len(args))
	}
	opts := []exchange.Option{exchange.WithRoot(args[0]), exchangeIdle(args[2])}
	var ack []byte
	if len(args) == 4 {
		size, err := strconv.Atoi(args[3])
		if err != nil {
			return err
		}
		opts = append(opts, exchange.WithMailboxBytes(size))
		ack = make([]byte, MsgSize)
	}
	x, err := exchange.Open(args[1], opts...)
	if err != nil {
		return err
	}
	defer x.Close()
	return serveAgent(x, "Echo", func(*exchange.Message) ([]byte, error) { return ack, nil })
}

func runExchangeRTT(ctx context.Context, env *Env) ([]Row, error) {
	root, err := env.Dir()
	if err != nil {
		return nil, err
	}
	var rows []Row
	for _, m := range []struct{ mode, metric, vs, note string }{
		{"spin", MetricExchangeRTTSpin, MetricRingRTTSpin, "receivers spin"},
		{"park", MetricExchangeRTTFutex, MetricRingRTTFutex, "receivers sleep on the futex"},
	} {
		l, err := exchangeRTT(ctx, env, root, m.mode)
		if err != nil {
			return nil, fmt.Errorf("%s: %w", m.mode, err)
		}
		row := env.LatencyRow(m.metric, l, m.vs)
		row.Note = join(m.note, row.Note)
		rows = append(rows, row)
	}
	return rows, nil
}

func exchangeRTT(ctx context.Context, env *Env, root, mode string) (Latency, error) {
	name := "exchange-rtt-" + mode
	x, err := exchange.Open(name, exchange.WithRoot(root), exchangeIdle(mode))
	if err != nil {
		return Latency{}, err
	}
	defer x.Close()
	p, err := startMsgPeer(ctx, env, x, "exchange-echo", root, name, mode)
	if err != nil {
		return Latency{}, err
	}
	args := make([]byte, MsgSize)
	unlock := env.LockThread()
	l, err := env.MeasureRTT(ctx, func() error { return p.call(args, MsgSize) })
	unlock()
	if cerr := p.close(ctx); err == nil {
		err = cerr
	}
	return l, err
}

// childExchangeSend joins exchange args[1] under root args[0] as a client
// and sends ActionRequests with MsgSize bytes of arguments to the agent
// args[2] in the fan-in protocol (see produceLoop), from args[3] goroutines.
func childExchangeSend(args []string) error {
	if len(args) != 4 {
		return fmt.Errorf("want 4 arguments, got %d", len(args))
	}
	workers, err := strconv.Atoi(args[3])
	if err != nil {
		return err
	}
	x, err := exchange.Open(args[1], exchange.WithRoot(args[0]), exchange.WithIdle(ring.Spin))
	if err != nil {
		return err
	}
	defer x.Close()
	u, err := exchange.ParseUUID(args[2])
	if err != nil {
		return err
	}
	cid, err := x.RegisterClient(context.Background())
	if err != nil {
		return err
	}
	req := exchange.NewActionRequest(cid, exchange.EntityID{UUID: u, Role: exchange.RoleAgent}, "sink", make([]byte, MsgSize))
	return produceLoopN(workers, func(ctx context.Context) error { return x.Send(ctx, req) })
}

// exchangeFanIn measures senders client processes of workers goroutines
// each sending to one agent mailbox that this process receives from,
// spinning.
func exchangeFanIn(ctx context.Context, env *Env, root string, senders, workers int) (Rate, error) {
	name := fmt.Sprintf("exchange-fanin-%d-%d", senders, workers)
	x, err := exchange.Open(name, exchange.WithRoot(root), exchange.WithIdle(ring.Spin), exchange.WithMailboxBytes(1<<20))
	if err != nil {
		return Rate{}, err
	}
	defer x.Close()
	aid, err := x.RegisterAgent(ctx, exchange.Behavior{Name: "Sink"})
	if err != nil {
		return Rate{}, err
	}
	mb, err := x.Mailbox(ctx, aid)
	if err != nil {
		return Rate{}, err
	}
	kids, stop, err := startProducers(ctx, env, senders, "exchange-send", root, name, aid.UUID.String(), strconv.Itoa(workers))
	if err != nil {
		return Rate{}, err
	}
	defer stop()
	var m exchange.Message
	recv := func(ctx context.Context, block bool) (int64, error) {
		if !block {
			var cancel context.CancelFunc
			ctx, cancel = context.WithTimeout(ctx, 100*time.Microsecond)
			defer cancel()
		}
		err := mb.Recv(ctx, &m)
		switch {
		case err == nil:
			if m.Kind != exchange.KindActionRequest || len(m.Args) != MsgSize {
				return 0, fmt.Errorf("bench: unexpected message %v", &m)
			}
			return 1, nil
		case !block && errors.Is(err, context.DeadlineExceeded) && ctx.Err() != nil:
			return 0, nil
		}
		return 0, err
	}
	return env.MeasureRate(ctx, func(ctx context.Context, p Phase) (int64, time.Duration, error) {
		return fanInPhase(ctx, env, kids, p, recv)
	})
}

func runExchangeThroughput(ctx context.Context, env *Env) ([]Row, error) {
	root, err := env.Dir()
	if err != nil {
		return nil, err
	}
	var rows []Row
	for _, k := range []struct {
		n, workers int
		metric, vs string
	}{
		{1, 1, MetricExchangeThrough1, MetricRingThroughput1},
		{8, 1, MetricExchangeThrough8, MetricRingThroughput8},
		{8, 8, MetricExchangeThrough64, MetricExchangeThrough8},
	} {
		r, err := exchangeFanIn(ctx, env, root, k.n, k.workers)
		if err != nil {
			return nil, fmt.Errorf("%d to 1: %w", k.n*k.workers, err)
		}
		row := env.RateRow(k.metric, "msgs/s", r, k.vs)
		row.Note = join(fmt.Sprintf("%d client process(es) of %d sending goroutine(s), agent spins", k.n, k.workers), row.Note)
		rows = append(rows, row)
	}
	return rows, nil
}
