//go:build !cgo

package iceoryx

import (
	"errors"
	"os"
	"time"
)

var errNoCgo = errors.New("iceoryx: built without cgo (CGO_ENABLED=0 or no C compiler); the iceoryx rows need cgo and libiceoryx-binding-c-dev")

// Available reports why the binding cannot be used: this build has no cgo.
func Available() error { return errNoCgo }

// Init fails: this build has no cgo.
func Init(name string) error { return errNoCgo }

// Exit ends the process with code.
func Exit(code int) { os.Exit(code) }

// Pattern is the messaging pattern of a ping-pong.
type Pattern int

// Patterns.
const (
	RequestResponse  Pattern = 0 // a client's request answered by a server
	PublishSubscribe Pattern = 1 // a publisher and a subscriber each way
)

// Side is one end of a ping-pong.
type Side int

// Sides.
const (
	Driver Side = 0 // sends and times round trips
	Echo   Side = 1 // answers
)

// Peer is one side of a ping-pong; this build cannot make one.
type Peer struct{}

// Open fails: this build has no cgo.
func Open(pattern Pattern, side Side, wait bool, service string) (*Peer, error) {
	return nil, errNoCgo
}

// Connect fails: this build has no cgo.
func (p *Peer) Connect(timeout time.Duration) error { return errNoCgo }

// RoundTrip fails: this build has no cgo.
func (p *Peer) RoundTrip(timeout time.Duration) error { return errNoCgo }

// Stop fails: this build has no cgo.
func (p *Peer) Stop() error { return errNoCgo }

// Serve fails: this build has no cgo.
func (p *Peer) Serve(idle time.Duration) (int64, error) { return 0, errNoCgo }

// Close does nothing.
func (p *Peer) Close() {}
