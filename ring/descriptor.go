package ring

// Layout of a ring region. Every offset and size of the structure is here, so
// the layout reads in one place (compare Agrona's RingBufferDescriptor). All
// integers are little-endian; every word that two processes touch is accessed
// only through sync/atomic, at an 8-byte-aligned address, and words written by
// different parties live on different 128-byte lines (adjacent-line prefetch
// pairs 64-byte lines, so 128 keeps writers apart).
//
//	line  offset  size  field             written by
//	0     0       8     magic "SHMXRING"  New (then read-only)
//	      8       4     version           New
//	      12      4     slots             New: number of producer slots
//	      16      8     capacity          New: data bytes, a power of two
//	      24      4     maxRecord         New: largest record, header included
//	      28      4     reserved
//	      32      8     dataOffset        New: where the data area starts
//	      40      8     regionSize        New: bytes of the region in use
//	      48      4     checksum          New: CRC-32C of bytes [0, 48)
//	1     128     8     tail              producers (CAS); bit 63 = closed
//	2     256     8     head              the consumer: zeroed and handed back to producers
//	      264     8     consumer          owner id of the consumer, 0 = none
//	      272     8     consumed          the consumer: read up to here (head <= consumed <= tail)
//	      280     8     received          the consumer: records handed over (counters.go)
//	      288     8     receivedBytes     the consumer: payload bytes of those records
//	      296     8     sleeps            the consumer: futex waits for records
//	      304     8     spaceWakeups      the consumer: futex wakes of producers waiting for space
//	3     384     4     recvWaiting       consumer sets, a producer clears
//	      388     4     recvBell          doorbell the consumer sleeps on
//	4     512     4     spaceWaiters      producers waiting for space (count)
//	      516     4     spaceBell         doorbell those producers sleep on
//	      520     8     spaceWanted       producers: head position to wake them at (max)
//	5     640     8     recovered         consumer: stuck records of dead producers padded
//	      648     8     recoveredTimeout  consumer: stuck records padded after a timeout
//	      656     8     recoveredBytes    consumer: bytes turned into padding by recovery
//	6     768     ...   slots             slots × SlotSize, one per producer
//	      dataOffset    data area         capacity bytes of records
//
// A producer slot (SlotSize bytes, written only by the producer that owns it,
// read by the consumer when a record is stuck):
//
//	0   8  owner      owner id (liveness id of the producer's process), 0 = free
//	8   8  intentPos  position of the producer's latest claim attempt
//	16  8  intentLen  bytes of that attempt (padding at the wrap included)
//	24  8  sent       records committed through the slot (counters.go)
//	32  8  sentBytes  payload bytes of those records
//	40  8  fullWaits  times a producer of the slot found the ring full
//	48  8  wakeups    futex wakes of the consumer by producers of the slot
//	56  8  reserved
//
// The counters of a slot are cumulative over every producer that held it
// (a slot taken again keeps them): the ring's totals are their sums. They
// sit on the line the producer writes at every claim anyway (intentPos),
// and the consumer's on the line of its consumed word, which it writes at
// every batch: counting adds no cache-line transfer to a message's path.
//
// A record in the data area: an 8-byte header, one 64-bit word so that it is
// read and written atomically, then the payload, padded to RecordAlign:
//
//	0   4  length  int32: header + payload bytes; < 0 while claimed, > 0 once committed
//	4   4  type    int32: the record's type once committed (>= 0, or PaddingType);
//	               the producer's slot index while claimed
//	8   ...        payload
const (
	// HeaderLen is the size of a record header.
	HeaderLen = 8
	// RecordAlign is the alignment of records in the data area.
	RecordAlign = 8
	// PaddingType is the type of padding records, which the consumer skips.
	PaddingType int32 = -1
	// SlotSize is the size of one producer slot.
	SlotSize = 64
	// lineSize separates words written by different parties.
	lineSize = 128

	offMagic      = 0
	offVersion    = 8
	offSlots      = 12
	offCapacity   = 16
	offMaxRecord  = 24
	offDataOffset = 32
	offRegionSize = 40
	offChecksum   = 48

	offTail             = 1 * lineSize
	offHead             = 2 * lineSize
	offConsumer         = 2*lineSize + 8
	offConsumed         = 2*lineSize + 16
	offReceived         = 2*lineSize + 24
	offReceivedBytes    = 2*lineSize + 32
	offSleeps           = 2*lineSize + 40
	offSpaceWakeups     = 2*lineSize + 48
	offRecvWaiting      = 3 * lineSize
	offRecvBell         = 3*lineSize + 4
	offSpaceWaiters     = 4 * lineSize
	offSpaceBell        = 4*lineSize + 4
	offSpaceWanted      = 4*lineSize + 8
	offRecovered        = 5 * lineSize
	offRecoveredTimeout = 5*lineSize + 8
	offRecoveredBytes   = 5*lineSize + 16
	offSlotTable        = 6 * lineSize

	slotOwner     = 0
	slotIntentPos = 8
	slotIntentLen = 16
	slotSent      = 24
	slotSentBytes = 32
	slotFullWaits = 40
	slotWakeups   = 48

	// paddingBits is PaddingType in the type half of a header word.
	paddingBits = uint64(0xFFFFFFFF) << 32

	// closedBit marks the tail of a closed ring: no claim succeeds after it.
	closedBit = uint64(1) << 63

	// noIntent is the intentPos of a slot with no claim attempt.
	noIntent = ^uint64(0)

	// Version is the layout version written by New and required by Attach
	// (4: the counters in the consumer's line and the producer slots).
	Version uint32 = 4

	// MinCapacity and MaxCapacity bound the data area.
	MinCapacity = 1 << 10
	MaxCapacity = 1 << 30
	// MaxSlots bounds the producer slot table.
	MaxSlots = 4096
)

var magic = [8]byte{'S', 'H', 'M', 'X', 'R', 'I', 'N', 'G'}

// dataOffset returns where the data area starts for a slot count.
func dataOffset(slots int) int {
	return align(offSlotTable+slots*SlotSize, lineSize)
}

// Size returns the region size a ring of the given data capacity and number
// of producer slots needs.
func Size(capacity, slots int) int { return dataOffset(slots) + capacity }

func align(n, a int) int { return (n + a - 1) &^ (a - 1) }
