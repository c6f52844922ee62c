package main

import "github.com/shmex/shmex/proxystore"

//go:generate go tool msgp -io=false -tests=false

// Frame is one step of a simulation's output, the argument of the agent's
// action: a msgp struct with a Blob field. Its methods (frame_gen.go) are
// what `go tool msgp` generates: a Blob field needs nothing special.
type Frame struct {
	Step int             `msg:"step"`
	Data proxystore.Blob `msg:"data"`
}
