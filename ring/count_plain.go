//go:build !shmex_nocounters && !race && (amd64 || arm64)

package ring

// counting says whether this build counts (see counters.go).
const counting = true

// bump adds n to a counter that only the caller writes: a plain load and
// store, single-copy atomic on this architecture (see counters.go).
func bump(w *uint64, n uint64) { *w += n }
