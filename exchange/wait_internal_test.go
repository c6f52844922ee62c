package exchange

import (
	"context"
	"path/filepath"
	"testing"
	"time"
)

// TestWaitRegistryChangeWakes: a registration by another handle (another
// process's, as far as the futex knows: its own mapping of the registry)
// wakes a sleeper at once, not at the end of its slice, which is made
// longer than the test may last.
func TestWaitRegistryChangeWakes(t *testing.T) {
	old := registryWaitSlice
	registryWaitSlice = time.Hour
	t.Cleanup(func() { registryWaitSlice = old })
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	root := filepath.Join(t.TempDir(), "root")
	a, err := Open("wake", WithRoot(root))
	if err != nil {
		t.Fatal(err)
	}
	defer a.Close()
	b, err := Open("wake", WithRoot(root))
	if err != nil {
		t.Fatal(err)
	}
	defer b.Close()
	for i := range 3 {
		seen, err := a.RegistryVersion(ctx)
		if err != nil {
			t.Fatal(err)
		}
		done := make(chan error, 1)
		// No deadline on the wait's context: only a wake ends the sleep.
		go func() { done <- a.WaitRegistryChange(context.Background(), seen) }()
		if _, err := b.RegisterAgent(ctx, Behavior{Name: "Worker"}); err != nil {
			t.Fatal(err)
		}
		select {
		case err := <-done:
			if err != nil {
				t.Fatalf("round %d: %v", i, err)
			}
		case <-ctx.Done():
			t.Fatalf("round %d: the registration did not wake the sleeper", i)
		}
	}
}
