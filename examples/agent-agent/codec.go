package main

import (
	"fmt"

	"github.com/tinylib/msgp/msgp"
)

// processCodec encodes a Process as the MessagePack array [lowerer,
// reverser, text]: an example of a custom agent.Codec.
type processCodec struct{}

func (processCodec) Append(b []byte, p Process) ([]byte, error) {
	b = msgp.AppendArrayHeader(b, 3)
	var err error
	if b, err = p.Lowerer.MarshalMsg(b); err != nil {
		return b, err
	}
	if b, err = p.Reverser.MarshalMsg(b); err != nil {
		return b, err
	}
	return msgp.AppendString(b, p.Text), nil
}

func (processCodec) Decode(b []byte, p *Process) error {
	n, b, err := msgp.ReadArrayHeaderBytes(b)
	if err != nil {
		return err
	}
	if n != 3 {
		return fmt.Errorf("process: array of %d, want 3", n)
	}
	if b, err = p.Lowerer.UnmarshalMsg(b); err != nil {
		return err
	}
	if b, err = p.Reverser.UnmarshalMsg(b); err != nil {
		return err
	}
	if p.Text, b, err = msgp.ReadStringBytes(b); err != nil {
		return err
	}
	if len(b) != 0 {
		return fmt.Errorf("process: %d trailing bytes", len(b))
	}
	return nil
}
