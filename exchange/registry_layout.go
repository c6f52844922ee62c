package exchange

// Layout of the registry segment's body (after the shm segment header). The
// registry is the table of mailboxes of a shared-memory exchange. Every
// offset and size is here. Integers are little-endian.
//
//	offset size  field              written
//	0      8     magic "SHMXREGY"   at creation
//	8      4     version            at creation
//	12     4     entries            at creation: capacity of the table
//	16     4     entrySize          at creation
//	20     4     reserved
//	24     4     checksum           at creation: CRC-32C of bytes [0, 24)
//	128    4     count              under the lock: entries published (atomic)
//	136    8     generation         under the lock: bumped by every change (atomic)
//	256    ...   entries            entries × entrySize
//
// An entry (regEntrySize bytes). Only state, owner and incarnation change
// after the entry is published, and only under the registry lock; the rest
// is immutable and
// covered by the entry checksum, so a reader that finds a bad checksum knows
// the entry is damaged (it is skipped, never trusted).
//
//	0    4    state       regActive or regTerminated (atomic)
//	4    1    role
//	5    1    nameLen     <= regMaxName
//	6    1    behaviorLen <= regMaxBehavior
//	7    1    implCount   number of implemented behavior names
//	8    16   uuid
//	24   8    owner       liveness id of the process that receives (atomic)
//	32   4    ringCap     data capacity of the mailbox ring
//	36   4    maxRecord   largest ring record
//	40   4    checksum    CRC-32C of bytes [4, 24) and [32, 40) and [48, regEntrySize)
//	44   4    incarnation bumped by Reopen (atomic): the mailbox's ring is
//	                      ring-<uuid> in incarnation 0, ring-<uuid>.<n> in n > 0
//	48   64   name
//	112  64   behavior
//	176  336  implements  implCount × (length byte, name bytes)
//
// Writers (register, terminate, change of owner) serialize on an flock of the
// registry file; the kernel releases it if the writer dies. A registration
// fills entry number count completely and publishes it by storing count+1
// last, so readers (who never lock) never see a half-written entry, and a
// writer killed midway leaves an unpublished entry that the next writer
// overwrites.
const (
	regMagic      = "SHMXREGY"
	regVersion    = 1
	regOffVersion = 8
	regOffEntries = 12
	regOffEntSize = 16
	regOffCheck   = 24
	regOffCount   = 128
	regOffGen     = 136
	regOffTable   = 256

	regEntrySize = 512

	entState     = 0
	entRole      = 4
	entNameLen   = 5
	entBehLen    = 6
	entImplCount = 7
	entUUID      = 8
	entOwner     = 24
	entRingCap   = 32
	entMaxRecord = 36
	entChecksum  = 40
	entInc       = 44
	entName      = 48
	entBehavior  = 112
	entImpl      = 176

	regMaxName     = 64
	regMaxBehavior = 64
	regMaxImpl     = regEntrySize - entImpl

	regActive     = 1
	regTerminated = 2

	// DefaultRegistryCapacity is the default number of mailboxes an
	// exchange can ever register.
	DefaultRegistryCapacity = 4096
)

// registrySize returns the body size of a registry of n entries.
func registrySize(n int) int { return regOffTable + n*regEntrySize }
