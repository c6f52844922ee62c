package systest

import (
	"log/slog"
	"os"
	"testing"

	"github.com/shmex/shmex/internal/childproc"
)

// TestMain dispatches to a child role when the test binary is re-run as a
// child (see internal/childproc), and otherwise runs the tests. The roles'
// bodies live next to the tests that start them.
func TestMain(m *testing.M) {
	if os.Getenv("SHMEX_SYSTEST_LOG") == "" {
		// The agent layer logs through slog's default; the campaigns make
		// it log the deaths they cause.
		slog.SetDefault(slog.New(slog.DiscardHandler))
	}
	childproc.Main(m, map[string]childproc.Role{
		"sender":   senderChild,   // TestCrashSender
		"agent":    agentChild,    // TestCrashAgent
		"client":   clientChild,   // TestCrashClient
		"owner":    ownerChild,    // TestCrashArenaOwner
		"reader":   readerChild,   // TestCrashReader
		"registry": registryChild, // TestCrashRegistry
		"soak":     soakChild,     // TestSoak
		"damaged":  damagedChild,  // TestDamagedFiles
		"creator":  creatorChild,  // TestGCRemovesDeadCreatorsTemp
		"orphan":   orphanChild,   // TestGCRemovesOrphanRing
		"register": registerChild, // TestRegisterAfterCreate
	})
}
