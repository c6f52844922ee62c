package iceoryx

import (
	"testing"

	"github.com/shmex/shmex/internal/testenv"
)

// TestAvailable is the probe: the binding loads where the packages are
// installed, and says why not elsewhere; under CI=true, where .ci/run
// installs them, it must load.
func TestAvailable(t *testing.T) {
	err := Available()
	if err == nil {
		if err := Available(); err != nil { // loaded once, remembered
			t.Fatalf("second Available: %v", err)
		}
		return
	}
	if err.Error() == "" {
		t.Fatal("Available failed without a reason")
	}
	testenv.Missing(t, "the iceoryx C binding (libiceoryx-binding-c-dev)", err.Error())
}

// TestOpenWithoutBinding checks that the calls a scenario makes before
// Init fail with the same reason as Available when the binding is missing.
func TestOpenWithoutBinding(t *testing.T) {
	if Available() == nil {
		t.Skip("the binding is available: Open would need RouDi (see bench's TestIceoryxRows)")
	}
	if _, err := Open(RequestResponse, Driver, false, "x"); err == nil {
		t.Fatal("Open succeeded without the binding")
	}
	if err := Init("x"); err == nil {
		t.Fatal("Init succeeded without the binding")
	}
}
