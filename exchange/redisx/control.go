package redisx

import (
	"context"
	"strings"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/shmex/shmex/exchange"
)

// Control messages between the hybrid handles of different nodes, on the
// channel {P}:ctl:<node> that every hybrid handle of the node subscribes
// to. One message for now:
//
//	t <entity id> <ack key>    terminate the ring of the entity; then LPUSH "1"
//	                           to the ack key (which expires)
//
// Pub/sub is best effort: a node whose processes miss the message (not
// subscribed yet, cut off) keeps sending to the ring locally until one of
// them terminates it; other nodes already see the entity terminated.

// ackWait bounds how long Terminate waits for the entity's node to confirm.
const ackWait = time.Second

type control struct {
	ps   *redis.PubSub
	done chan struct{}
}

// listen subscribes to this node's channel and serves it.
func (h *Hybrid) listen(ctx context.Context) (*control, error) {
	s := h.rx.s
	ps := s.cl.Subscribe(ctx, s.k.control(h.node))
	if _, err := ps.Receive(ctx); err != nil {
		ps.Close()
		return nil, unavailable(err)
	}
	c := &control{ps: ps, done: make(chan struct{})}
	go func() {
		defer close(c.done)
		for msg := range ps.Channel() {
			h.serve(msg.Payload)
		}
	}()
	return c, nil
}

func (c *control) close() {
	c.ps.Close()
	<-c.done
}

func (h *Hybrid) serve(payload string) {
	f := strings.Fields(payload)
	if len(f) != 3 || f[0] != "t" {
		h.rx.s.log.Warn("redisx: unknown control message", "msg", payload)
		return
	}
	id, err := exchange.ParseEntityID(f[1])
	if err != nil {
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	if err := h.shm.Terminate(ctx, id); err != nil {
		h.rx.s.log.Warn("redisx: terminate a ring on request of another node", "mailbox", id, "err", err)
		return
	}
	pipe := h.rx.s.cl.Pipeline()
	pipe.LPush(ctx, f[2], "1")
	pipe.Expire(ctx, f[2], 10*time.Second)
	pipe.Exec(ctx)
}

// tell asks the processes of node to terminate the ring of id and waits
// (ackWait at most) for one to confirm.
func (h *Hybrid) tell(ctx context.Context, node string, id exchange.EntityID) {
	s := h.rx.s
	key := s.k.ack(randomHex(8))
	n, err := s.cl.Publish(ctx, s.k.control(node), "t "+id.String()+" "+key).Result()
	if err != nil || n == 0 {
		return // nobody of that node listens: nothing sends to the ring
	}
	wait := ackWait
	if dl, ok := ctx.Deadline(); ok {
		wait = min(wait, time.Until(dl))
	}
	if wait <= 0 {
		return
	}
	if err := s.cl.BLPop(context.WithoutCancel(ctx), wait, key).Err(); err != nil {
		s.log.Debug("redisx: no confirmation of a ring's terminate", "node", node, "mailbox", id, "err", err)
	}
	s.cl.Del(context.WithoutCancel(ctx), key)
}
