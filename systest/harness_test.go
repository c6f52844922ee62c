package systest

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/binary"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"hash/crc32"
	"io"
	"log/slog"
	mrand "math/rand/v2"
	"os"
	"path/filepath"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/shmex/shmex/exchange"
	"github.com/shmex/shmex/internal/childproc"
	"github.com/shmex/shmex/proxystore"
	"github.com/shmex/shmex/shm"
)

// ---- modes ----

// The long modes. SHMEX_LONG selects them:
//
//	(unset)  the normal suite: 10 trials per role, a 3 s soak
//	short    50 trials per role, a 1 min soak
//	1        200 trials per role, a 10 min soak
//
// SHMEX_TRIALS=N and SHMEX_SOAK=DURATION override the counts; SHMEX_SEED=N
// replays a campaign's random choices (the seed is logged);
// SHMEX_SYSTEST_REPORT=FILE appends every result line (JSON) to FILE;
// SHMEX_DEBUG_MAPS=1 logs the segments this process maps after each trial.
const (
	envLong   = "SHMEX_LONG"
	envTrials = "SHMEX_TRIALS"
	envSoak   = "SHMEX_SOAK"
	envSeed   = "SHMEX_SEED"
	envReport = "SHMEX_SYSTEST_REPORT"
)

// mode names the mode selected by SHMEX_LONG.
func mode() string {
	switch v := os.Getenv(envLong); v {
	case "", "0":
		return "normal"
	case "short":
		return "short"
	default:
		return "long"
	}
}

// trials returns how many trials each role of the crash campaign runs.
func trials(t testing.TB) int {
	if v := os.Getenv(envTrials); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil || n < 1 {
			t.Fatalf("%s=%q: want a positive count", envTrials, v)
		}
		return n
	}
	switch mode() {
	case "short":
		return 50
	case "long":
		return 200
	}
	return 10
}

// soakDuration returns how long the soak runs.
func soakDuration(t testing.TB) time.Duration {
	if v := os.Getenv(envSoak); v != "" {
		d, err := time.ParseDuration(v)
		if err != nil || d <= 0 {
			t.Fatalf("%s=%q: want a positive duration", envSoak, v)
		}
		return d
	}
	switch mode() {
	case "short":
		return time.Minute
	case "long":
		return 10 * time.Minute
	}
	return 3 * time.Second
}

// seed returns the seed of a campaign's random choices, logged so that a
// failure can be replayed with SHMEX_SEED.
func seed(t testing.TB) uint64 {
	if v := os.Getenv(envSeed); v != "" {
		s, err := strconv.ParseUint(v, 10, 64)
		if err != nil {
			t.Fatalf("%s=%q: %v", envSeed, v, err)
		}
		t.Logf("seed %d (from %s)", s, envSeed)
		return s
	}
	var b [8]byte
	rand.Read(b[:])
	s := binary.LittleEndian.Uint64(b[:]) >> 1
	t.Logf("seed %d (replay with %s=%d)", s, envSeed, s)
	return s
}

// ---- time bounds ----

// loadScale is how much slower than an idle machine this one runs now: the
// one-minute load average per CPU, at least 1 and at most 30. Time bounds
// that the guarantees state (a mailbox stuck no longer than 2 s, ...) are
// asserted multiplied by it, so that the suite passes on a busy machine and
// still catches what never happens (a wedge, a call that never fails).
func loadScale() float64 {
	b, err := os.ReadFile("/proc/loadavg")
	if err != nil {
		return 1
	}
	f := strings.Fields(string(b))
	if len(f) == 0 {
		return 1
	}
	l, err := strconv.ParseFloat(f[0], 64)
	if err != nil {
		return 1
	}
	return min(max(l/float64(runtime.NumCPU()), 1), 30)
}

// bound returns d scaled by the load.
func bound(d time.Duration) time.Duration {
	return time.Duration(float64(d) * loadScale())
}

const (
	// stuckBound is the guarantee: no mailbox stays stuck longer, whoever
	// died (asserted load-scaled).
	stuckBound = 2 * time.Second
	// childStart bounds a child's first lines (a race binary starts
	// slowly on a busy machine).
	childStart = time.Minute
	// childLife bounds a campaign child's life.
	childLife = 3 * time.Minute
)

// ---- exchange roots, handles and logs ----

// newRoot returns a fresh exchange root under the default root (/dev/shm,
// where the exchange lives in production), removed when the test ends.
func newRoot(t testing.TB) string {
	t.Helper()
	b := make([]byte, 6)
	rand.Read(b)
	root := filepath.Join(shm.DefaultRoot(), "test-sys-"+hex.EncodeToString(b))
	if err := shm.EnsureDir(root); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(root) })
	return root
}

// logSink collects a handle's log; warnings about damaged or corrupt
// structures fail the check that reads them.
type logSink struct {
	mu  sync.Mutex
	buf bytes.Buffer
	off int // what check has seen already
}

func (l *logSink) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.buf.Write(p)
}

// damage returns the lines logged since the last call that report damaged
// or corrupt shared structures.
func (l *logSink) damage() []string {
	l.mu.Lock()
	defer l.mu.Unlock()
	s := l.buf.String()[l.off:]
	l.off = l.buf.Len()
	var bad []string
	for _, line := range strings.Split(s, "\n") {
		low := strings.ToLower(line)
		if strings.Contains(low, "damaged") || strings.Contains(low, "corrupt") {
			bad = append(bad, line)
		}
	}
	return bad
}

func (l *logSink) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.buf.String()
}

// openX opens exchange name under root with a logger into sink; the handle
// is closed when the test ends.
func openX(t testing.TB, root, name string, sink *logSink, opts ...exchange.Option) *exchange.SHM {
	t.Helper()
	opts = append([]exchange.Option{exchange.WithRoot(root), exchange.WithLogger(slog.New(slog.NewTextHandler(sink, nil)))}, opts...)
	x, err := exchange.Open(name, opts...)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { x.Close() })
	return x
}

// ---- records: what the campaigns send, checked end to end ----

// A record is the payload of every message the campaigns send:
//
//	0   u32  magic "SXR1"
//	4   u32  stream (a sending goroutine)
//	8   u64  seq (0, 1, 2, ... per stream)
//	16  u64  trial (random per trial)
//	24  u32  n, the body's length
//	28  body [n]
//	28+n u32 CRC-32C of bytes [0, 28+n)
//
// The body is a pattern computed from stream and seq (patternBody) or, for
// proxies, the proxy's wire form after the payload's length and CRC.
const (
	recMagic  = 0x31525853
	recHeader = 28
	// sentinel is the stream of the marker a parent sends itself after a
	// kill: every record committed before it has been received once it
	// arrives.
	sentinel = ^uint32(0)
)

var castagnoli = crc32.MakeTable(crc32.Castagnoli)

type record struct {
	stream uint32
	seq    uint64
	trial  uint64
	body   []byte
}

func appendRecord(dst []byte, trial uint64, stream uint32, seq uint64, body []byte) []byte {
	start := len(dst)
	dst = binary.LittleEndian.AppendUint32(dst, recMagic)
	dst = binary.LittleEndian.AppendUint32(dst, stream)
	dst = binary.LittleEndian.AppendUint64(dst, seq)
	dst = binary.LittleEndian.AppendUint64(dst, trial)
	dst = binary.LittleEndian.AppendUint32(dst, uint32(len(body)))
	dst = append(dst, body...)
	return binary.LittleEndian.AppendUint32(dst, crc32.Checksum(dst[start:], castagnoli))
}

var errTorn = errors.New("torn record")

// parseRecord checks b whole: magic, length and CRC. The body aliases b.
func parseRecord(b []byte) (record, error) {
	if len(b) < recHeader+4 || binary.LittleEndian.Uint32(b) != recMagic {
		return record{}, fmt.Errorf("%w: %d bytes, bad magic or short", errTorn, len(b))
	}
	n := int(binary.LittleEndian.Uint32(b[24:]))
	if len(b) != recHeader+n+4 {
		return record{}, fmt.Errorf("%w: %d bytes for a body of %d", errTorn, len(b), n)
	}
	if got, want := crc32.Checksum(b[:recHeader+n], castagnoli), binary.LittleEndian.Uint32(b[recHeader+n:]); got != want {
		return record{}, fmt.Errorf("%w: CRC %08x, want %08x", errTorn, got, want)
	}
	return record{
		stream: binary.LittleEndian.Uint32(b[4:]),
		seq:    binary.LittleEndian.Uint64(b[8:]),
		trial:  binary.LittleEndian.Uint64(b[16:]),
		body:   b[recHeader : recHeader+n],
	}, nil
}

// patternBody returns n bytes that depend on stream, seq and position.
func patternBody(dst []byte, n int, stream uint32, seq uint64) []byte {
	for i := range n {
		dst = append(dst, byte(seq*131+uint64(i)*7+uint64(stream)*17))
	}
	return dst
}

// checkPattern reports whether body is the pattern of stream and seq.
func checkPattern(body []byte, stream uint32, seq uint64) bool {
	for i, c := range body {
		if c != byte(seq*131+uint64(i)*7+uint64(stream)*17) {
			return false
		}
	}
	return true
}

// streamKey names one stream of one trial.
type streamKey struct {
	trial  uint64
	stream uint32
}

// ---- children ----

// kid is a campaign child: its output lines are handed to a handler as they
// come (fields split), and the lines "error ..." and "bad ..." are
// failures. Kill it with kill, never with childproc's Kill (whose drain
// would race the handler for the last lines).
type kid struct {
	c      *childproc.Child
	pid    int
	hello  chan struct{} // closed at the line "hello"
	ready  chan []string // the line "ready ...", once
	ended  chan struct{} // closed when the output has ended
	mu     sync.Mutex
	errs   []string
	killed bool
}

// startKid starts a child in role with args; handle (which may be nil)
// gets every other line's fields, in the reading goroutine.
func startKid(t testing.TB, role string, handle func(f []string), args ...string) *kid {
	t.Helper()
	c, err := childproc.StartCmd(role, args...)
	if err != nil {
		t.Fatalf("start child %s: %v", role, err)
	}
	// The cleanup that kills the child if the test ends first holds it
	// only until its output has ended (it is dead then): a campaign
	// starts thousands, whose buffers must not live as long as the test.
	var held atomic.Pointer[childproc.Child]
	held.Store(c)
	t.Cleanup(func() {
		if c := held.Load(); c != nil {
			c.Kill()
		}
	})
	k := &kid{c: c, pid: c.Cmd.Process.Pid, hello: make(chan struct{}), ready: make(chan []string, 1), ended: make(chan struct{})}
	go func() {
		defer func() {
			<-c.Done()
			held.Store(nil)
		}()
		defer close(k.ended)
		helloed := false
		for l := range c.Lines() {
			f := strings.Fields(l)
			switch {
			case len(f) == 0:
			case f[0] == "hello" && !helloed:
				helloed = true
				close(k.hello)
			case f[0] == "ready":
				select {
				case k.ready <- f:
				default:
				}
			case f[0] == "error" || f[0] == "bad":
				k.mu.Lock()
				k.errs = append(k.errs, l)
				k.mu.Unlock()
			case handle != nil:
				handle(f)
			}
		}
	}()
	return k
}

// waitHello waits for the child's first line.
func (k *kid) waitHello() error {
	select {
	case <-k.hello:
		return nil
	case <-k.ended:
		return fmt.Errorf("child %d ended before its first line: %v", k.pid, k.exitErr())
	case <-time.After(bound(childStart)):
		return fmt.Errorf("child %d: no first line within %v", k.pid, bound(childStart))
	}
}

// waitReady waits for the child's "ready" line and returns its fields.
func (k *kid) waitReady() ([]string, error) {
	select {
	case f := <-k.ready:
		return f, nil
	case <-k.ended:
		return nil, fmt.Errorf("child %d ended before ready: %v %v", k.pid, k.exitErr(), k.failures())
	case <-time.After(bound(childStart)):
		return nil, fmt.Errorf("child %d: not ready within %v", k.pid, bound(childStart))
	}
}

func (k *kid) exitErr() error {
	select {
	case <-k.c.Done():
		return k.c.Wait(0)
	default:
		return nil
	}
}

// failures returns the child's error and bad lines.
func (k *kid) failures() []string {
	k.mu.Lock()
	defer k.mu.Unlock()
	return slices.Clone(k.errs)
}

// kill sends SIGKILL and waits until the child is reaped (its liveness
// locks are gone then) and its output handled. It fails if the child had
// ended before.
func (k *kid) kill() error {
	select {
	case <-k.c.Done():
		return fmt.Errorf("child %d exited before it was killed: %v %v", k.pid, k.c.Wait(0), k.failures())
	default:
	}
	k.killed = true
	k.c.Cmd.Process.Kill()
	return k.reap()
}

// reap waits until the child has ended and its output has been handled.
func (k *kid) reap() error {
	limit := time.After(bound(30 * time.Second))
	select {
	case <-k.ended:
	case <-limit:
		return fmt.Errorf("child %d: output still open after its kill", k.pid)
	}
	select {
	case <-k.c.Done():
	case <-limit:
		return fmt.Errorf("child %d: not reaped after its kill", k.pid)
	}
	return nil
}

// ---- children's side ----

// say and childFail are a child's reports (childproc.Say, childproc.Fail).
var say, childFail = childproc.Say, childproc.Fail

// childX opens the exchange of a campaign child.
func childX(root, name string, mailboxBytes int) (*exchange.SHM, error) {
	return exchange.Open(name, exchange.WithRoot(root), exchange.WithMailboxBytes(mailboxBytes),
		exchange.WithLogger(slog.New(slog.DiscardHandler)))
}

// streamChild is what the crash campaign's streaming children (sender,
// client, arena owner) start with: their args are root, exchange name,
// destination and trial; each says hello, then opens the exchange with
// mailboxes of mailboxBytes. code is not 0 when the child must exit with
// it (it said why); else the child defers close.
type streamChild struct {
	x     *exchange.SHM
	dest  exchange.EntityID
	trial uint64
	ctx   context.Context
	close func()
}

func startStreamChild(role string, args []string, mailboxBytes int) (c streamChild, code int) {
	say("hello")
	if len(args) != 4 {
		return c, childFail("%s: args %q", role, args)
	}
	dest, err := exchange.ParseEntityID(args[2])
	if err != nil {
		return c, childFail("%s: destination: %v", role, err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), childLife)
	x, err := childX(args[0], args[1], mailboxBytes)
	if err != nil {
		cancel()
		return c, childFail("Open: %v", err)
	}
	return streamChild{x: x, dest: dest, trial: atou(args[3]), ctx: ctx, close: func() { x.Close(); cancel() }}, 0
}

// childRand returns a child's random source.
func childRand() *mrand.Rand {
	var b [16]byte
	rand.Read(b[:])
	return mrand.New(mrand.NewPCG(binary.LittleEndian.Uint64(b[:]), binary.LittleEndian.Uint64(b[8:])))
}

// ---- what gc must leave ----

// gc runs what `shmex gc` runs on the exchange of x: proxystore.Collect on
// its directory, then x.Collect.
func gc(ctx context.Context, x *exchange.SHM) error {
	if _, err := proxystore.Collect(x.Dir()); err != nil {
		return fmt.Errorf("proxystore.Collect: %w", err)
	}
	if _, err := x.Collect(ctx); err != nil {
		return fmt.Errorf("Collect: %w", err)
	}
	return nil
}

// sharedFiles are the files of an exchange that belong to nobody: made by
// whichever process came first, they live as long as the exchange.
var sharedFiles = []string{shm.RegistryName, shm.ArenaPrefix + "store"}

// leftovers lists the files of dir that dead processes left: liveness files
// whose lock nobody holds, temporary files (call it when no live process
// creates segments), and segments created by one of the pids in dead
// (read from the segment header), the shared files excepted. It
// tolerates nothing: the leftovers the campaigns once let pass (a dead
// creator's temporary file, a ring whose registration died before
// publishing its entry) are removed by gc at once since their fixes.
func leftovers(dir string, dead map[int]bool) ([]string, error) {
	entries, err := os.ReadDir(dir)
	if err != nil {
		return nil, err
	}
	var left []string
	for _, e := range entries {
		name := e.Name()
		path := filepath.Join(dir, name)
		switch {
		case slices.Contains(sharedFiles, name):
		case strings.HasPrefix(name, shm.LivePrefix):
			alive, err := shm.AlivePath(path)
			if err != nil && !errors.Is(err, os.ErrNotExist) {
				return nil, err
			}
			if err == nil && !alive {
				left = append(left, name+" (lock of a dead process)")
			}
		case shm.IsTemp(name):
			left = append(left, name+" (temporary file)")
		default:
			pid, err := creator(path)
			if err != nil {
				if errors.Is(err, os.ErrNotExist) {
					continue
				}
				left = append(left, fmt.Sprintf("%s (unreadable: %v)", name, err))
				continue
			}
			if dead[pid] {
				left = append(left, fmt.Sprintf("%s (made by dead pid %d)", name, pid))
			}
		}
	}
	return left, nil
}

// creator reads the pid of the process that created the segment at path.
func creator(path string) (int, error) {
	f, err := os.Open(path)
	if err != nil {
		return 0, err
	}
	defer f.Close()
	b := make([]byte, shm.HeaderSize)
	if _, err := io.ReadFull(f, b); err != nil {
		return 0, err
	}
	info, err := shm.ParseHeader(b)
	if err != nil {
		return 0, err
	}
	return int(info.PID), nil
}

// fileCount counts the entries of dir.
func fileCount(dir string) int {
	entries, _ := os.ReadDir(dir)
	return len(entries)
}

// ---- registry consistency ----

// checkRegistry checks that Entities, Status, Info and Discover agree on
// every entity of x, and that none of dead (entities of dead processes)
// reads as active.
func checkRegistry(ctx context.Context, x *exchange.SHM, dead []exchange.EntityID) error {
	ents, err := x.Entities(ctx)
	if err != nil {
		return fmt.Errorf("Entities: %w", err)
	}
	byID := make(map[exchange.EntityID]exchange.EntityInfo, len(ents))
	behaviors := map[string]bool{}
	for _, e := range ents {
		if _, dup := byID[e.ID]; dup {
			return fmt.Errorf("Entities lists %v twice", e.ID)
		}
		byID[e.ID] = e
		st, err := x.Status(ctx, e.ID)
		if err != nil {
			return fmt.Errorf("Status(%v): %w", e.ID, err)
		}
		info, err := x.Info(ctx, e.ID)
		if err != nil {
			return fmt.Errorf("Info(%v): %w", e.ID, err)
		}
		if st != e.Status || info.Status != e.Status || info.ID != e.ID || info.Name != e.Name || info.Behavior.Name != e.Behavior.Name {
			return fmt.Errorf("entity %v: Entities says %+v, Status %v, Info %+v", e.ID, e, st, info)
		}
		if e.ID.Role == exchange.RoleAgent {
			behaviors[e.Behavior.Name] = true
			for _, b := range e.Behavior.Implements {
				behaviors[b] = true
			}
		}
	}
	for b := range behaviors {
		for _, sub := range []bool{false, true} {
			got, err := x.Discover(ctx, b, sub)
			if err != nil {
				return fmt.Errorf("Discover(%q, %v): %w", b, sub, err)
			}
			var want []string
			for _, e := range ents {
				if e.ID.Role == exchange.RoleAgent && e.Status == exchange.StatusActive && e.Behavior.Matches(b, sub) {
					want = append(want, e.ID.String())
				}
			}
			gotS := make([]string, len(got))
			for i, id := range got {
				gotS[i] = id.String()
			}
			slices.Sort(want)
			slices.Sort(gotS)
			if !slices.Equal(gotS, want) {
				return fmt.Errorf("Discover(%q, %v) = %v; Entities says the active ones are %v", b, sub, gotS, want)
			}
		}
	}
	for _, id := range dead {
		st, err := x.Status(ctx, id)
		if err != nil {
			return fmt.Errorf("Status(%v): %w", id, err)
		}
		if st == exchange.StatusActive {
			return fmt.Errorf("mailbox %v of a dead process reads active", id)
		}
		if e, ok := byID[id]; ok && e.Status == exchange.StatusActive {
			return fmt.Errorf("Entities shows mailbox %v of a dead process active", id)
		}
	}
	return nil
}

// ---- process measurements ----

// procStat is what the soak measures of a process.
type procStat struct {
	RSSKiB  int64 `json:"rss_kib"`
	Threads int   `json:"threads"`
	Maps    int   `json:"maps"`
	// ShmMaps counts the mappings of files under one exchange root
	// (segments): a leak of those is a leak of shmex's, whatever the Go
	// heap does, and other tests running in the process do not count.
	ShmMaps int `json:"shm_maps"`
}

// readProc reads the resident memory and the mapping count of pid, and
// how many of its mappings are of files under root.
func readProc(pid int, root string) (procStat, error) {
	var ps procStat
	status, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return ps, err
	}
	for _, line := range strings.Split(string(status), "\n") {
		if rest, ok := strings.CutPrefix(line, "VmRSS:"); ok {
			f := strings.Fields(rest)
			if len(f) > 0 {
				ps.RSSKiB, _ = strconv.ParseInt(f[0], 10, 64)
			}
		}
		if rest, ok := strings.CutPrefix(line, "Threads:"); ok {
			ps.Threads, _ = strconv.Atoi(strings.TrimSpace(rest))
		}
	}
	maps, err := os.ReadFile(fmt.Sprintf("/proc/%d/maps", pid))
	if err != nil {
		return ps, err
	}
	ps.Maps = bytes.Count(maps, []byte{'\n'})
	ps.ShmMaps = bytes.Count(maps, []byte(" "+root+"/"))
	return ps, nil
}

// ---- results ----

// report logs a result as a machine-readable line ("systest-result {...}")
// and appends it to $SHMEX_SYSTEST_REPORT when set.
func report(t testing.TB, v map[string]any) {
	t.Helper()
	v["mode"] = mode()
	v["load_scale"] = fmt.Sprintf("%.1f", loadScale())
	v["at"] = time.Now().UTC().Format(time.RFC3339)
	b, err := json.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("systest-result %s", b)
	if path := os.Getenv(envReport); path != "" {
		f, err := os.OpenFile(path, os.O_CREATE|os.O_APPEND|os.O_WRONLY, 0o644)
		if err != nil {
			t.Errorf("%s: %v", envReport, err)
			return
		}
		defer f.Close()
		fmt.Fprintf(f, "%s\n", b)
	}
}

// within polls cond until it is true or d passes, and reports whether it
// became true; it returns how long it took.
func within(d time.Duration, cond func() bool) (time.Duration, bool) {
	start := time.Now()
	for {
		if cond() {
			return time.Since(start), true
		}
		if time.Since(start) > d {
			return time.Since(start), false
		}
		time.Sleep(2 * time.Millisecond)
	}
}

// errorsOf joins a list of failures into one error.
func errorsOf(what string, errs []string) error {
	const show = 10
	more := ""
	if len(errs) > show {
		more = fmt.Sprintf(" (and %d more)", len(errs)-show)
		errs = errs[:show]
	}
	return fmt.Errorf("%s: %q%s", what, errs, more)
}
