package systest

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/shmex/shmex/exchange"
)

// registryBehaviors are the behaviors the registry campaign registers:
// Discover must find each by its name, and the first two by "Base" with
// subtypes.
var registryBehaviors = []exchange.Behavior{
	{Name: "RegA", Implements: []string{"Base"}},
	{Name: "RegB", Implements: []string{"Base", "Other"}},
	{Name: "RegC"},
}

// registryCapacity is the registry size of the registry campaign's
// exchange; every registryRotate trials the campaign moves to a fresh
// exchange, since the checks of every trial read every entry (and Status
// looks at its owner's liveness lock).
const (
	registryCapacity = 1 << 14
	registryRotate   = 10
)

// registryChild updates the registry in a loop until it is killed:
// registers agents (of registryBehaviors) and clients named by its
// trial, terminates some of them, opens and closes mailboxes (taking
// ownership), and discovers. It reports "ready", "reg <id>" after each
// registration and "term <id>" after each termination returned.
// args: root, exchange name, trial.
func registryChild(args []string) int {
	say("hello")
	if len(args) != 3 {
		return childFail("registry: args %q", args)
	}
	name := "reg-" + args[2]
	ctx, cancel := context.WithTimeout(context.Background(), childLife)
	defer cancel()
	x, err := childX(args[0], args[1], 4<<10)
	if err != nil {
		return childFail("Open: %v", err)
	}
	defer x.Close()
	say("ready")
	rng := childRand()
	var mine []exchange.EntityID
	for {
		switch op := rng.IntN(8); {
		case op < 3 || len(mine) == 0:
			id, err := x.RegisterAgent(ctx, registryBehaviors[rng.IntN(len(registryBehaviors))], exchange.WithName(name))
			if err != nil {
				return childFail("RegisterAgent: %v", err)
			}
			say("reg", id)
			mine = append(mine, id)
		case op < 5:
			id, err := x.RegisterClient(ctx, exchange.WithName(name))
			if err != nil {
				return childFail("RegisterClient: %v", err)
			}
			say("reg", id)
			mine = append(mine, id)
		case op < 6:
			i := rng.IntN(len(mine))
			if err := x.Terminate(ctx, mine[i]); err != nil {
				return childFail("Terminate: %v", err)
			}
			say("term", mine[i])
			mine = slices.Delete(mine, i, i+1)
		case op < 7:
			mb, err := x.Mailbox(ctx, mine[rng.IntN(len(mine))])
			if err != nil && !errors.Is(err, exchange.ErrMailboxBusy) {
				return childFail("Mailbox: %v", err)
			}
			if err == nil {
				mb.Close()
			}
		default:
			if _, err := x.Discover(ctx, "Base", true); err != nil {
				return childFail("Discover: %v", err)
			}
		}
	}
}

// regLog collects a registry child's reports.
type regLog struct {
	mu   sync.Mutex
	reg  []exchange.EntityID
	term []exchange.EntityID
	bad  []string
}

func (r *regLog) line(f []string) {
	if len(f) != 2 || (f[0] != "reg" && f[0] != "term") {
		return
	}
	id, err := exchange.ParseEntityID(f[1])
	r.mu.Lock()
	defer r.mu.Unlock()
	switch {
	case err != nil:
		r.bad = append(r.bad, fmt.Sprintf("line %q: %v", f, err))
	case f[0] == "reg":
		r.reg = append(r.reg, id)
	default:
		r.term = append(r.term, id)
	}
}

// TestCrashRegistry kills processes inside registry updates: each trial
// starts a child that registers agents and clients, terminates them, takes
// mailboxes over and discovers, in a loop, while this process registers
// and terminates clients of its own in a loop too (so that it waits on the
// registry lock the child may hold), and SIGKILLs the child at a random
// moment. Then this process's registry updates all returned, none of them
// waiting longer than 2 s (load-scaled) past the kill: the dead writer's
// lock was released and its half-written entry did not block anyone; a
// registration and a termination right after the kill go through within
// 2 s too; every entity the child reported registered is still there and
// reads terminated (every one it reported terminated included), as do
// those it registered but died before reporting; and the registry is
// consistent (Entities, Status, Info and Discover agree, nothing listed
// twice, no damaged entry logged).
func TestCrashRegistry(t *testing.T) {
	t.Parallel()
	c := newCampaign(t, "registry", exchange.WithRegistryCapacity(registryCapacity))
	var updates, parentOps int64
	c.run(func(tr *trial) error {
		if tr.i > 0 && tr.i%registryRotate == 0 {
			c.rotate()
		}
		rl := &regLog{}
		k := tr.start("registry", rl.line, c.root, c.name, utoa(tr.id))

		// This process's own updates, throughout the trial, on a handle
		// of its own (opened and closed with each trial, one more thing
		// the campaign's mapping checks see).
		px, err := exchange.Open(c.name, exchange.WithRoot(c.root), exchange.WithMailboxBytes(4<<10),
			exchange.WithLogger(slog.New(slog.NewTextHandler(c.log, nil))))
		if err != nil {
			return err
		}
		defer px.Close()
		if err := k.waitHello(); err != nil {
			return err
		}
		stop := make(chan struct{})
		var opErr error
		var worst time.Duration // longest update
		done := make(chan struct{})
		go func() {
			defer close(done)
			rng := childRand()
			for {
				select {
				case <-stop:
					return
				default:
				}
				start := time.Now()
				id, err := px.RegisterClient(tr.ctx, exchange.WithName("parent"))
				if err == nil {
					err = px.Terminate(tr.ctx, id)
				}
				if err != nil {
					opErr = err
					return
				}
				worst = max(worst, time.Since(start))
				parentOps++
				time.Sleep(time.Duration(rng.Int64N(int64(2 * time.Millisecond))))
			}
		}()
		f, err := tr.ready(k)
		if err == nil && f != nil {
			time.Sleep(tr.delay)
			err = k.kill()
		}
		close(stop)
		select {
		case <-done:
		case <-time.After(bound(callHang)):
			return fmt.Errorf("a registry update of this process still blocked %v after the kill", bound(callHang))
		}
		if err != nil {
			return err
		}
		if opErr != nil {
			return fmt.Errorf("this process's registry update: %w", opErr)
		}
		if worst > bound(stuckBound) {
			return fmt.Errorf("a registration and termination of this process took %v, over %v (load-scaled %v)", worst, stuckBound, bound(stuckBound))
		}
		tr.noteStuck(worst)
		start := time.Now()
		id, err := px.RegisterClient(tr.ctx, exchange.WithName("parent"))
		if err == nil {
			err = px.Terminate(tr.ctx, id)
		}
		if err != nil {
			return fmt.Errorf("registration after the kill: %w", err)
		}
		if d := time.Since(start); d > bound(stuckBound) {
			return fmt.Errorf("a registration and a termination after the kill took %v, over %v (load-scaled %v)", d, stuckBound, bound(stuckBound))
		} else {
			tr.noteStuck(d)
		}

		rl.mu.Lock()
		defer rl.mu.Unlock()
		if len(rl.bad) > 0 {
			return errorsOf("child's lines", rl.bad)
		}
		for _, id := range rl.reg {
			st, err := c.x.Status(tr.ctx, id)
			if err != nil {
				return fmt.Errorf("Status(%v): %w", id, err)
			}
			if st != exchange.StatusTerminated {
				return fmt.Errorf("entity %v of the dead child reads %v, want terminated", id, st)
			}
		}
		tr.dead = append(tr.dead, rl.reg...)
		updates += int64(len(rl.reg) + len(rl.term))
		return nil
	})
	c.done(map[string]any{"child_updates_reported": updates, "parent_updates": parentOps})
}
