package ring

import "errors"

var (
	// ErrClosed means the ring was closed: no record can be written, and a
	// consumer gets it once everything committed before the close is read.
	ErrClosed = errors.New("ring: closed")

	// ErrFull means there was no space for the record before the context
	// was done (or at once, for TryClaim). It wraps the context's error.
	ErrFull = errors.New("ring: full")

	// ErrTooLarge means the record is larger than the ring's maximum record.
	ErrTooLarge = errors.New("ring: record too large")

	// ErrBadType means a record type is negative (negative types are
	// reserved for the ring itself).
	ErrBadType = errors.New("ring: bad record type")

	// ErrNotRing means the region does not start with a ring header.
	ErrNotRing = errors.New("ring: not a ring (bad magic)")

	// ErrVersion means the ring was laid out by another version.
	ErrVersion = errors.New("ring: layout version mismatch")

	// ErrChecksum means the ring header's checksum does not match.
	ErrChecksum = errors.New("ring: header checksum mismatch")

	// ErrGeometry means the header's sizes are out of range or do not fit
	// the region, or the region is misaligned.
	ErrGeometry = errors.New("ring: bad geometry")

	// ErrCorrupt means the ring's shared state (positions or a record
	// header) is impossible: the ring was written by something that does
	// not follow the protocol. No record past the corruption is delivered.
	ErrCorrupt = errors.New("ring: corrupt")

	// ErrNoSlot means every producer slot is held by a live producer.
	ErrNoSlot = errors.New("ring: no free producer slot")

	// ErrBusy means the ring already has a consumer.
	ErrBusy = errors.New("ring: consumer already attached")

	// ErrInterrupted means Consumer.Interrupt stopped a Receive.
	ErrInterrupted = errors.New("ring: receive interrupted")

	// ErrBadOwner means an owner id of zero was given.
	ErrBadOwner = errors.New("ring: owner id must not be zero")
)
