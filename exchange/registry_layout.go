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
//	128    4     count              under the lock: slots in use so far (atomic),
//	                                a high-water mark: no slot at or past it
//	                                holds an entry
//	136    8     generation         under the lock: bumped by every change (atomic)
//	256    ...   entries            entries × entrySize
//
// An entry (regEntrySize bytes). A slot is free, or holds the entry of one
// mailbox; a slot is reused for a new mailbox when no free slot is left,
// the one terminated longest ago first. Only the stamp, the owner and
// terminatedAt change while a slot holds an entry, and only under the
// registry lock; the rest is immutable and covered by the entry checksum, so
// a reader that finds a bad checksum knows the entry is damaged (it is
// skipped, never trusted).
//
//	0    8    stamp        generation, state, incarnation of the slot (atomic;
//	                       see below)
//	8    1    role
//	9    1    nameLen      <= regMaxName
//	10   1    behaviorLen  <= regMaxBehavior
//	11   1    implCount    number of implemented behavior names
//	12   4    checksum     CRC-32C of bytes [8, 12), [16, 32), [40, 48)
//	                       and [56, regEntrySize)
//	16   16   uuid
//	32   8    owner        liveness id of the process that receives (atomic)
//	40   8    creator      liveness id of the process that registered it
//	48   8    terminatedAt registry generation when terminated (atomic):
//	                       orders the terminated slots for reuse
//	56   4    ringCap      data capacity of the mailbox ring
//	60   4    maxRecord    largest ring record
//	64   64   name
//	128  64   behavior
//	192  320  implements   implCount × (length byte, name bytes)
//
// The stamp packs, in one word that a sender loads once per send:
//
//	bits  0-31   incarnation  bumped by Reopen: the mailbox's ring is
//	                          ring-<uuid> in incarnation 0, ring-<uuid>.<n>
//	                          in n > 0
//	bits 32-33   state        regFree, regActive or regTerminated (3 is
//	                          never written: a damaged word)
//	bits 34-63   generation   bumped each time the slot takes a new entry
//
// so that a mapping cached with the stamp it was made under stays usable
// exactly while the stamp is unchanged: a Terminate, a Reopen and the
// reuse of the slot for another mailbox each change it. An id is never
// confused with a later mailbox in the same slot: every lookup by index
// checks the generation it found the id under (it wraps after 2^30 reuses
// of one slot).
//
// Writers (register, terminate, reopen, change of owner) serialize on an
// flock of the registry file; the kernel releases it if the writer dies.
// Readers never lock. A registration fills its slot while the slot's stamp
// says free, with a new generation, and publishes it by storing the active
// stamp, then count if the slot is the next unused one; a reader that
// matched the slot's UUID before a reuse finds the generation changed when
// it checks it after reading what it needs. A writer killed midway leaves
// a slot that says free (or, at count, an unpublished one), which the next
// registration overwrites; Collect removes the ring it may have created.
const (
	regMagic      = "SHMXREGY"
	regVersion    = 2
	regOffVersion = 8
	regOffEntries = 12
	regOffEntSize = 16
	regOffCheck   = 24
	regOffCount   = 128
	regOffGen     = 136
	regOffTable   = 256

	regEntrySize = 512

	entStamp     = 0
	entRole      = 8
	entNameLen   = 9
	entBehLen    = 10
	entImplCount = 11
	entChecksum  = 12
	entUUID      = 16
	entOwner     = 32
	entCreator   = 40
	entTermAt    = 48
	entRingCap   = 56
	entMaxRecord = 60
	entName      = 64
	entBehavior  = 128
	entImpl      = 192

	regMaxName     = 64
	regMaxBehavior = 64
	regMaxImpl     = regEntrySize - entImpl

	// States of a slot (bits 32-33 of the stamp).
	regFree       = 0
	regActive     = 1
	regTerminated = 2

	stampStateShift = 32
	stampGenShift   = 34

	// DefaultRegistryCapacity is the default number of mailboxes an
	// exchange holds at once (terminated ones included, until their slots
	// are needed).
	DefaultRegistryCapacity = 4096
)

// registrySize returns the body size of a registry of n entries.
func registrySize(n int) int { return regOffTable + n*regEntrySize }
