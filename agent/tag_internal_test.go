package agent

import (
	"testing"

	"github.com/shmex/shmex/exchange"
)

// TestNewTag checks that request tags are version 4, RFC 9562 variant
// UUIDs, distinct, and that they share the endpoint's random half.
func TestNewTag(t *testing.T) {
	for range 20 {
		o := defaultOptions()
		ep := newEndpoint(exchange.NewLocal(), exchange.NewClientID(), &o)
		seen := map[exchange.UUID]bool{}
		var first exchange.UUID
		for i := range 1000 {
			var u exchange.UUID
			ep.putTag(&u, ep.nextTag())
			if v := u[6] >> 4; v != 4 {
				t.Fatalf("tag %x: version %d, want 4", u, v)
			}
			if v := u[8] >> 6; v != 2 {
				t.Fatalf("tag %x: variant bits %b, want 10", u, v)
			}
			if seen[u] {
				t.Fatalf("tag %x made twice", u)
			}
			seen[u] = true
			if i == 0 {
				first = u
			} else if [8]byte(u[:8]) != [8]byte(first[:8]) {
				t.Fatalf("tag %x: first half differs from %x", u, first)
			}
		}
	}
}
