// Package fuzzlong runs every fuzz target of the module for a while: the
// long mode of the fuzzing (SHMEX_LONG=1, docs/fuzzing.md), and, in the
// normal suite, a check that every target has a committed corpus.
//
// It holds no code but its tests. Targets are found in the source (every
// func FuzzXxx(*testing.F) of a _test.go file of the module), so that a
// new target is run, and must bring its corpus, without a list to update.
package fuzzlong
