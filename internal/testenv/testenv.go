// Package testenv decides what a test does when a tool it needs is
// missing: skip with the reason on a developer's machine, fail under CI
// (CI=true), where .ci/run installs every such tool.
package testenv

import (
	"os"
	"os/exec"
	"testing"
)

// InCI reports whether the tests run under CI (the environment variable CI
// is "true"), where a missing tool is a failure, not a skip.
func InCI() bool { return os.Getenv("CI") == "true" }

// Missing ends the test for want of what, for the reason why: a skip, or
// under CI a failure (.ci/run installs what the tests need, so a skip there
// would hide a test that never ran).
func Missing(t testing.TB, what, why string) {
	t.Helper()
	if InCI() {
		t.Fatalf("%s is missing under CI=true (.ci/run must install it): %s", what, why)
	}
	t.Skipf("skipped: %s is missing: %s (.ci/run installs it; under CI=true this fails)", what, why)
}

// LookPath returns the path of the program name, or ends the test with
// Missing when it is not on PATH.
func LookPath(t testing.TB, name string) string {
	t.Helper()
	p, err := exec.LookPath(name)
	if err != nil {
		Missing(t, name, err.Error())
	}
	return p
}
