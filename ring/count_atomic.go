//go:build !shmex_nocounters && (race || !(amd64 || arm64))

package ring

import "sync/atomic"

// counting says whether this build counts (see counters.go).
const counting = true

// bump adds n to a counter. Under the race detector, which must see the
// writes of a counter as atomic to accept concurrent readers, and where an
// 8-byte store may tear, it is an atomic add (see counters.go).
func bump(w *uint64, n uint64) { atomic.AddUint64(w, n) }
