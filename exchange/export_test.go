package exchange

import (
	"testing"
	"time"
)

// MappedRings returns how many mailbox ring segments x holds mapped: its
// cached destinations and the retired ones it has not unmapped yet. Tests
// use it to see that a long-lived handle does not accumulate mappings.
func (x *SHM) MappedRings() int {
	x.destMu.Lock()
	defer x.destMu.Unlock()
	n := len(x.retired)
	x.dests.Range(func(_, _ any) bool { n++; return true })
	return n
}

// Within runs f in a goroutine and fails the test if f has not returned
// after d: a Close or a goroutine that hangs fails instead of holding the
// test until its timeout.
func Within(t *testing.T, d time.Duration, what string, f func()) {
	t.Helper()
	done := make(chan struct{})
	go func() {
		defer close(done)
		f()
	}()
	select {
	case <-done:
	case <-time.After(d):
		t.Fatalf("%s did not return within %v", what, d)
	}
}

// MailboxIdle returns the idle strategy the receiver of mb, a mailbox
// client of an SHM handle, waits with (false for another client).
func MailboxIdle(mb Mailbox) (IdleStrategy, bool) {
	m, ok := mb.(*shmMailbox)
	if !ok {
		return IdleStrategy{}, false
	}
	return m.c.Idle(), true
}

// SetDeadOwnerHook makes Status (and whatever asks a mailbox's status),
// and a send that found the owner of its mailbox dead, call f after they
// found the owner of an active mailbox dead, before they terminate the
// mailbox, until the test ends.
func SetDeadOwnerHook(t *testing.T, f func(id EntityID)) {
	testHookDeadOwner.Store(&f)
	t.Cleanup(func() { testHookDeadOwner.Store(nil) })
}

// RingPath returns the path of the ring of the current incarnation of
// id's mailbox in x's directory.
func (x *SHM) RingPath(id EntityID) string {
	inc := uint32(0)
	if i, s := x.lookup(id); i >= 0 {
		inc = s.inc()
	}
	return ringPath(x.dir, id.UUID, inc)
}
