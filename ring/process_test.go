package ring_test

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"math"
	mrand "math/rand/v2"
	"os"
	"path/filepath"
	"runtime"
	"strconv"
	"sync/atomic"
	"syscall"
	"testing"
	"time"
	"unsafe"

	"github.com/shmex/shmex/internal/childproc"
	"github.com/shmex/shmex/ring"
	"github.com/shmex/shmex/shm"
)

func TestMain(m *testing.M) {
	childproc.Main(m, map[string]childproc.Role{"producer": producerChild})
}

// patience scales a test's bound on a wait for another process with the
// machine's load: d times the 1-minute load average over the CPU count, at
// least once and at most ten times. A child under -race on a machine that
// other jobs keep busy waits its turn for a CPU before it can answer.
func patience(d time.Duration) time.Duration {
	b, err := os.ReadFile("/proc/loadavg")
	if err != nil {
		return d
	}
	var load float64
	if _, err := fmt.Sscan(string(b), &load); err != nil {
		return d
	}
	return d * time.Duration(min(max(math.Ceil(load/float64(runtime.NumCPU())), 1), 10))
}

// shmDir makes a private exchange directory in shared memory for one test.
func shmDir(t testing.TB) string {
	t.Helper()
	b := make([]byte, 6)
	rand.Read(b)
	dir := filepath.Join(shm.DefaultRoot(), "test-ring-"+hex.EncodeToString(b))
	if err := shm.EnsureDir(dir); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	return dir
}

func createRing(t testing.TB, path string, cfg ring.Config) *shm.Segment {
	t.Helper()
	seg, err := shm.Create(path, shm.KindRing, int64(shm.HeaderSize+ring.Size(cfg.Capacity, cfg.Slots)),
		func(body []byte) error { _, err := ring.New(body, cfg, ring.Options{}); return err })
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { seg.Close() })
	return seg
}

// reportWord is producer id's "last committed sequence" word in the report
// segment: written by the producer right after each Commit returns.
func reportWord(seg *shm.Segment, id int) *uint64 {
	return (*uint64)(unsafe.Pointer(&seg.Body()[id*shm.CacheLine]))
}

// producerChild writes records (id, seq, checksum) into the ring at
// args[0]. args: ring path, dir, report path, id, count (0 = until killed),
// suicide (1: SIGKILL itself between a claim and its commit at a random
// record).
func producerChild(args []string) int {
	fail := func(err error) int { fmt.Println("error", err); return 1 }
	seg, err := shm.Open(args[0], shm.KindRing)
	if err != nil {
		return fail(err)
	}
	rep, err := shm.Open(args[2], shm.KindScratch)
	if err != nil {
		return fail(err)
	}
	id, _ := strconv.Atoi(args[3])
	count, _ := strconv.ParseUint(args[4], 10, 64)
	suicide := args[5] == "1"
	life, err := shm.HoldLife(args[1])
	if err != nil {
		return fail(err)
	}
	r, err := ring.Attach(seg.Body(), ring.Options{})
	if err != nil {
		return fail(err)
	}
	p, err := r.NewProducer(life.ID())
	if err != nil {
		return fail(err)
	}
	report := reportWord(rep, id)
	rng := mrand.New(mrand.NewPCG(uint64(id), uint64(time.Now().UnixNano())))
	dieAt := uint64(0)
	if suicide {
		dieAt = 1 + rng.Uint64N(20000)
	}
	// Bounds the producer's waits for space over its whole life: a
	// consumer starved by a busy machine may leave the ring full for a
	// while, and the parent's test deadline is the real bound (the child
	// dies with the parent).
	ctx, cancel := context.WithTimeout(context.Background(), patience(5*time.Minute))
	defer cancel()
	fmt.Println("ready")
	for seq := uint64(1); count == 0 || seq <= count; seq++ {
		n := 16 + rng.IntN(r.MaxPayload()-16+1)
		c, err := p.Claim(ctx, int32(id), n)
		if err != nil {
			return fail(err)
		}
		payload(c.Bytes(), uint32(id), seq)
		if seq == dieAt {
			syscall.Kill(os.Getpid(), syscall.SIGKILL)
		}
		c.Commit()
		atomic.StoreUint64(report, seq)
	}
	return 0
}

type procRing struct {
	dir    string
	path   string
	report string
	rep    *shm.Segment
	r      *ring.Ring
	c      *ring.Consumer
}

func newProcRing(t *testing.T, dir, name string, cfg ring.Config) *procRing {
	pr := &procRing{dir: dir, path: filepath.Join(dir, name), report: filepath.Join(dir, name+"-report")}
	seg := createRing(t, pr.path, cfg)
	var err error
	pr.rep, err = shm.Create(pr.report, shm.KindScratch, shm.HeaderSize+16*shm.CacheLine, nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { pr.rep.Close() })
	pr.r, err = ring.Attach(seg.Body(), ring.Options{Alive: func(id uint64) bool {
		ok, err := shm.Alive(dir, id)
		return ok || err != nil
	}})
	if err != nil {
		t.Fatal(err)
	}
	pr.c, err = pr.r.NewConsumer(uint64(os.Getpid()), ring.SpinThenPark(1000))
	if err != nil {
		t.Fatal(err)
	}
	return pr
}

// start runs producer children with ids 1..len(suicide), all at once, and
// waits until each is ready. kids[id] is producer id.
func (pr *procRing) start(t *testing.T, count int, suicide ...bool) []*childproc.Child {
	kids := make([]*childproc.Child, len(suicide)+1)
	for i, die := range suicide {
		s := "0"
		if die {
			s = "1"
		}
		kids[i+1] = childproc.Start(t, "producer", pr.path, pr.dir, pr.report, strconv.Itoa(i+1), strconv.Itoa(count), s)
	}
	for id, c := range kids[1:] {
		if l, err := c.Line(patience(20 * time.Second)); err != nil || l != "ready" {
			t.Fatalf("producer %d: %q %v", id+1, l, err)
		}
	}
	return kids
}

// receive reads until done() holds. It fails if the consumer makes no
// progress for 2 seconds (times the load, see patience) while records are
// pending and every producer is dead (allDead): then nothing but recovery
// can unblock it. While a producer lives, a pending record may be its
// claim, which a starved process (2 cores, several test packages at once)
// can hold for longer; the consumer must wait for it, bounded by the test's
// overall deadline.
func (pr *procRing) receive(t *testing.T, k *checker, done, allDead func() bool) {
	t.Helper()
	deadline := time.Now().Add(patience(3 * time.Minute))
	stuck := patience(2 * time.Second)
	for !done() {
		ctx, cancel := context.WithTimeout(context.Background(), stuck)
		_, err := pr.c.Receive(ctx, k.handle, 256)
		cancel()
		if k.err != nil {
			t.Fatal(k.err)
		}
		if errors.Is(err, context.DeadlineExceeded) {
			if st := pr.r.Stats(); pr.c.Position() != st.Tail && (allDead() || time.Now().After(deadline)) {
				t.Fatalf("consumer stuck for %v with records pending: %+v", stuck, st)
			}
			continue
		}
		if err != nil {
			t.Fatal(err)
		}
	}
}

func TestProcessesFourToOne(t *testing.T) {
	const producers, each = 4, 250_000
	dir := shmDir(t)
	pr := newProcRing(t, dir, "ring-4to1", ring.Config{Capacity: 1 << 16, MaxRecord: 1024, Slots: 8})
	kids := pr.start(t, each, false, false, false, false)[1:]
	k := newChecker()
	deadline := time.Now().Add(5 * time.Minute)
	pr.receive(t, k, func() bool {
		if time.Now().After(deadline) {
			t.Fatalf("only %d of %d records after 5 minutes", k.n, producers*each)
		}
		return k.n == producers*each
	}, func() bool { return false })
	for _, c := range kids {
		if err := c.Wait(patience(20 * time.Second)); err != nil {
			t.Fatal(err)
		}
	}
	st := pr.r.Stats()
	if pr.c.Position() != st.Tail || st.Recovered != 0 || st.Tail < 100*uint64(st.Capacity) {
		t.Fatalf("stats %+v", st)
	}
	t.Logf("%d records from %d processes; %+v", k.n, producers, st)
}

func TestKillCampaign(t *testing.T) {
	trials := 50
	if testing.Short() {
		trials = 10
	}
	dir := shmDir(t)
	var recovered, delivered uint64
	for trial := 0; trial < trials; trial++ {
		pr := newProcRing(t, dir, fmt.Sprintf("ring-kill-%d", trial), ring.Config{Capacity: 1 << 15, MaxRecord: 2048, Slots: 8})
		const producers = 3
		kids := pr.start(t, 0, true, trial%2 == 0, false)
		k := newChecker()
		rng := mrand.New(mrand.NewPCG(uint64(trial), 7))
		// Kill each producer at its own random moment while consuming.
		killAt := make([]time.Time, producers+1)
		for id := 1; id <= producers; id++ {
			killAt[id] = time.Now().Add(time.Duration(1+rng.IntN(40)) * time.Millisecond)
		}
		alive := producers
		pr.receive(t, k, func() bool {
			for id := 1; id <= producers; id++ {
				if kids[id] == nil {
					continue
				}
				select {
				case <-kids[id].Done():
				default:
					if time.Now().Before(killAt[id]) {
						continue
					}
					kids[id].Kill()
				}
				kids[id] = nil
				alive--
			}
			return alive == 0 && pr.c.Position() == pr.r.Stats().Tail
		}, func() bool { return alive == 0 })
		for id := 1; id <= producers; id++ {
			reported := atomic.LoadUint64(reportWord(pr.rep, id))
			got := k.last[uint32(id)]
			if got < reported || got > reported+1 {
				t.Fatalf("trial %d producer %d: delivered up to %d, reported committed %d", trial, id, got, reported)
			}
		}
		st := pr.r.Stats()
		recovered += st.Recovered
		delivered += uint64(k.n)
		if st.RecoveredByTimeout != 0 {
			t.Fatalf("trial %d: owner unknown for a stuck record: %+v", trial, st)
		}
	}
	t.Logf("%d trials: %d records delivered, %d stuck records of killed producers recovered", trials, delivered, recovered)
	if recovered == 0 {
		t.Fatal("no trial exercised recovery")
	}
}
