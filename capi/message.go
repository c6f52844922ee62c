//go:build linux && cgo

package main

import (
	"sync"

	"github.com/shmex/shmex/exchange"
)

// cmsg is a message whose byte fields live in C memory, ready to be written
// into a shmex_message.
type cmsg struct {
	kind                              exchange.Kind
	terminate                         bool
	tag, label                        exchange.UUID
	src, dest                         exchange.EntityID
	action, args, result, ekind, emsg []byte
}

// copyToC copies m's byte fields into buf (reusing it) and returns the
// message over that copy, valid until buf is reused or freed.
func copyToC(buf *cbuf, m *exchange.Message) (cmsg, error) {
	n := len(m.Action) + len(m.Args) + len(m.Result) + len(m.ErrorKind) + len(m.ErrorMessage)
	b, err := buf.grow(n)
	if err != nil {
		return cmsg{}, err
	}
	c := cmsg{kind: m.Kind, terminate: m.Terminate, tag: m.Tag, label: m.Label, src: m.Src, dest: m.Dest}
	take := func(src []byte) []byte {
		k := copy(b, src)
		out := b[:k:k]
		b = b[k:]
		return out
	}
	c.action = take(m.Action)
	c.args = take(m.Args)
	c.result = take(m.Result)
	c.ekind = take(m.ErrorKind)
	c.emsg = take(m.ErrorMessage)
	return c, nil
}

// msgPool holds the messages of responses being sent.
var msgPool = sync.Pool{New: func() any { return new(exchange.Message) }}
