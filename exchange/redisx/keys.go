package redisx

import (
	"encoding/hex"
	"fmt"

	"github.com/shmex/shmex/exchange"
)

// Key layout. Every key of one exchange starts with its prefix in braces,
// "{prefix}", a Redis Cluster hash tag: all of them hash to one slot, so
// every script, which reads and writes the keys of several entities at once
// (a terminate answers requests into their senders' mailboxes, a status
// reads the owner's heartbeat), runs on one shard. Several exchanges
// (prefixes) spread over a cluster; one exchange lives on one shard.
// Scripts build the keys they derive from a record (heartbeats of owners,
// mailboxes and taken lists) themselves, in the same slot; every other key
// they touch is declared.
//
//	key                            type    holds
//	{P}:boot                       string  token of the data set: a new one means Redis lost its data
//	{P}:sessions                   hash    session id -> node name, of sessions that ever beat
//	{P}:s:<session>                string  heartbeat of a session (node name), expires after the TTL
//	{P}:o:<session>                set     hex UUIDs of the active entities a session owns
//	{P}:e:<uuid>                   hash    entity record (fields below)
//	{P}:q:<uuid>:<role>            list    mailbox: senders LPUSH, the receiver takes from the right
//	{P}:f:<uuid>:<token>           list    taken by the receiver token, not yet acknowledged
//	{P}:agents                     hash    hex UUID -> behavior, of the active agents (for Discover)
//	{P}:ctl:<node>                 channel hybrid control messages to the processes of a node
//	{P}:ack:<random>               list    reply to one control message (expires)
//
// The role (1 agent, 2 client) is part of the mailbox's key so that a send
// to the right UUID with the wrong role never touches the mailbox.
//
// Entity record fields:
//
//	role  "1" agent, "2" client          st    "1" active, "2" terminated
//	name  registered name                inc   incarnation (Reopens)
//	beh   behavior: MessagePack array of strings, name first, then Implements
//	node  node the entity lives on       own   owning session (its death terminates)
//	rcv   receiver token "<session>/<n>" of the open Mailbox client, or ""
//	cap   mailbox capacity in messages
//
// A receive renames the mailbox {P}:q:... to its taken list {P}:f:...
// (RENAMENX, same slot): the mailbox key is then gone until the next send.
//
// An empty string in a mailbox list is a wake-up marker, never a message
// (an encoded message is at least 79 bytes): Terminate, a Mailbox Close and
// a cancelled Recv push one to end a blocking take.
type keys struct {
	tag string // "{prefix}"
}

func newKeys(prefix string) keys { return keys{tag: "{" + prefix + "}"} }

func hexID(u exchange.UUID) string { return hex.EncodeToString(u[:]) }

// parseHexID parses the key form of a UUID: 32 lower-case hex digits, as
// hexID writes them. Redis keys are case-sensitive, so an upper-case form
// names another key than the UUID's, and is refused.
func parseHexID(h string) (exchange.UUID, error) {
	var u exchange.UUID
	if len(h) != 2*len(u) {
		return u, fmt.Errorf("%w: bad UUID %q in a key", ErrProtocol, h)
	}
	if _, err := hex.Decode(u[:], []byte(h)); err != nil || hexID(u) != h {
		return exchange.UUID{}, fmt.Errorf("%w: bad UUID %q in a key", ErrProtocol, h)
	}
	return u, nil
}

func (k keys) boot() string                           { return k.tag + ":boot" }
func (k keys) sessions() string                       { return k.tag + ":sessions" }
func (k keys) live(sid string) string                 { return k.tag + ":s:" + sid }
func (k keys) owned(sid string) string                { return k.tag + ":o:" + sid }
func (k keys) entity(h string) string                 { return k.tag + ":e:" + h }
func (k keys) queue(h string, r exchange.Role) string { return k.tag + ":q:" + h + ":" + roleArg(r) }
func (k keys) taken(h, token string) string           { return k.tag + ":f:" + h + ":" + token }
func (k keys) agents() string                         { return k.tag + ":agents" }
func (k keys) control(node string) string             { return k.tag + ":ctl:" + node }
func (k keys) ack(token string) string                { return k.tag + ":ack:" + token }

// entityKeys are the record and mailbox keys of one entity id.
type entityKeys struct{ e, q string }

func (k keys) of(id exchange.EntityID) (string, entityKeys) {
	h := hexID(id.UUID)
	return h, entityKeys{e: k.entity(h), q: k.queue(h, id.Role)}
}

// keysFor returns the hex id and keys of id, cached (a send needs them
// every time).
func (s *session) keysFor(id exchange.EntityID) (string, entityKeys) {
	if v, ok := s.keyCache.Load(id); ok {
		c := v.(*cachedKeys)
		return c.h, c.k
	}
	h, k := s.k.of(id)
	if s.keyCount.Add(1) < maxCachedKeys {
		s.keyCache.Store(id, &cachedKeys{h, k})
	}
	return h, k
}

type cachedKeys struct {
	h string
	k entityKeys
}

// maxCachedKeys bounds the key cache of a session.
const maxCachedKeys = 1 << 16
