package exchange

import (
	"crypto/rand"
	"encoding/binary"
	"encoding/hex"
	"fmt"
	mrand "math/rand/v2"
	"strings"
)

// UUID is a 16-byte universally unique identifier (RFC 9562). The exchange
// uses random (version 4) UUIDs for entity ids, message tags and labels.
// The zero UUID means "none". UUID is comparable and can be a map key; on
// the wire it is a MessagePack bin of exactly 16 bytes.
type UUID [16]byte

// NewUUID returns a random version 4 UUID drawn from crypto/rand.
func NewUUID() UUID {
	var u UUID
	_, _ = rand.Read(u[:]) // never fails (crypto/rand.Read crashes the program rather than return an error)
	return u.setV4()
}

// NewTag returns a random version 4 UUID for a message tag or a handle
// label. It draws from math/rand/v2's per-thread ChaCha8 generator, which
// the runtime seeds from the operating system: unique across processes with
// overwhelming probability, about ten times cheaper than [NewUUID], and not
// a secret.
func NewTag() UUID {
	var u UUID
	a, b := mrand.Uint64(), mrand.Uint64()
	for i := range 8 {
		u[i] = byte(a >> (8 * i))
		u[8+i] = byte(b >> (8 * i))
	}
	return u.setV4()
}

func (u UUID) setV4() UUID {
	u[6] = u[6]&0x0f | 0x40 // version 4
	u[8] = u[8]&0x3f | 0x80 // variant RFC 9562
	return u
}

// IsZero reports whether u is the zero UUID.
func (u UUID) IsZero() bool { return u.isZero() }

// isZero is IsZero through a pointer, in two word loads: on a value the
// compiler copies the array to the stack first, which stalls on store
// forwarding when the next load reads it back in other sizes.
func (u *UUID) isZero() bool {
	return binary.LittleEndian.Uint64(u[:8])|binary.LittleEndian.Uint64(u[8:]) == 0
}

// String returns the canonical form xxxxxxxx-xxxx-xxxx-xxxx-xxxxxxxxxxxx in
// lower-case hex.
func (u UUID) String() string {
	var b [36]byte
	u.encode(b[:])
	return string(b[:])
}

func (u UUID) encode(b []byte) {
	hex.Encode(b[0:8], u[0:4])
	b[8] = '-'
	hex.Encode(b[9:13], u[4:6])
	b[13] = '-'
	hex.Encode(b[14:18], u[6:8])
	b[18] = '-'
	hex.Encode(b[19:23], u[8:10])
	b[23] = '-'
	hex.Encode(b[24:36], u[10:16])
}

// MarshalText implements [encoding.TextMarshaler] with the canonical form.
func (u UUID) MarshalText() ([]byte, error) {
	b := make([]byte, 36)
	u.encode(b)
	return b, nil
}

// UnmarshalText implements [encoding.TextUnmarshaler]; see [ParseUUID].
func (u *UUID) UnmarshalText(b []byte) error {
	v, err := parseUUID(b)
	if err != nil {
		return err
	}
	*u = v
	return nil
}

// ParseUUID parses the canonical form of a UUID (36 characters, hyphens at
// positions 8, 13, 18 and 23, hex digits of either case). It returns an error
// wrapping [ErrInvalidArgument] for anything else.
func ParseUUID(s string) (UUID, error) { return parseUUID([]byte(s)) }

func parseUUID(s []byte) (UUID, error) {
	var u UUID
	if len(s) != 36 || s[8] != '-' || s[13] != '-' || s[18] != '-' || s[23] != '-' {
		return u, fmt.Errorf("%w: malformed UUID %q", ErrInvalidArgument, s)
	}
	j := 0
	for i := 0; i < 36; {
		if i == 8 || i == 13 || i == 18 || i == 23 {
			i++
			continue
		}
		hi, ok1 := unhex(s[i])
		lo, ok2 := unhex(s[i+1])
		if !ok1 || !ok2 {
			return UUID{}, fmt.Errorf("%w: malformed UUID %q", ErrInvalidArgument, s)
		}
		u[j] = hi<<4 | lo
		j++
		i += 2
	}
	return u, nil
}

func unhex(c byte) (byte, bool) {
	switch {
	case '0' <= c && c <= '9':
		return c - '0', true
	case 'a' <= c && c <= 'f':
		return c - 'a' + 10, true
	case 'A' <= c && c <= 'F':
		return c - 'A' + 10, true
	}
	return 0, false
}

// Role says whether an entity is an agent or a client. The zero Role is
// invalid.
type Role uint8

// The roles of entities.
const (
	// RoleAgent is the role of agents: entities registered with a
	// [Behavior], found by [Exchange.Discover].
	RoleAgent Role = 1
	// RoleClient is the role of clients (Academy's users): entities that
	// invoke agents and receive their responses.
	RoleClient Role = 2
)

// Valid reports whether r is RoleAgent or RoleClient.
func (r Role) Valid() bool { return r == RoleAgent || r == RoleClient }

// String returns "agent", "client", or "Role(n)" for an invalid role.
func (r Role) String() string {
	switch r {
	case RoleAgent:
		return "agent"
	case RoleClient:
		return "client"
	}
	return fmt.Sprintf("Role(%d)", uint8(r))
}

// EntityID is declared in message.go, beside Message (see there why).

// NewAgentID returns a fresh random agent id.
func NewAgentID() EntityID { return EntityID{UUID: NewUUID(), Role: RoleAgent} }

// NewClientID returns a fresh random client id.
func NewClientID() EntityID { return EntityID{UUID: NewUUID(), Role: RoleClient} }

// IsZero reports whether id is the zero EntityID.
func (id EntityID) IsZero() bool { return id == EntityID{} }

// Valid reports whether id has a valid role and a non-zero UUID.
func (id EntityID) Valid() bool { return id.valid() }

// valid is Valid through a pointer (see UUID.isZero).
func (id *EntityID) valid() bool { return id.Role.Valid() && !id.UUID.isZero() }

// IsAgent reports whether id is an agent's id.
func (id EntityID) IsAgent() bool { return id.Role == RoleAgent }

// IsClient reports whether id is a client's id.
func (id EntityID) IsClient() bool { return id.Role == RoleClient }

// String returns "<role>:<uuid>", for example
// "agent:0b6e4bc5-5b1e-4a5e-9f43-6f4fbc9d8b1e".
func (id EntityID) String() string {
	return id.Role.String() + ":" + id.UUID.String()
}

// ParseEntityID parses the form produced by [EntityID.String] for a valid
// id: a valid role and a UUID that is not zero. It returns an error
// wrapping [ErrInvalidArgument] otherwise.
func ParseEntityID(s string) (EntityID, error) {
	role, rest, ok := strings.Cut(s, ":")
	var id EntityID
	switch role {
	case "agent":
		id.Role = RoleAgent
	case "client":
		id.Role = RoleClient
	default:
		return EntityID{}, fmt.Errorf("%w: malformed entity id %q", ErrInvalidArgument, s)
	}
	if !ok {
		return EntityID{}, fmt.Errorf("%w: malformed entity id %q", ErrInvalidArgument, s)
	}
	u, err := ParseUUID(rest)
	if err != nil {
		return EntityID{}, err
	}
	if u.isZero() {
		return EntityID{}, fmt.Errorf("%w: entity id %q has the zero UUID", ErrInvalidArgument, s)
	}
	id.UUID = u
	return id, nil
}
