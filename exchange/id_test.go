package exchange

import (
	"encoding/json"
	"errors"
	"strings"
	"testing"
)

func checkV4(t *testing.T, u UUID) {
	t.Helper()
	if u[6]>>4 != 4 || u[8]>>6 != 2 {
		t.Fatalf("%v is not a version 4, RFC 9562 variant UUID", u)
	}
}

func TestUUID(t *testing.T) {
	seen := make(map[UUID]bool)
	for range 100 {
		for _, u := range []UUID{NewUUID(), NewTag()} {
			checkV4(t, u)
			if u.IsZero() || seen[u] {
				t.Fatalf("zero or repeated UUID %v", u)
			}
			seen[u] = true
			s := u.String()
			if len(s) != 36 || strings.ToLower(s) != s {
				t.Fatalf("String() = %q", s)
			}
			for _, in := range []string{s, strings.ToUpper(s)} {
				p, err := ParseUUID(in)
				if err != nil || p != u {
					t.Fatalf("ParseUUID(%q) = %v, %v; want %v", in, p, err, u)
				}
			}
		}
	}
	if !(UUID{}).IsZero() {
		t.Fatal("zero UUID is not IsZero")
	}
	u := UUID{0x01, 0x23, 0x45, 0x67, 0x89, 0xab, 0xcd, 0xef, 0xfe, 0xdc, 0xba, 0x98, 0x76, 0x54, 0x32, 0x10}
	if got, want := u.String(), "01234567-89ab-cdef-fedc-ba9876543210"; got != want {
		t.Fatalf("String() = %q, want %q", got, want)
	}
	for _, bad := range []string{
		"", "01234567-89ab-cdef-fedc-ba987654321", "01234567-89ab-cdef-fedc-ba98765432100",
		"0123456789ab-cdef-fedc-ba9876543210-", "01234567-89ab-cdef-fedc_ba9876543210",
		"0123456g-89ab-cdef-fedc-ba9876543210", "01234567-89ab-cdef-fedc-ba987654321 ",
		"{1234567-89ab-cdef-fedc-ba9876543210",
	} {
		if _, err := ParseUUID(bad); !errors.Is(err, ErrInvalidArgument) {
			t.Errorf("ParseUUID(%q): %v, want ErrInvalidArgument", bad, err)
		}
	}
	// Text marshalling, as JSON and slog use it.
	b, err := json.Marshal(map[string]UUID{"u": u})
	if err != nil || string(b) != `{"u":"01234567-89ab-cdef-fedc-ba9876543210"}` {
		t.Fatalf("json.Marshal = %s, %v", b, err)
	}
	var back map[string]UUID
	if err := json.Unmarshal(b, &back); err != nil || back["u"] != u {
		t.Fatalf("json.Unmarshal = %v, %v", back, err)
	}
	if err := json.Unmarshal([]byte(`{"u":"nope"}`), &back); !errors.Is(err, ErrInvalidArgument) {
		t.Fatalf("json.Unmarshal of a bad UUID: %v", err)
	}
}

func TestEntityID(t *testing.T) {
	a, c := NewAgentID(), NewClientID()
	if !a.IsAgent() || a.IsClient() || !a.Valid() || a.IsZero() {
		t.Fatalf("NewAgentID() = %v", a)
	}
	if !c.IsClient() || c.IsAgent() || !c.Valid() {
		t.Fatalf("NewClientID() = %v", c)
	}
	if !(EntityID{}).IsZero() || (EntityID{}).Valid() || (EntityID{UUID: a.UUID}).Valid() || (EntityID{Role: RoleAgent}).Valid() {
		t.Fatal("IsZero or Valid wrong on partial ids")
	}
	// Comparable, usable as map keys, role included.
	m := map[EntityID]int{a: 1, c: 2, {UUID: a.UUID, Role: RoleClient}: 3}
	if len(m) != 3 || m[a] != 1 {
		t.Fatalf("map of ids: %v", m)
	}
	for _, id := range []EntityID{a, c} {
		s := id.String()
		if !strings.HasPrefix(s, id.Role.String()+":") {
			t.Fatalf("String() = %q", s)
		}
		p, err := ParseEntityID(s)
		if err != nil || p != id {
			t.Fatalf("ParseEntityID(%q) = %v, %v", s, p, err)
		}
	}
	for _, bad := range []string{"", "agent", "agent:", "user:" + a.UUID.String(), "Role(3):" + a.UUID.String(), "agent:" + a.UUID.String() + "x"} {
		if _, err := ParseEntityID(bad); !errors.Is(err, ErrInvalidArgument) {
			t.Errorf("ParseEntityID(%q): %v, want ErrInvalidArgument", bad, err)
		}
	}
	if got := Role(9).String(); got != "Role(9)" {
		t.Fatalf("Role(9).String() = %q", got)
	}
}

func TestEntityIDAllocs(t *testing.T) {
	a, b := NewAgentID(), NewAgentID()
	m := map[EntityID]bool{a: true}
	var sink bool
	if n := testing.AllocsPerRun(100, func() {
		sink = a == b || a.IsZero() || !a.Valid() || m[b]
	}); n != 0 {
		t.Fatalf("id comparisons allocate: %v", n)
	}
	_ = sink
}
