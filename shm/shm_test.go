package shm_test

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"sync/atomic"
	"testing"
	"time"
	"unsafe"

	"github.com/shmex/shmex/internal/childproc"
	"github.com/shmex/shmex/shm"
)

func TestMain(m *testing.M) {
	childproc.Main(m, map[string]childproc.Role{
		"futex-waiter": futexWaiter,
		"holder":       lifeHolder,
		"creator":      stuckCreator,
	})
}

// testDir returns a fresh exchange directory under a private root.
func testDir(t testing.TB) string {
	t.Helper()
	root := filepath.Join(t.TempDir(), "root")
	dir := filepath.Join(root, "x")
	if err := shm.EnsureDir(dir); err != nil {
		t.Fatal(err)
	}
	return dir
}

func TestCreateOpen(t *testing.T) {
	dir := testDir(t)
	path := filepath.Join(dir, "seg")
	s, err := shm.Create(path, shm.KindScratch, 1<<16, func(body []byte) error {
		copy(body, "hello")
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	if got := len(s.Body()); got != 1<<16-shm.HeaderSize {
		t.Fatalf("body %d bytes", got)
	}
	fi, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	if fi.Mode().Perm() != 0o600 {
		t.Fatalf("mode %v, want 0600", fi.Mode().Perm())
	}
	o, err := shm.Open(path, shm.KindScratch)
	if err != nil {
		t.Fatal(err)
	}
	defer o.Close()
	if string(o.Body()[:5]) != "hello" {
		t.Fatalf("body %q", o.Body()[:5])
	}
	o.Body()[5] = '!'
	if s.Body()[5] != '!' {
		t.Fatal("two mappings of one segment do not share memory")
	}
	info := o.Info()
	if info.Kind != shm.KindScratch || info.Size != 1<<16 || info.PID != uint32(os.Getpid()) {
		t.Fatalf("info %+v", info)
	}
	if _, err := shm.Create(path, shm.KindScratch, 1<<16, nil); !errors.Is(err, shm.ErrExist) {
		t.Fatalf("second create: %v, want ErrExist", err)
	}
	if _, err := shm.Open(path, shm.KindRing); !errors.Is(err, shm.ErrWrongKind) {
		t.Fatalf("open as ring: %v, want ErrWrongKind", err)
	}
	ents, _ := os.ReadDir(dir)
	for _, e := range ents {
		if shm.IsTemp(e.Name()) {
			t.Fatalf("temporary file left behind: %s", e.Name())
		}
	}
	if err := s.Remove(); err != nil {
		t.Fatal(err)
	}
	// Removed but mapped: both views stay valid.
	s.Body()[6] = 'x'
	if o.Body()[6] != 'x' {
		t.Fatal("removed segment lost sharing")
	}
	if _, err := shm.Open(path, shm.KindScratch); !errors.Is(err, shm.ErrNotExist) {
		t.Fatalf("open removed: %v, want ErrNotExist", err)
	}
	if err := s.Close(); err != nil || s.Body() != nil {
		t.Fatalf("close: %v", err)
	}
	if err := s.Close(); err != nil {
		t.Fatalf("second close: %v", err)
	}
}

func TestOpenReadOnly(t *testing.T) {
	dir := testDir(t)
	path := filepath.Join(dir, "ro")
	s, err := shm.Create(path, shm.KindArena, 8192, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	r, err := shm.Open(path, shm.KindArena, shm.ReadOnly())
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	s.Body()[0] = 42
	if !r.ReadOnly() || r.Body()[0] != 42 {
		t.Fatal("read-only view does not see writes")
	}
}

// corrupt creates a valid segment, applies f to its raw file bytes, and
// returns the error of opening it.
func corrupt(t *testing.T, f func(b []byte) []byte) error {
	t.Helper()
	dir := testDir(t)
	path := filepath.Join(dir, "c")
	s, err := shm.Create(path, shm.KindRing, 4096, nil)
	if err != nil {
		t.Fatal(err)
	}
	s.Close()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, f(b), 0o600); err != nil {
		t.Fatal(err)
	}
	_, err = shm.Open(path, shm.KindRing)
	return err
}

func TestOpenValidates(t *testing.T) {
	cases := []struct {
		name string
		f    func([]byte) []byte
		want error
	}{
		{"magic", func(b []byte) []byte { b[0] = 'X'; return b }, shm.ErrBadMagic},
		{"version", func(b []byte) []byte { b[8] = 99; return b }, shm.ErrVersion},
		{"checksum", func(b []byte) []byte { b[13] ^= 1; return b }, shm.ErrChecksum},
		{"short", func(b []byte) []byte { return b[:100] }, shm.ErrTruncated},
		{"truncated", func(b []byte) []byte { return b[:2048] }, shm.ErrTruncated},
		{"longer", func(b []byte) []byte { return append(b, make([]byte, 4096)...) }, shm.ErrBadSize},
		{"empty", func(b []byte) []byte { return nil }, shm.ErrTruncated},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			if err := corrupt(t, c.f); !errors.Is(err, c.want) {
				t.Fatalf("got %v, want %v", err, c.want)
			}
		})
	}
}

func TestOpenRefusesOthers(t *testing.T) {
	dir := testDir(t)
	path := filepath.Join(dir, "p")
	s, err := shm.Create(path, shm.KindRing, 4096, nil)
	if err != nil {
		t.Fatal(err)
	}
	s.Close()
	os.Chmod(path, 0o644)
	if _, err := shm.Open(path, shm.KindRing); !errors.Is(err, shm.ErrNotOwner) {
		t.Fatalf("world-readable segment: %v, want ErrNotOwner", err)
	}
	os.Chmod(path, 0o600)
	link := filepath.Join(dir, "link")
	os.Symlink(path, link)
	if _, err := shm.Open(link, shm.KindRing); !errors.Is(err, shm.ErrNotRegular) {
		t.Fatalf("symlink: %v, want ErrNotRegular", err)
	}
	if os.Geteuid() == 0 {
		// root can chown: a segment of another user is refused.
		os.Chown(path, 12345, 12345)
		if _, err := shm.Open(path, shm.KindRing); !errors.Is(err, shm.ErrNotOwner) {
			t.Fatalf("foreign segment: %v, want ErrNotOwner", err)
		}
	}
	os.Chmod(dir, 0o755)
	if err := shm.CheckDir(dir); !errors.Is(err, shm.ErrNotOwner) {
		t.Fatalf("open directory: %v, want ErrNotOwner", err)
	}
	if _, err := shm.Create(filepath.Join(dir, "q"), shm.KindRing, 4096, nil); !errors.Is(err, shm.ErrNotOwner) {
		t.Fatalf("create in open directory: %v, want ErrNotOwner", err)
	}
}

func TestCreateNoSpace(t *testing.T) {
	dir := testDir(t)
	// Far more than any machine's tmpfs or disk: fallocate must refuse it
	// at create time.
	_, err := shm.Create(filepath.Join(dir, "huge"), shm.KindArena, 1<<40, nil)
	if !errors.Is(err, shm.ErrNoSpace) {
		t.Fatalf("got %v, want ErrNoSpace", err)
	}
	ents, _ := os.ReadDir(dir)
	if len(ents) != 0 {
		t.Fatalf("failed create left %d files", len(ents))
	}
}

func TestCreateBadInput(t *testing.T) {
	dir := testDir(t)
	if _, err := shm.Create(filepath.Join(dir, "s"), shm.KindRing, 10, nil); !errors.Is(err, shm.ErrBadSize) {
		t.Fatalf("tiny: %v", err)
	}
	for _, name := range []string{"", ".hidden", "a/b", "sp ace", string(make([]byte, 300))} {
		if err := shm.ValidName(name); !errors.Is(err, shm.ErrBadName) {
			t.Fatalf("ValidName(%q) = %v", name, err)
		}
	}
	initErr := errors.New("init failed")
	if _, err := shm.Create(filepath.Join(dir, "s"), shm.KindRing, 4096, func([]byte) error { return initErr }); !errors.Is(err, initErr) {
		t.Fatalf("init error: %v", err)
	}
	if ents, _ := os.ReadDir(dir); len(ents) != 0 {
		t.Fatalf("failed init left %d files", len(ents))
	}
}

func TestParseHeaderNeverPanics(t *testing.T) {
	for n := 0; n < 600; n += 7 {
		b := make([]byte, n)
		for i := range b {
			b[i] = byte(i * 31)
		}
		shm.ParseHeader(b)
	}
}

func word32(b []byte) *uint32 { return (*uint32)(unsafe.Pointer(&b[0])) }

func TestFutexTimeout(t *testing.T) {
	var w uint32
	start := time.Now()
	if err := shm.Wait(&w, 0, 20*time.Millisecond); !errors.Is(err, shm.ErrTimedOut) {
		t.Fatalf("got %v, want ErrTimedOut", err)
	}
	if time.Since(start) < 15*time.Millisecond {
		t.Fatal("returned before the timeout")
	}
	// A value that differs returns at once.
	if err := shm.Wait(&w, 1, time.Hour); err != nil {
		t.Fatal(err)
	}
}

func TestDoorbellContext(t *testing.T) {
	var w uint32
	d := shm.NewDoorbell(&w)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Millisecond)
	defer cancel()
	if err := d.Wait(ctx, d.Seq(), 0); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("deadline: %v", err)
	}
	if err := d.Wait(context.Background(), d.Seq(), 10*time.Millisecond); !errors.Is(err, shm.ErrTimedOut) {
		t.Fatalf("timeout: %v", err)
	}
	// Cancellation wakes a sleeper promptly, however often it races.
	for i := 0; i < 200; i++ {
		ctx, cancel := context.WithCancel(context.Background())
		errc := make(chan error, 1)
		seq := d.Seq()
		go func() { errc <- d.Wait(ctx, seq, 0) }()
		if i%2 == 0 {
			time.Sleep(time.Duration(i%5) * 10 * time.Microsecond)
		}
		cancel()
		select {
		case err := <-errc:
			if !errors.Is(err, context.Canceled) && err != nil {
				t.Fatalf("cancel: %v", err)
			}
		case <-time.After(5 * time.Second):
			t.Fatal("cancelled waiter still asleep after 5s")
		}
	}
	// A ring wakes a sleeper.
	seq := d.Seq()
	errc := make(chan error, 1)
	go func() { errc <- d.Wait(context.Background(), seq, 10*time.Second) }()
	time.Sleep(time.Millisecond)
	d.Ring(1)
	select {
	case err := <-errc:
		if err != nil {
			t.Fatal(err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("rung waiter still asleep")
	}
}

// futexWaiter maps the segment in args[0], then repeatedly waits for word 0
// to reach i and sets word 1 to i, waking the parent, for args[1] rounds.
func futexWaiter(args []string) int {
	s, err := shm.Open(args[0], shm.KindScratch)
	if err != nil {
		fmt.Println("error", err)
		return 1
	}
	n, _ := strconv.Atoi(args[1])
	req, resp := word32(s.Body()), word32(s.Body()[shm.CacheLine:])
	fmt.Println("ready")
	for i := uint32(1); i <= uint32(n); i++ {
		deadline := time.Now().Add(10 * time.Second)
		for atomic.LoadUint32(req) != i {
			if time.Now().After(deadline) {
				fmt.Println("error timeout")
				return 1
			}
			shm.Wait(req, i-1, time.Second)
		}
		atomic.StoreUint32(resp, i)
		shm.Wake(resp, 1)
	}
	return 0
}

func TestFutexAcrossProcesses(t *testing.T) {
	dir := testDir(t)
	path := filepath.Join(dir, "futex")
	s, err := shm.Create(path, shm.KindScratch, 4096, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	const rounds = 500
	c := childproc.Start(t, "futex-waiter", path, strconv.Itoa(rounds))
	if l, err := c.Line(10 * time.Second); err != nil || l != "ready" {
		t.Fatalf("child: %q %v", l, err)
	}
	req, resp := word32(s.Body()), word32(s.Body()[shm.CacheLine:])
	for i := uint32(1); i <= rounds; i++ {
		atomic.StoreUint32(req, i)
		shm.Wake(req, 1)
		deadline := time.Now().Add(10 * time.Second)
		for atomic.LoadUint32(resp) != i {
			if time.Now().After(deadline) {
				t.Fatalf("round %d: no answer", i)
			}
			shm.Wait(resp, i-1, time.Second)
		}
	}
	if err := c.Wait(10 * time.Second); err != nil {
		t.Fatal(err)
	}
}

// lifeHolder holds a life in args[0], prints its id, and sleeps until killed.
func lifeHolder(args []string) int {
	l, err := shm.HoldLife(args[0])
	if err != nil {
		fmt.Println("error", err)
		return 1
	}
	fmt.Println(l.ID())
	time.Sleep(time.Minute)
	return 0
}

func TestLiveness(t *testing.T) {
	dir := testDir(t)
	me, err := shm.HoldLife(dir)
	if err != nil {
		t.Fatal(err)
	}
	if ok, err := shm.Alive(dir, me.ID()); !ok || err != nil {
		t.Fatalf("own life: %v %v", ok, err)
	}
	if id, ok := shm.ParseLifeName(filepath.Base(me.Path())); !ok || id != me.ID() {
		t.Fatalf("ParseLifeName: %x %v", id, ok)
	}
	for i := 0; i < 5; i++ {
		c := childproc.Start(t, "holder", dir)
		l, err := c.Line(10 * time.Second)
		if err != nil {
			t.Fatal(err)
		}
		id, err := strconv.ParseUint(l, 10, 64)
		if err != nil {
			t.Fatalf("child said %q", l)
		}
		if ok, err := shm.Alive(dir, id); !ok || err != nil {
			t.Fatalf("live child reported dead: %v", err)
		}
		c.Kill()
		if ok, err := shm.Alive(dir, id); ok || err != nil {
			t.Fatalf("SIGKILLed child reported alive: %v", err)
		}
		// The stale lock file stays until collected; it still reads dead.
		if _, err := os.Stat(shm.LifePath(dir, id)); err != nil {
			t.Fatalf("lock file of dead child: %v", err)
		}
	}
	if err := me.Close(); err != nil {
		t.Fatal(err)
	}
	if ok, _ := shm.Alive(dir, me.ID()); ok {
		t.Fatal("closed life reported alive")
	}
	if ok, err := shm.Alive(dir, 12345); ok || err != nil {
		t.Fatalf("unknown id: %v %v", ok, err)
	}
}

func TestHeaderLayout(t *testing.T) {
	dir := testDir(t)
	s, err := shm.Create(filepath.Join(dir, "l"), shm.KindRegistry, 8192, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	b := s.Bytes()
	if string(b[:8]) != "SHMEXSEG" || binary.LittleEndian.Uint32(b[12:]) != uint32(shm.KindRegistry) ||
		binary.LittleEndian.Uint64(b[16:]) != 8192 {
		t.Fatalf("header bytes % x", b[:48])
	}
	if uintptr(unsafe.Pointer(&s.Body()[0]))%shm.CacheLine != 0 {
		t.Fatal("body not cache-line aligned")
	}
}
