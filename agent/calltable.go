package agent

import (
	"encoding/binary"

	"github.com/shmex/shmex/exchange"
)

// callTable holds an endpoint's calls in flight, by tag. The endpoint
// makes its tags from a count (see endpoint.putTag), so a call goes in the
// slot of its count's low bits: an insert, a look-up and a removal are an
// index and a comparison, no hashing. A call whose slot is taken (by one
// still in flight callSlots tags earlier) goes in the map more. Guarded
// by the endpoint's mu.
type callTable struct {
	slots [callSlots]*call
	more  map[exchange.UUID]*call // made when first needed
	n     int
}

// callSlots is the number of slots: more than the calls a client usually
// keeps in flight.
const callSlots = 256

func slotOf(tag exchange.UUID) int {
	return int(binary.BigEndian.Uint64(tag[8:]) & (callSlots - 1))
}

func (t *callTable) len() int { return t.n }

// get returns the call of tag, or nil.
func (t *callTable) get(tag exchange.UUID) *call {
	if c := t.slots[slotOf(tag)]; c != nil && c.tag == tag {
		return c
	}
	if t.more != nil {
		return t.more[tag]
	}
	return nil
}

// add adds c, whose tag is not in the table.
func (t *callTable) add(c *call) {
	t.n++
	if i := slotOf(c.tag); t.slots[i] == nil {
		t.slots[i] = c
		return
	}
	if t.more == nil {
		t.more = map[exchange.UUID]*call{}
	}
	t.more[c.tag] = c
}

// remove removes c and reports whether it was there.
func (t *callTable) remove(c *call) bool {
	if i := slotOf(c.tag); t.slots[i] == c {
		t.slots[i] = nil
		t.n--
		return true
	}
	if t.more != nil && t.more[c.tag] == c {
		delete(t.more, c.tag)
		t.n--
		return true
	}
	return false
}

// each calls f for every call, which f may remove.
func (t *callTable) each(f func(*call)) {
	if t.n == 0 {
		return
	}
	for _, c := range t.slots {
		if c != nil {
			f(c)
		}
	}
	for _, c := range t.more {
		f(c)
	}
}
