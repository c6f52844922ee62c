package systest

import (
	"testing"

	"github.com/shmex/shmex/exchange"
)

// senderStreams is how many goroutines of a sender child send at once.
const senderStreams = 4

// senderChild sends records to a mailbox from senderStreams goroutines as
// fast as the mailbox takes them (a small one: senders wait for space),
// reporting "ok <stream> <seq>" after each Send that returned nil, until it
// is killed. args: root, exchange name, destination, trial.
func senderChild(args []string) int {
	c, code := startStreamChild("sender", args, 4<<10)
	if code != 0 {
		return code
	}
	defer c.close()
	x, dest, trialID, ctx := c.x, c.dest, c.trial, c.ctx
	me, err := x.RegisterClient(ctx, exchange.WithName("sender"))
	if err != nil {
		return childFail("RegisterClient: %v", err)
	}
	say("ready", me)
	errs := make(chan error, senderStreams)
	for s := range uint32(senderStreams) {
		go func() {
			rng := childRand()
			m := exchange.NewActionRequest(me, dest, "rec", nil)
			var body, rec []byte
			for seq := uint64(0); ; seq++ {
				body = patternBody(body[:0], rng.IntN(1500), s, seq)
				rec = appendRecord(rec[:0], trialID, s, seq, body)
				m.Tag = exchange.NewTag()
				m.Args = rec
				if err := x.Send(ctx, m); err != nil {
					errs <- err
					return
				}
				say("ok", s, seq)
			}
		}()
	}
	return childFail("Send: %v", <-errs)
}

// TestCrashSender kills sender processes in the middle of their sends: each
// trial starts a child whose four goroutines send records to this
// process's mailbox (8 KiB: they wait for space, and claim, write and
// commit records all the time), and SIGKILLs it at a random moment. Then
// every record the child reported committed has arrived, exactly once, in
// order and whole; at most one more per goroutine arrived (committed but
// not reported); the mailbox is not stuck: a record sent after the kill
// arrives within 2 s (load-scaled) though the dead child may have left a
// claimed record in the ring; and the shared checks of every trial hold.
func TestCrashSender(t *testing.T) {
	t.Parallel()
	c := newCampaign(t, "sender")
	s := newSink(t, c.x, func(r record) error {
		if !checkPattern(r.body, r.stream, r.seq) {
			return errTorn
		}
		return nil
	})
	c.keep(s.me)
	c.run(func(tr *trial) error {
		com := newCommitted()
		k := tr.start("sender", com.line, tr.c.root, tr.c.name, s.me.String(), utoa(tr.id))
		f, err := tr.ready(k)
		if err != nil {
			return err
		}
		if f != nil {
			if id, err := exchange.ParseEntityID(f[1]); err == nil {
				tr.dead = append(tr.dead, id)
			}
			if err := tr.killLater(k); err != nil {
				return err
			}
		}
		stuck, err := s.mark(tr.ctx, tr.id)
		if err != nil {
			return err
		}
		tr.noteStuck(stuck)
		if errs := s.failures(); len(errs) > 0 {
			return errorsOf("records", errs)
		}
		if err := com.check(s, tr.id, senderStreams); err != nil {
			return err
		}
		tr.noteMessages(s.forget(tr.id))
		return nil
	})
	c.done(nil)
}
