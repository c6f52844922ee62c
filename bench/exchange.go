package bench

import (
	"context"
	"fmt"
	"strings"

	"github.com/shmex/shmex/exchange"
	"github.com/shmex/shmex/ring"
)

// Metric names of the exchange scenarios.
const (
	MetricExchangeRTTSpin  = "exchange.rtt_spin_ns"
	MetricExchangeRTTFutex = "exchange.rtt_futex_ns"
)

func init() {
	Register(Scenario{
		Name: "exchange/rtt", Rank: RankShmex + 10,
		Doc:     "ActionRequest with 64 bytes of arguments and its ActionResponse between a client and an echo agent in another process, through the shared-memory exchange",
		Metrics: []string{MetricExchangeRTTSpin, MetricExchangeRTTFutex},
		Run:     runExchangeRTT,
	})
	RegisterChild("exchange-echo", childExchangeEcho)
}

func exchangeIdle(mode string) exchange.Option {
	if mode == "spin" {
		return exchange.WithIdle(ring.Spin)
	}
	return exchange.WithIdle(ring.Park)
}

// childExchangeEcho joins exchange args[1] under root args[0], registers an
// echo agent, tells its id, and answers every ActionRequest with its
// arguments until a ShutdownRequest.
func childExchangeEcho(args []string) error {
	if len(args) != 3 {
		return fmt.Errorf("want 3 arguments, got %d", len(args))
	}
	x, err := exchange.Open(args[1], exchange.WithRoot(args[0]), exchangeIdle(args[2]))
	if err != nil {
		return err
	}
	defer x.Close()
	ctx := context.Background()
	aid, err := x.RegisterAgent(ctx, exchange.Behavior{Name: "Echo"})
	if err != nil {
		return err
	}
	mb, err := x.Mailbox(ctx, aid)
	if err != nil {
		return err
	}
	if err := Ready(aid.UUID.String()); err != nil {
		return err
	}
	var m exchange.Message
	for {
		rctx, cancel := context.WithTimeout(ctx, ChildTimeout())
		err := mb.Recv(rctx, &m)
		cancel()
		if err != nil {
			return err
		}
		switch m.Kind {
		case exchange.KindShutdownRequest:
			return nil
		case exchange.KindActionRequest:
			m.SetResponse(&m, m.Args)
			if err := x.Send(ctx, &m); err != nil {
				return err
			}
		}
	}
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
	child, err := env.StartChild(ctx, "exchange-echo", root, name, mode)
	if err != nil {
		return Latency{}, err
	}
	defer child.Close()
	line, err := child.Expect(ctx, "ready")
	if err != nil {
		return Latency{}, err
	}
	u, err := exchange.ParseUUID(strings.TrimSpace(line))
	if err != nil {
		return Latency{}, fmt.Errorf("bench: echo agent said %q: %w", line, err)
	}
	aid := exchange.EntityID{UUID: u, Role: exchange.RoleAgent}
	cid, err := x.RegisterClient(ctx)
	if err != nil {
		return Latency{}, err
	}
	mb, err := x.Mailbox(ctx, cid)
	if err != nil {
		return Latency{}, err
	}
	// Done when the child exits, so that a dead echo fails the run.
	rctx, stop := context.WithCancel(ctx)
	defer stop()
	go func() {
		select {
		case <-child.Done():
			stop()
		case <-rctx.Done():
		}
	}()
	req := exchange.NewActionRequest(cid, aid, "echo", make([]byte, MsgSize))
	var resp exchange.Message
	rt := func() error {
		if err := x.Send(rctx, req); err != nil {
			return err
		}
		if err := mb.Recv(rctx, &resp); err != nil {
			return fmt.Errorf("bench: echo response: %w", err)
		}
		if resp.Tag != req.Tag || resp.Kind != exchange.KindActionResponse {
			return fmt.Errorf("bench: unexpected response %v", &resp)
		}
		return nil
	}
	unlock := env.LockThread()
	l, err := env.MeasureRTT(ctx, rt)
	unlock()
	x.Send(ctx, exchange.NewShutdownRequest(cid, aid, false))
	if werr := child.Wait(); err == nil {
		err = werr
	}
	return l, err
}
