package agent_test

import "github.com/tinylib/msgp/msgp"

// MarshalMsg implements msgp.Marshaler (as msgp would generate).
func (p *Pair) MarshalMsg(b []byte) ([]byte, error) {
	b = msgp.AppendArrayHeader(b, 2)
	b = msgp.AppendInt64(b, p.A)
	return msgp.AppendInt64(b, p.B), nil
}

// UnmarshalMsg implements msgp.Unmarshaler.
func (p *Pair) UnmarshalMsg(b []byte) ([]byte, error) {
	n, b, err := msgp.ReadArrayHeaderBytes(b)
	if err != nil {
		return b, err
	}
	if n != 2 {
		return b, msgp.ArrayError{Wanted: 2, Got: n}
	}
	if p.A, b, err = msgp.ReadInt64Bytes(b); err != nil {
		return b, err
	}
	p.B, b, err = msgp.ReadInt64Bytes(b)
	return b, err
}
