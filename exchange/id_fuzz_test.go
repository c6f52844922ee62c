package exchange_test

import (
	"errors"
	"strings"
	"testing"

	"github.com/shmex/shmex/exchange"
)

// FuzzParseEntityID parses text from outside as an entity id (a process
// launcher reads one from the environment: agent.EnvAgentID) and as a
// UUID: what ParseEntityID accepts is a valid id (a known role, a UUID that
// is not zero) whose String is the input in lower case, so that the id
// round-trips; what ParseUUID accepts prints back the same way, and
// UnmarshalText agrees with it; every refusal wraps ErrInvalidArgument.
func FuzzParseEntityID(f *testing.F) {
	f.Add(exchange.NewAgentID().String())
	f.Add(exchange.NewClientID().String())
	f.Add(strings.ToUpper(exchange.NewAgentID().String()[6:]))
	f.Add("agent:")
	f.Add("client:00000000-0000-0000-0000-00000000000g")
	f.Add("Role(3):0b6e4bc5-5b1e-4a5e-9f43-6f4fbc9d8b1e")
	f.Add("agent:0b6e4bc5-5b1e-4a5e-9f43-6f4fbc9d8b1e:x")
	f.Add("agent:0b6e4bc5+5b1e-4a5e-9f43-6f4fbc9d8b1e")
	f.Fuzz(func(t *testing.T, s string) {
		id, err := exchange.ParseEntityID(s)
		if err != nil {
			if !errors.Is(err, exchange.ErrInvalidArgument) {
				t.Fatalf("ParseEntityID(%q): %v does not wrap ErrInvalidArgument", s, err)
			}
		} else if !id.Valid() || id.String() != strings.ToLower(s) {
			t.Fatalf("ParseEntityID(%q) = %v (valid: %v)", s, id, id.Valid())
		}

		u, err := exchange.ParseUUID(s)
		var v exchange.UUID
		terr := v.UnmarshalText([]byte(s))
		if (err == nil) != (terr == nil) || u != v {
			t.Fatalf("ParseUUID(%q) = %v, %v; UnmarshalText: %v, %v", s, u, err, v, terr)
		}
		if err != nil {
			if !errors.Is(err, exchange.ErrInvalidArgument) {
				t.Fatalf("ParseUUID(%q): %v does not wrap ErrInvalidArgument", s, err)
			}
			return
		}
		if u.String() != strings.ToLower(s) {
			t.Fatalf("ParseUUID(%q) = %v", s, u)
		}
		if text, _ := u.MarshalText(); string(text) != u.String() {
			t.Fatalf("MarshalText of %v: %q", u, text)
		}
	})
}
