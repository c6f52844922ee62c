package ring

import (
	"encoding/binary"
	"fmt"
	"hash/crc32"
	"math/bits"
	"sync/atomic"
	"time"
	"unsafe"

	"github.com/shmex/shmex/shm"
)

var castagnoli = crc32.MakeTable(crc32.Castagnoli)

// Config is the geometry of a new ring.
type Config struct {
	// Capacity is the size of the data area: a power of two between
	// MinCapacity and MaxCapacity.
	Capacity int
	// MaxRecord is the largest record, header included: at most
	// Capacity/2, default Capacity/8.
	MaxRecord int
	// Slots is the number of producer slots (producers that may be
	// attached at once, across all processes), default 64.
	Slots int
}

func (c *Config) fill() error {
	if c.Slots == 0 {
		c.Slots = 64
	}
	if c.MaxRecord == 0 {
		c.MaxRecord = c.Capacity / 8
	}
	switch {
	case c.Capacity < MinCapacity || c.Capacity > MaxCapacity || bits.OnesCount(uint(c.Capacity)) != 1:
		return fmt.Errorf("%w: capacity %d is not a power of two in [%d, %d]", ErrGeometry, c.Capacity, MinCapacity, MaxCapacity)
	case c.MaxRecord < HeaderLen+RecordAlign || c.MaxRecord > c.Capacity/2:
		return fmt.Errorf("%w: max record %d not in [%d, capacity/2]", ErrGeometry, c.MaxRecord, HeaderLen+RecordAlign)
	case c.Slots < 1 || c.Slots > MaxSlots:
		return fmt.Errorf("%w: %d slots not in [1, %d]", ErrGeometry, c.Slots, MaxSlots)
	}
	return nil
}

// Options are the process-local settings of a ring view: they are not stored
// in shared memory, and each process attaching a ring chooses its own.
type Options struct {
	// Alive reports whether the process with the given owner id is alive
	// (see shm.Alive). With it, the consumer turns a record left claimed by
	// a dead producer into padding as soon as it notices; without it, the
	// owner of a stuck record is unknown and only UnknownOwnerTimeout
	// applies. It must be cheap or cached; it is called only for stuck
	// records and when producer slots run out.
	Alive func(owner uint64) bool

	// StuckAfter is how long a record must stay claimed-but-uncommitted
	// before the consumer asks Alive about its producer. Default 1ms.
	StuckAfter time.Duration

	// UnknownOwnerTimeout is how long a record whose producer cannot be
	// told alive or dead stays stuck before the consumer pads it anyway.
	// Default 1s. A live producer stalled for longer than this would lose
	// its record, so it must be far longer than any scheduling delay.
	UnknownOwnerTimeout time.Duration
}

func (o *Options) fill() {
	if o.StuckAfter <= 0 {
		o.StuckAfter = time.Millisecond
	}
	if o.UnknownOwnerTimeout <= 0 {
		o.UnknownOwnerTimeout = time.Second
	}
}

// Ring is one process's view of a many-to-one ring laid out in a byte region
// (normally the body of a shared-memory segment). Any number of Producers, in
// any number of processes, write records; one Consumer reads them. A Ring
// value is safe for concurrent use; Producers and the Consumer are not.
type Ring struct {
	region    []byte
	data      []byte
	dataPtr   unsafe.Pointer
	capacity  uint64
	mask      uint64
	maxRecord int
	slots     int
	opts      Options

	tail         *uint64
	head         *uint64
	consumer     *uint64
	consumed     *uint64
	recvWaiting  *uint32
	recvBell     shm.Doorbell
	spaceWaiters *uint32
	spaceBell    shm.Doorbell
	spaceWanted  *uint64
	recovered    *uint64
	recoveredTO  *uint64
	recoveredB   *uint64
	cc           *consumerCounters // the consumer's counters (counters.go)
}

// New lays out a fresh ring in region (zeroing it) and returns a view of it.
// The region must be 8-byte aligned and at least Size(cfg.Capacity,
// cfg.Slots) bytes.
func New(region []byte, cfg Config, opts Options) (*Ring, error) {
	if err := cfg.fill(); err != nil {
		return nil, err
	}
	need := Size(cfg.Capacity, cfg.Slots)
	if len(region) < need {
		return nil, fmt.Errorf("%w: region of %d bytes, need %d", ErrGeometry, len(region), need)
	}
	if uintptr(unsafe.Pointer(unsafe.SliceData(region)))%8 != 0 {
		return nil, fmt.Errorf("%w: region not 8-byte aligned", ErrGeometry)
	}
	clear(region[:need])
	le := binary.LittleEndian
	copy(region[offMagic:], magic[:])
	le.PutUint32(region[offVersion:], Version)
	le.PutUint32(region[offSlots:], uint32(cfg.Slots))
	le.PutUint64(region[offCapacity:], uint64(cfg.Capacity))
	le.PutUint32(region[offMaxRecord:], uint32(cfg.MaxRecord))
	le.PutUint64(region[offDataOffset:], uint64(dataOffset(cfg.Slots)))
	le.PutUint64(region[offRegionSize:], uint64(need))
	le.PutUint32(region[offChecksum:], crc32.Checksum(region[:offChecksum], castagnoli))
	r := view(region, cfg.Capacity, cfg.MaxRecord, cfg.Slots, opts)
	for i := 0; i < r.slots; i++ {
		atomic.StoreUint64(r.slotWord(i, slotIntentPos), noIntent)
	}
	return r, nil
}

// Attach returns a view of the ring laid out in region by New, after
// validating its header: magic, version, checksum, and a geometry that fits
// the region. It also checks that the head and tail positions are possible.
func Attach(region []byte, opts Options) (*Ring, error) {
	if len(region) < offSlotTable {
		return nil, fmt.Errorf("%w: region of %d bytes", ErrGeometry, len(region))
	}
	if uintptr(unsafe.Pointer(unsafe.SliceData(region)))%8 != 0 {
		return nil, fmt.Errorf("%w: region not 8-byte aligned", ErrGeometry)
	}
	if [8]byte(region[offMagic:offMagic+8]) != magic {
		return nil, ErrNotRing
	}
	le := binary.LittleEndian
	if v := le.Uint32(region[offVersion:]); v != Version {
		return nil, fmt.Errorf("%w: version %d, want %d", ErrVersion, v, Version)
	}
	if le.Uint32(region[offChecksum:]) != crc32.Checksum(region[:offChecksum], castagnoli) {
		return nil, ErrChecksum
	}
	capacity := le.Uint64(region[offCapacity:])
	maxRecord := uint64(le.Uint32(region[offMaxRecord:]))
	slots := uint64(le.Uint32(region[offSlots:]))
	dataOff := le.Uint64(region[offDataOffset:])
	size := le.Uint64(region[offRegionSize:])
	cfg := Config{Capacity: int(min(capacity, MaxCapacity+1)), MaxRecord: int(min(maxRecord, 1<<31)), Slots: int(min(slots, MaxSlots+1))}
	if err := cfg.fill(); err != nil || capacity > MaxCapacity || slots == 0 || maxRecord == 0 {
		return nil, fmt.Errorf("%w: capacity %d, max record %d, slots %d", ErrGeometry, capacity, maxRecord, slots)
	}
	if dataOff != uint64(dataOffset(cfg.Slots)) || size != dataOff+capacity || size > uint64(len(region)) {
		return nil, fmt.Errorf("%w: data at %d, size %d, region %d", ErrGeometry, dataOff, size, len(region))
	}
	r := view(region, cfg.Capacity, cfg.MaxRecord, cfg.Slots, opts)
	head, tail := atomic.LoadUint64(r.head), atomic.LoadUint64(r.tail)&^closedBit
	if head > tail || tail-head > r.capacity || head%RecordAlign != 0 || tail%RecordAlign != 0 {
		return nil, fmt.Errorf("%w: head %d, tail %d", ErrCorrupt, head, tail)
	}
	return r, nil
}

func view(region []byte, capacity, maxRecord, slots int, opts Options) *Ring {
	opts.fill()
	off := dataOffset(slots)
	r := &Ring{
		region:    region[:off+capacity],
		data:      region[off : off+capacity],
		capacity:  uint64(capacity),
		mask:      uint64(capacity - 1),
		maxRecord: maxRecord,
		slots:     slots,
		opts:      opts,
	}
	r.dataPtr = unsafe.Pointer(unsafe.SliceData(r.data))
	r.tail = r.word64(offTail)
	r.head = r.word64(offHead)
	r.consumer = r.word64(offConsumer)
	r.consumed = r.word64(offConsumed)
	r.recvWaiting = r.word32(offRecvWaiting)
	r.recvBell = shm.NewDoorbell(r.word32(offRecvBell))
	r.spaceWaiters = r.word32(offSpaceWaiters)
	r.spaceBell = shm.NewDoorbell(r.word32(offSpaceBell))
	r.spaceWanted = r.word64(offSpaceWanted)
	r.recovered = r.word64(offRecovered)
	r.recoveredTO = r.word64(offRecoveredTimeout)
	r.recoveredB = r.word64(offRecoveredBytes)
	r.cc = (*consumerCounters)(unsafe.Pointer(r.word64(offReceived)))
	return r
}

func (r *Ring) word64(off int) *uint64 { return (*uint64)(unsafe.Pointer(&r.region[off])) }
func (r *Ring) word32(off int) *uint32 { return (*uint32)(unsafe.Pointer(&r.region[off])) }

func (r *Ring) slotWord(i, field int) *uint64 {
	return r.word64(offSlotTable + i*SlotSize + field)
}

// header returns the record header word at data index idx (idx < capacity,
// a multiple of RecordAlign).
func (r *Ring) header(idx uint64) *uint64 {
	return (*uint64)(unsafe.Add(r.dataPtr, idx))
}

// Capacity returns the size of the data area in bytes.
func (r *Ring) Capacity() int { return int(r.capacity) }

// MaxPayload returns the largest payload a record can carry.
func (r *Ring) MaxPayload() int { return r.maxRecord - HeaderLen }

// Close closes the ring: every later claim fails with ErrClosed, claims that
// succeeded before may still commit, and the consumer reads everything
// committed before it gets ErrClosed. Sleepers are woken. Close is idempotent
// and may be called by any process.
func (r *Ring) Close() error {
	for {
		t := atomic.LoadUint64(r.tail)
		if t&closedBit != 0 || atomic.CompareAndSwapUint64(r.tail, t, t|closedBit) {
			break
		}
	}
	r.recvBell.Ring(1 << 30)
	r.spaceBell.Ring(1 << 30)
	return nil
}

// Closed reports whether the ring is closed.
func (r *Ring) Closed() bool { return atomic.LoadUint64(r.tail)&closedBit != 0 }

// Stats is a snapshot of a ring's positions and counters.
type Stats struct {
	Capacity           int    // data area bytes
	MaxPayload         int    // largest payload of a record
	Head               uint64 // head published to producers (the consumer may have read further: Consumed)
	Consumed           uint64 // position the consumer has read up to
	Tail               uint64 // claim position
	Closed             bool   // closed flag
	Consumer           uint64 // owner id of the attached consumer, 0 = none
	Recovered          uint64 // stuck records of dead producers turned into padding
	RecoveredByTimeout uint64 // stuck records of unknown producers padded after a timeout
	RecoveredBytes     uint64 // bytes turned into padding by recovery
	Producers          int    // producer slots in use
	Slots              int    // producer slots in all
	Counters                  // cumulative counts (counters.go)
}

// Depth returns the bytes claimed but not yet read by the consumer
// (records, their headers and padding).
func (s Stats) Depth() uint64 {
	if s.Tail < s.Consumed {
		return 0 // a snapshot of words read one after the other
	}
	return s.Tail - s.Consumed
}

// Stats returns a snapshot of the ring's positions and counters. It only
// reads the ring: any process that maps it may call it, at any time, also
// on a read-only mapping.
func (r *Ring) Stats() Stats {
	s := Stats{
		Capacity:           int(r.capacity),
		MaxPayload:         r.maxRecord - HeaderLen,
		Head:               atomic.LoadUint64(r.head),
		Consumed:           atomic.LoadUint64(r.consumed),
		Consumer:           atomic.LoadUint64(r.consumer),
		Recovered:          atomic.LoadUint64(r.recovered),
		RecoveredByTimeout: atomic.LoadUint64(r.recoveredTO),
		RecoveredBytes:     atomic.LoadUint64(r.recoveredB),
		Slots:              r.slots,
		Counters:           r.counters(),
	}
	t := atomic.LoadUint64(r.tail)
	s.Tail, s.Closed = t&^closedBit, t&closedBit != 0
	for i := 0; i < r.slots; i++ {
		if atomic.LoadUint64(r.slotWord(i, slotOwner)) != 0 {
			s.Producers++
		}
	}
	return s
}

// aliveKnown asks Options.Alive about owner; known is false when the owner
// cannot be known (no Alive, or owner 0), and alive is then true.
func (r *Ring) aliveKnown(owner uint64) (alive, known bool) {
	if r.opts.Alive == nil || owner == 0 {
		return true, false
	}
	return r.opts.Alive(owner), true
}
