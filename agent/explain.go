package agent

import (
	"fmt"
	"reflect"
	"strings"

	"github.com/tinylib/msgp/msgp"

	"github.com/shmex/shmex/exchange"
	"github.com/shmex/shmex/proxystore"
)

// Errors that explain themselves: what the slow paths of decoding and
// dispatch add to an error so that a reader needs no source to fix it.

// decodeMismatch explains a value that did not decode: what it was (the
// action's arguments or result, or a configuration), the Go type wanted,
// and what the bytes hold. Bytes that are a proxy are not described: the
// proxy's own error says what went wrong.
func decodeMismatch(what string, want reflect.Type, b []byte, err error) error {
	if proxystore.IsPayload(b) {
		return fmt.Errorf("%s: want %s: %w", what, typeName(want), err)
	}
	return fmt.Errorf("%s: want %s, got %s: %w", what, typeName(want), describeMsgp(b), err)
}

// typeName is t as Go source spells it ([]byte, not []uint8).
func typeName(t reflect.Type) string {
	if t == reflect.TypeFor[[]byte]() {
		return "[]byte"
	}
	return t.String()
}

// maxDescribed bounds the elements and keys describeMsgp lists.
const maxDescribed = 4

// describeMsgp describes the MessagePack value at the start of b for an
// error message: "a MessagePack int", "a MessagePack array of 2 [int,
// str]", "a MessagePack map of 1 {"a": float64}", "a MessagePack bin of 10
// bytes". It never fails: malformed bytes are described as such.
func describeMsgp(b []byte) string {
	if len(b) == 0 {
		return "empty (no MessagePack value)"
	}
	return "a MessagePack " + describeValue(b, true)
}

func describeValue(b []byte, top bool) string {
	t := msgp.NextType(b)
	switch t {
	case msgp.InvalidType:
		return fmt.Sprintf("value with the invalid type byte %#x", b[0])
	case msgp.StrType:
		if s, _, err := msgp.ReadStringZC(b); err == nil && top {
			return fmt.Sprintf("str of %d bytes", len(s))
		}
	case msgp.BinType:
		if p, _, err := msgp.ReadBytesZC(b); err == nil && top {
			return fmt.Sprintf("bin of %d bytes", len(p))
		}
	case msgp.ExtensionType:
		if proxystore.IsPayload(b) {
			return "proxy (proxystore)"
		}
	case msgp.ArrayType:
		n, rest, err := msgp.ReadArrayHeaderBytes(b)
		if err != nil {
			return "truncated array"
		}
		if !top {
			return fmt.Sprintf("array of %d", n)
		}
		var elems []string
		for i := uint32(0); i < n && i < maxDescribed; i++ {
			elems = append(elems, describeValue(rest, false))
			if rest, err = msgp.Skip(rest); err != nil {
				elems = append(elems, "(truncated)")
				break
			}
		}
		if n > maxDescribed {
			elems = append(elems, "...")
		}
		return fmt.Sprintf("array of %d [%s]", n, strings.Join(elems, ", "))
	case msgp.MapType:
		n, rest, err := msgp.ReadMapHeaderBytes(b)
		if err != nil {
			return "truncated map"
		}
		if !top {
			return fmt.Sprintf("map of %d", n)
		}
		var elems []string
		for i := uint32(0); i < n && i < maxDescribed; i++ {
			key := describeValue(rest, false)
			if k, _, err := msgp.ReadStringZC(rest); err == nil {
				key = fmt.Sprintf("%q", k)
			}
			if rest, err = msgp.Skip(rest); err != nil {
				elems = append(elems, "(truncated)")
				break
			}
			elems = append(elems, key+": "+describeValue(rest, false))
			if rest, err = msgp.Skip(rest); err != nil {
				elems = append(elems, "(truncated)")
				break
			}
		}
		if n > maxDescribed {
			elems = append(elems, "...")
		}
		return fmt.Sprintf("map of %d {%s}", n, strings.Join(elems, ", "))
	}
	return t.String()
}

// unknownActionMessage says that behavior b has no action name, lists the
// actions it has, and names the one meant when name differs from it only
// by case or underscores (a Go method name for a snake_case action).
func unknownActionMessage(b *Behavior, name string) string {
	names := b.Actions()
	msg := fmt.Sprintf("behavior %q has no action %q", b.name, name)
	if len(names) == 0 {
		return msg + " (it has no actions)"
	}
	fold := func(s string) string {
		return strings.ToLower(strings.ReplaceAll(strings.ReplaceAll(s, "_", ""), "-", ""))
	}
	for _, n := range names {
		if fold(n) == fold(name) {
			msg += fmt.Sprintf(" (did you mean %q?)", n)
			break
		}
	}
	const maxListed = 32
	if len(names) > maxListed {
		return msg + fmt.Sprintf("; its actions: %s, and %d more", strings.Join(names[:maxListed], ", "), len(names)-maxListed)
	}
	return msg + "; its actions: " + strings.Join(names, ", ")
}

// noSuchAgent is the error of a request to an id the exchange has no
// mailbox for (err wraps [exchange.ErrBadEntityID]): there is no such
// agent, which is not the same as an agent that terminated.
func noSuchAgent(dest exchange.EntityID, err error) error {
	why := "not registered in this exchange: a wrong id, one from another exchange, or an agent terminated long ago"
	if dest.Role != exchange.RoleAgent {
		why = "the id is a " + dest.Role.String() + "'s, not an agent's"
	}
	return fmt.Errorf("agent: no such agent (%s): %w", why, err)
}
