package testenv

import "testing"

func TestLookPath(t *testing.T) {
	if p := LookPath(t, "sh"); p == "" {
		t.Fatal("LookPath(sh) returned an empty path")
	}
}

func TestMissingSkipsOutsideCI(t *testing.T) {
	t.Setenv("CI", "")
	ran := false
	t.Run("inner", func(t *testing.T) {
		defer func() { ran = true }()
		Missing(t, "a tool", "not installed")
		t.Error("Missing returned")
	})
	if !ran {
		t.Fatal("the inner test did not end")
	}
}
