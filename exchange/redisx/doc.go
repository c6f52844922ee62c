// Package redisx runs the exchange across nodes on Redis: [Exchange] keeps
// the registry and every mailbox in Redis, and [Hybrid] keeps same-node
// traffic in the shared-memory exchange and sends only what crosses nodes
// through Redis.
//
// # Model
//
// Each process joins an exchange (a Redis server and a key prefix) with a
// session: a random id whose heartbeat key expires after the liveness TTL
// ([WithLivenessTTL], default 5 s) unless the session beats again (four
// times per TTL). An entity's record names the node it lives on and the
// session that owns it (the one that registered it, or last opened its
// Mailbox); when that session's heartbeat is gone, the entity is dead: its
// mailbox reads as terminated, and the requests queued in it are answered
// with error responses (kind exchange.ErrorKindMailboxTerminated), as on one
// node. Every session looks for dead sessions about once per TTL and
// terminates what they owned; a Status, Info, Discover, Mailbox or Reopen
// that meets a dead owner terminates its mailbox on the spot. So a node whose
// processes are all killed is seen dead at most one TTL after their last
// heartbeat (plus a status poll: the agent layer's calls in flight to it
// then fail within its poll interval), and all its mailboxes within two
// TTLs. A process that closes its last handle deletes its heartbeat: what
// it owned is seen terminated at once.
//
// # Round trips
//
// Every action on the exchange is one round trip (Academy's Redis exchange
// awaits about 13 commands in a row per action). The registry's actions
// are Lua scripts, atomic; sends and receives, the hot paths, are plain
// commands, pipelined, because a script costs the server about ten
// microseconds more than the commands in it (measured here: a ping-pong of
// two sends and two receives through scripts took 1.9x a plain
// LPUSH/BRPOP ping-pong, through plain commands 1.2-1.5x):
//
//   - Send: LPUSH to the destination's mailbox (its key carries the role)
//     and a read of its record (role, state, incarnation, capacity). When
//     the record says the message must not stay (missing, terminated,
//     full), it is taken back (LREM) in a second round trip; one that its
//     receiver took meanwhile counts as delivered. The owner's heartbeat
//     is not looked at: a mailbox whose owner died takes messages until the
//     death is seen, then answers the requests among them. Sends of
//     concurrent goroutines of a process are combined into one pipeline of
//     up to 256 messages (one LPUSH and one record read per mailbox), which
//     is how one Redis server carries tens of thousands of actions per
//     second.
//   - Recv: one round trip per batch: the trim of the receiver's own
//     taken list that acknowledges the previous batch; then, when the
//     previous take left nothing pending, a blocking move (BLMOVE) of one
//     message from the mailbox to that list, which returns at once when
//     the mailbox holds something and otherwise waits for the next send;
//     when messages were pending, a rename of the whole mailbox to the
//     taken list (RENAMENX: O(1), and nothing while the list still holds
//     some of what the last rename moved) and a read of its oldest
//     [WithRecvBatch] messages; the mailbox's length; and, at most every 50 ms while messages flow, the
//     record's state (a take that finds a marker, which Terminate pushes,
//     reads it before returning anything). The replies come back
//     together, so the receiver wakes once.
//   - Register, Terminate, Status, Info, Discover, Mailbox, Reopen: one
//     script each (Terminate then sends its error responses as one more).
//
// Incarnation answers from the incarnations carried by the replies of the
// last second, so the agent layer's per-call look-up costs nothing in
// steady state; SendIncarnation returns the exact one.
//
// # Delivery
//
// A message is in Redis from the moment Send returns until its receiver
// acknowledges it, which it does by asking for the next batch (or closing
// its Mailbox client): the receiver moves what it takes to a list of its
// own, atomically, and trims it at its next take. Only that receiver
// writes to its list, so the trim by count is exact; after a take whose
// reply was lost, a script compares the list with what the receiver knows
// it held and hands out the rest. The guarantee is at-least-once: exactly once to a
// receiver that lives; a receiver that dies (its session's heartbeat gone)
// may have the batch it was working on delivered again. When the dead
// receiver owned the mailbox, the mailbox is terminated: what it had taken
// goes back to the mailbox, and the requests among it are answered with
// error responses (a request it had already answered gets a second,
// error, answer, which the agent layer drops as a response to no call).
// When another process opens the mailbox of a dead receiver, what that
// receiver had taken is delivered to it again, first, in order. Messages
// from one sending goroutine arrive in order.
//
// # Sending without waiting
//
// Exchange and Hybrid implement exchange.AsyncSender: [Exchange.SendAsync]
// encodes the message, puts it in the same send queue as Send (the same
// pipelines, in the same order) and returns without waiting for the round
// trip; the agent layer sends its responses so, which spares an agent's
// serving goroutine a Redis round trip per response. What fails after the
// call (destination missing or terminated, a mailbox still full when the
// context given to SendAsync ends, Redis unreachable for the outage wait,
// a lost reply) is logged through [WithLogger] and returned by the next
// [Exchange.Flush]. Delivery is at most once: a message whose commit
// failed or whose reply was lost is not sent again; once committed it is
// delivered as a Send's is (at least once, below). Messages queued by one
// goroutine to one mailbox are committed in order, except one that found
// the mailbox full, which waits for room apart. Close flushes first. On a
// Hybrid, SendAsync to an entity of the same node is the ring's send,
// synchronous; only the Redis leg is queued.
//
// # Redis failures
//
// Every call fails with a clear error within its context: [ErrUnavailable]
// (wrapping the network error) once Redis has been unreachable for the
// outage wait ([WithOutageWait], default 5 s), or the context's error
// (wrapping ErrUnavailable too) when the context ends first. Nothing
// panics, nothing hangs. A command that certainly did not run (no
// connection, server loading) is retried within that wait; one that may
// have run is retried only when that is harmless (reads, register,
// terminate, fetch: a fetch carries a sequence number, so its retry
// returns the same batch). A Send whose reply was lost is not retried: its
// error says the message may have been delivered. A receiver keeps
// reconnecting for as long as its context allows, so agents outlive a
// Redis restart.
//
// With a server that persists every write (appendonly yes, appendfsync
// always) nothing acknowledged is lost across a restart. Heartbeats that
// expired while the server was down are forgiven for two TTLs after it
// starts (the scripts read its uptime), so that nobody is declared dead
// for Redis's own absence. Each session keeps the records of what it owns
// and writes back those that are missing when the data set's token
// ({P}:boot) changes, which is how a restart without persistence, or a
// failover to a replica that lagged, is survived by the registry (the
// messages that were queued are lost in that case).
//
// # Keys and Redis Cluster
//
// The key layout is in keys.go. Every key of an exchange carries its prefix
// as a hash tag ("{prefix}:..."), so all of them live in one slot and every
// script is valid in Redis Cluster; exchanges with different prefixes
// spread over the cluster's shards ([WithClient] takes a
// *redis.ClusterClient). Scripts derive the heartbeat keys of owners from
// the records they read, in the same slot.
//
// # Hybrid
//
// [Hybrid] registers every entity in the shared-memory exchange of its node
// and in Redis, with its node's name. A send to an entity of the same node
// is a plain shared-memory send (no Redis command: an entity never changes
// node, so where it lives is cached once known); a send to another node's
// entity goes to its Redis mailbox, from which a forwarder in the process
// that holds the entity's Mailbox client moves it into the ring. Discover,
// Status and Info see the whole cluster. Terminating an entity of another
// node marks it terminated in Redis and asks that node's processes, over a
// Redis channel, to terminate its ring too. See Hybrid for the caveats.
package redisx
