package systest

import (
	"context"
	"encoding/hex"
	"os"
	"path/filepath"
	"sync/atomic"
	"testing"
	"time"
	"unsafe"

	"golang.org/x/sys/unix"

	"github.com/shmex/shmex/exchange"
	"github.com/shmex/shmex/shm"
)

// Offsets in a ring segment (after the segment header) of the words the
// lost wake-up involves; ring/descriptor.go has the layout.
const (
	ringOffTail        = 128
	ringOffConsumer    = 256 + 8
	ringOffConsumed    = 256 + 16
	ringOffRecvWaiting = 384
	ringOffRecvBell    = 384 + 4
	ringOffDataOffset  = 32
	ringOffCapacity    = 16
)

// ringWords is a read-write mapping of a mailbox's ring segment, for the
// lost wake-up's test.
type ringWords struct {
	m []byte
}

func mapRing(dir string, id exchange.EntityID) (*ringWords, error) {
	f, err := os.OpenFile(filepath.Join(dir, shm.RingPrefix+hex.EncodeToString(id.UUID[:])), os.O_RDWR, 0)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return nil, err
	}
	m, err := unix.Mmap(int(f.Fd()), 0, int(fi.Size()), unix.PROT_READ|unix.PROT_WRITE, unix.MAP_SHARED)
	if err != nil {
		return nil, err
	}
	return &ringWords{m: m}, nil
}

func (r *ringWords) close() { unix.Munmap(r.m) }

func (r *ringWords) w32(off int) *uint32 {
	return (*uint32)(unsafe.Pointer(&r.m[shm.HeaderSize+off]))
}

func (r *ringWords) w64(off int) *uint64 {
	return (*uint64)(unsafe.Pointer(&r.m[shm.HeaderSize+off]))
}

// lostWakeup reports whether the ring shows a lost wake-up: a receiver
// attached, a committed record at its position, and the flag that makes
// producers ring cleared. A consumer that looked and went to sleep with
// the ring empty sleeps for ever then: the producer that cleared the flag
// (to ring) died before it rang, and later producers do not ring.
func (r *ringWords) lostWakeup() bool {
	if atomic.LoadUint64(r.w64(ringOffConsumer)) == 0 || atomic.LoadUint32(r.w32(ringOffRecvWaiting)) != 0 {
		return false
	}
	capacity := *r.w64(ringOffCapacity)
	data := *r.w64(ringOffDataOffset)
	pos := atomic.LoadUint64(r.w64(ringOffConsumed))
	if pos >= atomic.LoadUint64(r.w64(ringOffTail))&^(1<<63) || capacity == 0 || capacity&(capacity-1) != 0 {
		return false
	}
	off := int(data + pos&(capacity-1))
	if shm.HeaderSize+off+8 > len(r.m) {
		return false
	}
	return int32(atomic.LoadUint32(r.w32(off))) > 0
}

// TestLostWakeupOfDeadProducer: a producer that commits a record to a
// mailbox whose receiver sleeps clears the receiver's waiting flag, then
// rings its doorbell (ring's wakeConsumer). Killed between the two, it
// leaves the receiver asleep with no timeout (it went to sleep with the
// ring empty), and every later producer, seeing the flag clear, commits
// without ringing: the mailbox is wedged for ever. TestCrashSender's kills
// hit that window about once in two thousand. Here the producer's death
// is reproduced at that instruction: the flag is cleared as it clears it,
// then a live sender sends. (Fixed: a parked receiver sleeps
// ring.ParkRecheck at most, then looks at its ring.)
func TestLostWakeupOfDeadProducer(t *testing.T) {
	t.Parallel()
	root := newRoot(t)
	x := openX(t, root, "wakeup", &logSink{})
	ctx, cancel := context.WithTimeout(context.Background(), bound(time.Minute))
	defer cancel()
	me, err := x.RegisterClient(ctx)
	if err != nil {
		t.Fatal(err)
	}
	mb, err := x.Mailbox(ctx, me)
	if err != nil {
		t.Fatal(err)
	}
	defer mb.Close()
	r, err := mapRing(x.Dir(), me)
	if err != nil {
		t.Fatal(err)
	}
	defer r.close()
	got := make(chan error, 1)
	go func() {
		var m exchange.Message
		got <- mb.Recv(ctx, &m)
	}()
	waiting := r.w32(ringOffRecvWaiting)
	if _, ok := within(bound(10*time.Second), func() bool { return atomic.LoadUint32(waiting) == 1 }); !ok {
		t.Fatal("the receiver never went to sleep")
	}
	// The dying producer's half of wakeConsumer: the flag cleared, no ring.
	if !atomic.CompareAndSwapUint32(waiting, 1, 0) {
		t.Fatal("the flag changed under the test")
	}
	if err := x.Send(ctx, exchange.NewActionRequest(me, me, "after", []byte("a live sender"))); err != nil {
		t.Fatal(err)
	}
	select {
	case err := <-got:
		if err != nil {
			t.Fatal(err)
		}
	case <-time.After(bound(stuckBound)):
		t.Fatalf("a message sent by a live process not received within %v: the receiver sleeps on (lost wake-up: %v)", bound(stuckBound), r.lostWakeup())
	}
}
