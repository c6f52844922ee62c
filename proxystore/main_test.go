package proxystore

import (
	"testing"

	"github.com/shmex/shmex/internal/childproc"
)

// roles are the child-process roles of the package's test binary (see
// internal/childproc). Each test file adds its own from an init function:
//
//	func init() { roles["my-role"] = myRole }
var roles = map[string]childproc.Role{}

// TestMain is the one TestMain of the package: it runs a child role when
// the test binary is re-run as a test child, and the tests otherwise.
func TestMain(m *testing.M) {
	childproc.Main(m, roles)
}
