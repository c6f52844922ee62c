package exchange_test

import (
	"testing"

	"github.com/shmex/shmex/internal/childproc"
)

// TestMain is the one TestMain of the exchange test binary (for package
// exchange and exchange_test alike): it dispatches to a child role when the
// binary is re-run as a test child (see internal/childproc), and otherwise
// runs the tests. Every role of the package is listed here; their bodies
// live next to the tests that start them.
func TestMain(m *testing.M) {
	childproc.Main(m, map[string]childproc.Role{
		"peer":         peerChild,        // TestSHMProcessesDiscoverAndCall
		"owner":        ownerChild,       // TestSHMProcessDeadOwner
		"sender":       senderChild,      // TestSHMProcessKilledSender
		"closer":       closerChild,      // TestSHMCloseAfterSendTimeout (shm_close_test.go)
		"receiver":     receiverChild,    // TestSHMProcessReopen (shm_reopen_test.go)
		"mapper":       mapperChild,      // TestSHMProcessSenderUnmaps (shm_leak_test.go)
		"registrar":    registrarChild,   // TestSHMProcessCloseRemovesRings (shm_leak_test.go)
		"victim":       victimChild,      // TestSHMProcessTruncation (shm_fault_test.go)
		"waiter":       waiterChild,      // TestWaitAcrossProcesses (wait_test.go)
		"registrar-of": registrarOfChild, // TestWaitAcrossProcesses (wait_test.go)
	})
}
