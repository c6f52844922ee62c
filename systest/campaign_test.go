package systest

import (
	"bytes"
	"context"
	"fmt"
	mrand "math/rand/v2"
	"os"
	"path/filepath"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/shmex/shmex/agent"
	"github.com/shmex/shmex/exchange"
)

// The crash campaign: for each role a process can play, trials that start
// a child in that role, SIGKILL it at a random moment, and check what
// survives. Every trial ends with the checks every role shares (trial.finish):
// the registry consistent and showing none of the dead child's mailboxes
// active, no damaged structure logged, and gc leaving no file of the dead
// child. The roles add their own (delivery exactly once, nothing torn, no
// mailbox stuck, calls to a dead agent failing in time, views valid).

// campaign is one role's crash campaign.
type campaign struct {
	t    *testing.T
	role string
	root string
	name string
	x    *exchange.SHM
	log  *logSink
	rng  *mrand.Rand
	n    int

	mu         sync.Mutex
	earlyKills int           // trials killed before the child was ready
	maxStuck   time.Duration // longest a mailbox waited for a dead child's records to clear
	maxFail    time.Duration // longest a call to a dead agent took to fail
	messages   int64         // records delivered and checked
	figures    map[string]any
	maps       []int                      // the parent's mapping count after each trial
	shmMaps    []int                      // the parent's mappings of segments after each trial
	threads    []int                      // the parent's threads after each trial
	goroutines []int                      // the parent's goroutines after each trial (all campaigns')
	heap       []int                      // the parent's Go heap in use after each trial, KiB (all campaigns')
	live       map[exchange.EntityID]bool // mailboxes of this process: the only ones active between trials
	opts       []exchange.Option
	gen        int // exchanges replaced by rotate
}

// newCampaign opens the campaign's exchange (this process's handle; small
// mailboxes unless opts say otherwise).
func newCampaign(t *testing.T, role string, opts ...exchange.Option) *campaign {
	c := &campaign{t: t, role: role, root: newRoot(t), name: "crash-" + role, log: &logSink{}, n: trials(t), figures: map[string]any{}, live: map[exchange.EntityID]bool{}}
	s := seed(t)
	c.rng = mrand.New(mrand.NewPCG(s, s^0x9e3779b97f4a7c15))
	c.opts = append([]exchange.Option{exchange.WithMailboxBytes(8 << 10)}, opts...)
	c.x = openX(t, c.root, c.name, c.log, c.opts...)
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("log of the campaign's exchange handle:\n%s", c.log.String())
		}
	})
	return c
}

// rotate replaces the campaign's exchange with a fresh one (and removes
// the old one's directory), for a campaign that registers thousands of
// mailboxes: the checks of every trial read every registry entry. Call it
// between trials, before the trial starts children.
func (c *campaign) rotate() {
	old := c.x
	c.gen++
	c.name = fmt.Sprintf("crash-%s-%d", c.role, c.gen)
	c.x = openX(c.t, c.root, c.name, c.log, c.opts...)
	old.Close()
	os.RemoveAll(old.Dir())
}

// keep records a mailbox of this process, which stays active across the
// trials; every other mailbox reads terminated once a trial's children are
// dead.
func (c *campaign) keep(id exchange.EntityID) {
	c.mu.Lock()
	c.live[id] = true
	c.mu.Unlock()
}

// trial is one trial of a campaign.
type trial struct {
	c     *campaign
	i     int
	rng   *mrand.Rand
	id    uint64        // carried by the trial's records
	early bool          // kill before the child is ready
	delay time.Duration // when to kill, after hello (early) or ready
	kids  []*kid
	dead  []exchange.EntityID // mailboxes of the dead children
	ctx   context.Context
	// beforeKill, when set, runs just before ready or killLater sends
	// the SIGKILL.
	beforeKill func()
}

// run runs the campaign's trials, stopping at the first that fails. Each
// trial kills its child either soon after it started (one in five: within
// 30 ms of its first line, during Open and registration) or within 150 ms
// of its ready line, while it works.
func (c *campaign) run(body func(tr *trial) error) {
	c.t.Logf("%s: %d trials (mode %s, load scale %.1f)", c.role, c.n, mode(), loadScale())
	start := time.Now()
	for i := range c.n {
		ctx, cancel := context.WithTimeout(context.Background(), bound(2*time.Minute))
		tr := &trial{c: c, i: i, rng: mrand.New(mrand.NewPCG(c.rng.Uint64(), c.rng.Uint64())), id: c.rng.Uint64(), ctx: ctx}
		tr.early = tr.rng.IntN(5) == 0
		if tr.early {
			tr.delay = time.Duration(tr.rng.Int64N(int64(30 * time.Millisecond)))
			c.mu.Lock()
			c.earlyKills++
			c.mu.Unlock()
		} else {
			tr.delay = time.Duration(tr.rng.Int64N(int64(150 * time.Millisecond)))
		}
		err := body(tr)
		if err == nil {
			err = tr.finish()
		}
		for _, k := range tr.kids {
			k.c.Kill() // reaped already unless the trial failed
		}
		cancel()
		if err != nil {
			c.t.Fatalf("%s trial %d (kill %s %v): %v", c.role, i, map[bool]string{true: "after hello", false: "after ready"}[tr.early], tr.delay, err)
		}
		if ps, err := readProc(os.Getpid(), c.root); err == nil {
			c.maps = append(c.maps, ps.Maps)
			c.shmMaps = append(c.shmMaps, ps.ShmMaps)
			c.threads = append(c.threads, ps.Threads)
			c.goroutines = append(c.goroutines, runtime.NumGoroutine())
			var ms runtime.MemStats
			runtime.ReadMemStats(&ms)
			c.heap = append(c.heap, int(ms.HeapInuse>>10))
			if os.Getenv("SHMEX_DEBUG_ALLMAPS") != "" && (i == 0 || i == c.n-1) {
				b, _ := os.ReadFile("/proc/self/maps")
				c.t.Logf("trial %d maps:\n%s", i, b)
			}
			if os.Getenv("SHMEX_DEBUG_MAPS") != "" {
				b, _ := os.ReadFile("/proc/self/maps")
				var l []string
				for _, line := range strings.Split(string(b), "\n") {
					if strings.Contains(line, c.root+"/") {
						f := strings.Fields(line)
						l = append(l, f[0]+" "+filepath.Base(f[len(f)-1])+" "+f[len(f)-2])
					}
				}
				c.t.Logf("trial %d shm maps: %q", i, l)
			}
		}
	}
	c.figures["wall_s"] = fmt.Sprintf("%.1f", time.Since(start).Seconds())
}

// start starts a child of the trial.
func (tr *trial) start(role string, handle func(f []string), args ...string) *kid {
	k := startKid(tr.c.t, role, handle, args...)
	tr.kids = append(tr.kids, k)
	return k
}

// ready waits for k's ready line and returns it; for an early trial it
// kills k first, at its moment, and returns nil.
func (tr *trial) ready(k *kid) ([]string, error) {
	if tr.early {
		if err := k.waitHello(); err != nil {
			return nil, err
		}
		time.Sleep(tr.delay)
		if tr.beforeKill != nil {
			tr.beforeKill()
		}
		return nil, k.kill()
	}
	return k.waitReady()
}

// killLater sleeps until the trial's moment and kills k.
func (tr *trial) killLater(k *kid) error {
	time.Sleep(tr.delay)
	if tr.beforeKill != nil {
		tr.beforeKill()
	}
	return k.kill()
}

// callAfterKill calls action of h with the trial's sentinel record, queued
// behind everything the killed child sent, within stuckBound (load-scaled):
// once it answers with the record whole, every request committed before
// it was taken. The time it took is noted as the trial's stuck time. what
// names the agent in the error.
func (tr *trial) callAfterKill(h *agent.Handle, action, what string) error {
	start := time.Now()
	cctx, cancel := context.WithTimeout(tr.ctx, bound(stuckBound))
	defer cancel()
	rec := appendRecord(nil, tr.id, sentinel, 0, nil)
	var got []byte
	f, err := h.ActionRaw(cctx, action, rec)
	if err == nil {
		got, err = f.Wait(cctx)
	}
	if err == nil && !bytes.Equal(got, rec) {
		err = errTorn
	}
	if err != nil {
		return fmt.Errorf("call to %s after the kill: %w (after %v; load-scaled bound %v)", what, err, time.Since(start), bound(stuckBound))
	}
	tr.noteStuck(time.Since(start))
	return nil
}

// noteStuck records how long a mailbox took to clear a dead child's records.
func (tr *trial) noteStuck(d time.Duration) {
	tr.c.mu.Lock()
	tr.c.maxStuck = max(tr.c.maxStuck, d)
	tr.c.mu.Unlock()
}

// noteFail records how long calls to a dead agent took to fail.
func (tr *trial) noteFail(d time.Duration) {
	tr.c.mu.Lock()
	tr.c.maxFail = max(tr.c.maxFail, d)
	tr.c.mu.Unlock()
}

// noteMessages counts records delivered and checked.
func (tr *trial) noteMessages(n int64) {
	tr.c.mu.Lock()
	tr.c.messages += n
	tr.c.mu.Unlock()
}

// finish runs the checks every trial ends with, once its children are
// dead: their failure lines, the registry, the logs, and gc.
func (tr *trial) finish() error {
	c := tr.c
	dead := map[int]bool{}
	for _, k := range tr.kids {
		if err := k.reap(); err != nil {
			return err
		}
		if errs := k.failures(); len(errs) > 0 {
			return fmt.Errorf("child %d reported: %q", k.pid, errs)
		}
		dead[k.pid] = true
	}
	if err := checkRegistry(tr.ctx, c.x, tr.dead); err != nil {
		return fmt.Errorf("registry: %w", err)
	}
	if err := c.onlyLiveActive(tr.ctx); err != nil {
		return err
	}
	if err := gc(tr.ctx, c.x); err != nil {
		return fmt.Errorf("gc: %w", err)
	}
	left, err := leftovers(c.x.Dir(), dead)
	if err != nil {
		return err
	}
	if len(left) > 0 {
		return fmt.Errorf("gc left files of dead processes: %q", left)
	}
	// After gc too: it must not have broken anything.
	if err := checkRegistry(tr.ctx, c.x, tr.dead); err != nil {
		return fmt.Errorf("registry after gc: %w", err)
	}
	if bad := c.log.damage(); len(bad) > 0 {
		return fmt.Errorf("damage logged: %q", bad)
	}
	return nil
}

// onlyLiveActive checks that no mailbox but this process's own reads
// active: the children are dead, so are the mailboxes they owned, whether
// they reported them or died before.
func (c *campaign) onlyLiveActive(ctx context.Context) error {
	ents, err := c.x.Entities(ctx)
	if err != nil {
		return fmt.Errorf("Entities: %w", err)
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	for _, e := range ents {
		if e.Status == exchange.StatusActive && !c.live[e.ID] {
			return fmt.Errorf("mailbox %v (%q) reads active, but its owner is dead", e.ID, e.Name)
		}
	}
	return nil
}

// done reports the campaign's figures, and checks that this process's
// mappings stayed flat across the trials.
func (c *campaign) done(extra map[string]any) {
	c.t.Helper()
	if c.t.Failed() {
		return
	}
	v := map[string]any{
		"test":        "crash",
		"role":        c.role,
		"trials":      c.n,
		"early_kills": c.earlyKills,
		"messages":    c.messages,
	}
	if c.maxStuck > 0 {
		v["max_stuck_ms"] = c.maxStuck.Milliseconds()
	}
	if c.maxFail > 0 {
		v["max_dead_call_ms"] = c.maxFail.Milliseconds()
	}
	for k, x := range c.figures {
		v[k] = x
	}
	for k, x := range extra {
		v[k] = x
	}
	if len(c.maps) > 1 {
		// A leak grows with the trials; a working set (the Go heap, the
		// race detector's shadow, an arena's segments) grows in the first
		// trials and stays. So the mappings after the last trial are
		// compared with the most after any trial of the first half.
		for _, m := range []struct {
			name   string
			series []int
			slack  int
		}{{"parent_maps", c.maps, mapsSlack}, {"parent_shm_maps", c.shmMaps, shmMapsSlack},
			{"parent_threads", c.threads, -1}, {"goroutines", c.goroutines, -1}, {"heap_kib", c.heap, -1}} {
			first, last, half := m.series[0], m.series[len(m.series)-1], slices.Max(m.series[:(len(m.series)+1)/2])
			v[m.name+"_first"], v[m.name+"_half"], v[m.name+"_last"] = first, half, last
			if m.slack >= 0 && last > half+m.slack {
				c.t.Errorf("%s: this process's mappings grew from %d (first trial) and %d (most in the first half) to %d after the last trial", m.name, first, half, last)
			}
		}
	}
	report(c.t, v)
}

// mapsSlack is how many mappings a process may gain over a campaign or a
// soak without counting as a leak: the Go heap and the race detector's
// shadow memory map more as they grow.
const mapsSlack = 64

// shmMapsSlack is how many more segments a process may map at the end of
// a campaign or a soak than at its start: a few, for the mailboxes and
// arena segments in use at that moment.
const shmMapsSlack = 8

func itoa(n int) string          { return strconv.Itoa(n) }
func utoa(n uint64) string       { return strconv.FormatUint(n, 10) }
func atou(s string) uint64       { n, _ := strconv.ParseUint(s, 10, 64); return n }
func atoi(s string) int          { n, _ := strconv.Atoi(s); return n }
func dur(d time.Duration) string { return d.String() }
