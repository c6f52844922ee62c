package redisx

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math"
	"net"
	"strconv"
	"sync"
	"sync/atomic"
	"syscall"
	"time"
	"unsafe"

	"github.com/redis/go-redis/v9"
	"github.com/redis/go-redis/v9/maintnotifications"

	"github.com/shmex/shmex/exchange"
	"github.com/shmex/shmex/internal/quietlog"
)

// A session is one process's participation in an exchange (one server,
// prefix and node): its Redis client, its heartbeat, the batching sender,
// what it owns. Every Exchange handle of the process on the same exchange
// shares it, as the shared-memory exchange's handles share the process's
// liveness lock: closing one handle leaves the others, and the entities
// they own, alive.
type session struct {
	key  sessionKey
	refs int // guarded by sessionsMu

	id    string // random, hex
	node  string
	k     keys
	cl    redis.UniversalClient
	owns  bool // cl is ours to close
	o     options
	grace string // liveness grace for the scripts, in seconds: two TTLs after a server start
	log   *slog.Logger

	snd sender

	mu        sync.Mutex
	owned     map[exchange.UUID]*ownedEntity // active entities this session owns, for restore
	boot      string                         // the data set's token when last seen
	releases  map[string]*mailbox            // releases that failed, retried at each beat
	reapTurn  int
	unhealthy bool // the last beat failed

	incs       sync.Map // exchange.UUID -> *incEntry
	keyCache   sync.Map // exchange.EntityID -> *cachedKeys
	keyCount   atomic.Int64
	pinnedRecv atomic.Int32 // receivers' pinned connections (at most half the pool)
	tokens     atomic.Uint64

	stop chan struct{}
	done chan struct{}
}

type sessionKey struct {
	addr, prefix, node string
	client             redis.UniversalClient
}

// ownedEntity is what a session knows of an entity it owns: enough to write
// its record again if Redis loses its data.
type ownedEntity struct {
	id   exchange.EntityID
	name string
	beh  string // packed behavior
	cap  int
	inc  uint32
	rcv  string // receiver token of this session's open Mailbox, or ""
}

// incEntry caches an incarnation seen in a reply.
type incEntry struct {
	inc  uint32
	role exchange.Role
	at   int64 // unix nanoseconds
}

// incFresh is how long a cached incarnation answers Incarnation without a
// round trip.
const incFresh = time.Second

var (
	sessionsMu sync.Mutex
	sessions   = map[sessionKey]*session{}
)

// acquireSession returns the session of the exchange o names, creating it
// (and checking that Redis answers, within ctx) for the first handle.
func acquireSession(ctx context.Context, o options) (*session, error) {
	key := sessionKey{addr: o.addr, prefix: o.prefix, node: o.node, client: o.client}
	if o.client != nil {
		key.addr = ""
	}
	sessionsMu.Lock()
	defer sessionsMu.Unlock()
	if s := sessions[key]; s != nil {
		s.refs++
		return s, nil
	}
	s := &session{
		key:      key,
		refs:     1,
		id:       randomHex(8),
		node:     o.node,
		k:        newKeys(o.prefix),
		o:        o,
		grace:    strconv.Itoa(int(math.Ceil(2*o.ttl.Seconds())) + 1),
		log:      quietlog.Or(o.log),
		owned:    map[exchange.UUID]*ownedEntity{},
		releases: map[string]*mailbox{},
		stop:     make(chan struct{}),
		done:     make(chan struct{}),
	}
	s.snd.s = s
	if o.client != nil {
		s.cl = o.client
	} else {
		s.cl = redis.NewClient(&redis.Options{
			Addr:                     o.addr,
			Protocol:                 2,
			DisableIdentity:          true,
			MaintNotificationsConfig: &maintnotifications.Config{Mode: maintnotifications.ModeDisabled},
			PoolSize:                 o.poolSize,
			PipelinePoolSize:         -1, // receivers block in pipelines: one pool for all
			MaxRetries:               -1,
			DialTimeout:              time.Second,
			DialerRetries:            1,
			ReadTimeout:              3 * time.Second,
			WriteTimeout:             3 * time.Second,
			PoolTimeout:              3 * time.Second,
			ContextTimeoutEnabled:    true,
		})
		s.owns = true
	}
	if err := s.start(ctx); err != nil {
		if s.owns {
			s.cl.Close()
		}
		return nil, err
	}
	sessions[key] = s
	go s.beatLoop()
	return s, nil
}

// release drops a handle's reference; the last one stops the heartbeat and
// deletes it, so that the others see this process's entities dead at once.
func (s *session) release() {
	sessionsMu.Lock()
	s.refs--
	last := s.refs == 0
	if last {
		delete(sessions, s.key)
	}
	sessionsMu.Unlock()
	if !last {
		return
	}
	close(s.stop)
	<-s.done
	s.snd.drain()
	ctx, cancel := context.WithTimeout(context.Background(), time.Second)
	s.cl.Del(ctx, s.k.live(s.id))
	cancel()
	if s.owns {
		s.cl.Close()
	}
}

func randomHex(n int) string {
	b := make([]byte, n)
	rand.Read(b)
	return hex.EncodeToString(b)
}

// start beats once, learning the data set's token: Open fails here when
// Redis does not answer.
func (s *session) start(ctx context.Context) error {
	return s.retry(ctx, true, func(ctx context.Context) error {
		tok := randomHex(8)
		pipe := s.cl.Pipeline()
		pipe.SetNX(ctx, s.k.boot(), tok, 0)
		boot := pipe.Get(ctx, s.k.boot())
		pipe.Set(ctx, s.k.live(s.id), s.node, s.o.ttl)
		pipe.HSet(ctx, s.k.sessions(), s.id, s.node)
		if _, err := pipe.Exec(ctx); err != nil {
			return err
		}
		s.boot = boot.Val()
		return nil
	})
}

// beatLoop beats four times per TTL, and about once per TTL looks for dead
// sessions and terminates what they owned.
func (s *session) beatLoop() {
	defer close(s.done)
	t := time.NewTicker(s.o.ttl / 4)
	defer t.Stop()
	for {
		select {
		case <-s.stop:
			return
		case <-t.C:
		}
		ctx, cancel := context.WithTimeout(context.Background(), s.o.ttl/2)
		err := s.beat(ctx)
		cancel()
		s.mu.Lock()
		was := s.unhealthy
		s.unhealthy = err != nil
		s.reapTurn++
		reap := err == nil && s.reapTurn%4 == 0
		s.mu.Unlock()
		switch {
		case err != nil && !was:
			s.log.Warn("redisx: heartbeat failed", "session", s.id, "node", s.node, "err", err)
		case err == nil && was:
			s.log.Info("redisx: heartbeat back", "session", s.id, "node", s.node)
		}
		if err != nil {
			continue
		}
		s.retryReleases()
		if reap {
			ctx, cancel := context.WithTimeout(context.Background(), s.o.ttl)
			if err := s.reap(ctx); err != nil {
				s.log.Debug("redisx: reaping dead sessions", "err", err)
			}
			cancel()
		}
	}
}

// beat refreshes the heartbeat and checks the data set's token; a new token
// means Redis lost its data (restarted without persistence, failed over to
// a replica that lagged): the session writes back the records of what it
// owns.
func (s *session) beat(ctx context.Context) error {
	pipe := s.cl.Pipeline()
	prev := pipe.SetArgs(ctx, s.k.live(s.id), s.node, redis.SetArgs{TTL: s.o.ttl, Get: true})
	pipe.HSet(ctx, s.k.sessions(), s.id, s.node)
	boot := pipe.Get(ctx, s.k.boot())
	if _, err := pipe.Exec(ctx); err != nil && !errors.Is(err, redis.Nil) {
		return unavailable(err)
	}
	if errors.Is(prev.Err(), redis.Nil) {
		// Our heartbeat had expired: the others may have seen this
		// process dead and terminated what it owned (unless Redis itself
		// was away, or lost its data).
		s.log.Warn("redisx: this process's heartbeat had expired: it may have been seen dead, its mailboxes terminated; a longer WithLivenessTTL avoids this on a busy node",
			"session", s.id, "node", s.node, "ttl", s.o.ttl)
	}
	s.mu.Lock()
	known := s.boot
	s.mu.Unlock()
	if boot.Err() == nil && boot.Val() == known {
		return nil
	}
	// Lost: agree on a new token (the first session to notice sets it).
	if err := s.cl.SetNX(ctx, s.k.boot(), randomHex(8), 0).Err(); err != nil {
		return unavailable(err)
	}
	tok, err := s.cl.Get(ctx, s.k.boot()).Result()
	if err != nil {
		return unavailable(err)
	}
	s.log.Warn("redisx: Redis lost its data; writing back the records this process owns", "session", s.id, "node", s.node)
	if err := s.restoreAll(ctx); err != nil {
		return err
	}
	s.mu.Lock()
	s.boot = tok
	s.mu.Unlock()
	return nil
}

// restoreAll writes back the record of every entity the session owns, when
// missing. Mailbox contents that Redis lost are lost.
func (s *session) restoreAll(ctx context.Context) error {
	s.mu.Lock()
	ents := make([]ownedEntity, 0, len(s.owned))
	for _, e := range s.owned {
		ents = append(ents, *e)
	}
	s.mu.Unlock()
	for _, e := range ents {
		h, ek := s.k.of(e.id)
		err := registerScript.Run(ctx, s.cl, []string{ek.e, s.k.agents(), s.k.owned(s.id)},
			s.k.tag, s.grace, h, roleArg(e.id.Role), e.name, e.beh, s.node, s.id, e.cap, e.inc, "1", e.rcv).Err()
		if err != nil {
			return unavailable(err)
		}
	}
	return nil
}

// reap terminates the entities of dead sessions (answering their queued
// requests) and forgets the sessions.
func (s *session) reap(ctx context.Context) error {
	dead, err := deadSessionsScript.Run(ctx, s.cl, []string{s.k.sessions()}, s.k.tag, s.grace).StringSlice()
	if err != nil {
		return unavailable(err)
	}
	for _, sid := range dead {
		hexes, err := s.cl.SMembers(ctx, s.k.owned(sid)).Result()
		if err != nil {
			return unavailable(err)
		}
		for _, h := range hexes {
			u, err := parseHexID(h)
			if err != nil {
				s.cl.SRem(ctx, s.k.owned(sid), h)
				continue
			}
			if err := s.terminate(ctx, exchange.EntityID{UUID: u}, true); err != nil {
				return err
			}
		}
		if err := forgetSessionScript.Run(ctx, s.cl, []string{s.k.sessions(), s.k.owned(sid)}, s.k.tag, s.grace, sid).Err(); err != nil {
			return unavailable(err)
		}
	}
	return nil
}

// own records that the session owns e (or updates it).
func (s *session) own(e ownedEntity) {
	s.mu.Lock()
	if cur := s.owned[e.id.UUID]; cur != nil && e.beh == "" {
		e.name, e.beh, e.cap = cur.name, cur.beh, cur.cap
	}
	s.owned[e.id.UUID] = &e
	s.mu.Unlock()
}

func (s *session) disown(u exchange.UUID) {
	s.mu.Lock()
	delete(s.owned, u)
	s.mu.Unlock()
}

func (s *session) setReceiver(u exchange.UUID, token string) {
	s.mu.Lock()
	if e := s.owned[u]; e != nil {
		e.rcv = token
	}
	s.mu.Unlock()
}

// noteInc caches the incarnation of id seen in a reply.
func (s *session) noteInc(id exchange.EntityID, inc int64) {
	if inc < 0 || inc > math.MaxUint32 {
		return
	}
	now := time.Now().UnixNano()
	if v, ok := s.incs.Load(id.UUID); ok {
		e := v.(*incEntry)
		if e.inc == uint32(inc) && e.role == id.Role && now-e.at < int64(incFresh)/4 {
			return // fresh enough: spare the allocation
		}
	}
	s.incs.Store(id.UUID, &incEntry{inc: uint32(inc), role: id.Role, at: now})
}

// cachedInc returns a fresh cached incarnation of id.
func (s *session) cachedInc(id exchange.EntityID) (uint32, bool) {
	v, ok := s.incs.Load(id.UUID)
	if !ok {
		return 0, false
	}
	e := v.(*incEntry)
	if e.role != id.Role || time.Now().UnixNano()-e.at > int64(incFresh) {
		return 0, false
	}
	return e.inc, true
}

func roleArg(r exchange.Role) string { return strconv.Itoa(int(r)) }

// Failures. A command that failed before it reached Redis (no connection,
// the server loading its data) certainly did nothing: it is retried while
// the outage wait and the context allow. One whose connection broke after
// it was written may have run: only idempotent ones are retried.

// unavailable wraps a network failure in ErrUnavailable; other errors are
// returned as they are, Redis error replies wrapped in ErrProtocol.
func unavailable(err error) error {
	switch {
	case err == nil, errors.Is(err, ErrUnavailable), errors.Is(err, ErrProtocol):
		return err
	case errors.Is(err, context.Canceled), errors.Is(err, context.DeadlineExceeded):
		if isNetErr(err) {
			return fmt.Errorf("%w: %w", ErrUnavailable, err)
		}
		return err
	case isNetErr(err), errors.Is(err, redis.ErrPoolTimeout), errors.Is(err, redis.ErrClosed), isTransientReply(err):
		return fmt.Errorf("%w: %w", ErrUnavailable, err)
	}
	var re redis.Error
	if errors.As(err, &re) {
		return fmt.Errorf("%w: %w", ErrProtocol, err)
	}
	return err
}

func isNetErr(err error) bool {
	var ne net.Error
	var op *net.OpError
	return errors.As(err, &ne) || errors.As(err, &op) || errors.Is(err, io.EOF) ||
		errors.Is(err, io.ErrUnexpectedEOF) || errors.Is(err, syscall.ECONNREFUSED) ||
		errors.Is(err, syscall.ECONNRESET) || errors.Is(err, syscall.EPIPE)
}

// isTransientReply reports a Redis error reply that means "not now" (the
// command did not run): the server is loading its data, or busy with a
// script.
func isTransientReply(err error) bool {
	return redis.HasErrorPrefix(err, "LOADING") || redis.HasErrorPrefix(err, "BUSY") ||
		redis.HasErrorPrefix(err, "TRYAGAIN") || redis.HasErrorPrefix(err, "MASTERDOWN")
}

// notRun reports whether a failed command certainly did not run.
func notRun(err error) bool {
	var op *net.OpError
	return errors.As(err, &op) && op.Op == "dial" || errors.Is(err, syscall.ECONNREFUSED) ||
		errors.Is(err, redis.ErrPoolTimeout) || isTransientReply(err)
}

// retry runs f until it succeeds, fails for good, or the outage wait (from
// the first failure) or ctx runs out. Unless idempotent, f is retried only
// after failures that prove it did not run.
func (s *session) retry(ctx context.Context, idempotent bool, f func(context.Context) error) error {
	var since time.Time
	backoff := 5 * time.Millisecond
	for {
		err := f(ctx)
		if err == nil || errors.Is(err, redis.Nil) {
			return err
		}
		if errors.Is(err, redis.ErrClosed) {
			return fmt.Errorf("%w: %w", exchange.ErrExchangeClosed, err)
		}
		if !(notRun(err) || idempotent && isNetErr(err)) {
			return unavailable(err)
		}
		if since.IsZero() {
			since = time.Now()
		}
		if time.Since(since) >= s.o.outage {
			return fmt.Errorf("%w for %v: %w", ErrUnavailable, s.o.outage, err)
		}
		if ctx.Err() != nil {
			return fmt.Errorf("%w: %w", ctx.Err(), unavailable(err))
		}
		t := time.NewTimer(backoff)
		select {
		case <-ctx.Done():
			t.Stop()
			return fmt.Errorf("%w: %w", ctx.Err(), unavailable(err))
		case <-t.C:
		}
		backoff = min(backoff*2, 200*time.Millisecond)
	}
}

// terminate terminates the mailbox of u (only when its owner is dead, with
// onlyIfDead) and answers the requests that were queued in it.
// A zero role matches either.
func (s *session) terminate(ctx context.Context, id exchange.EntityID, onlyIfDead bool) error {
	u := id.UUID
	h, ek := s.k.of(id)
	role := ""
	if id.Role != 0 {
		role = roleArg(id.Role)
	}
	dead := "0"
	if onlyIfDead {
		dead = "1"
	}
	var res []any
	err := s.retry(ctx, true, func(ctx context.Context) error {
		var err error
		res, err = terminateScript.Run(ctx, s.cl, []string{ek.e, s.k.agents()}, s.k.tag, s.grace, h, dead, role).Slice()
		return err
	})
	if err != nil {
		return err
	}
	if len(res) == 0 {
		return fmt.Errorf("%w: terminate returned nothing", ErrProtocol)
	}
	if code, _ := res[0].(int64); code != 1 {
		return nil
	}
	s.disown(u)
	if onlyIfDead {
		s.log.Info("redisx: owner of mailbox died; terminated it", "session", s.id, "mailbox", h)
	}
	s.answerRaw(ctx, u, res[1:])
	return nil
}

// answerRaw answers the requests a terminate script took out of the
// mailbox of u (encoded messages), decoding each once; what does not
// decode as a request is skipped.
func (s *session) answerRaw(ctx context.Context, u exchange.UUID, raw []any) {
	reqs := make([]*exchange.Message, 0, len(raw))
	for _, r := range raw {
		b, ok := r.(string)
		if !ok {
			continue
		}
		m := new(exchange.Message)
		if m.Decode(unsafe.Slice(unsafe.StringData(b), len(b))) == nil { // Decode copies; never written
			reqs = append(reqs, m)
		}
	}
	s.answer(ctx, u, reqs...)
}

// answer sends the error responses to requests found queued in the
// terminated mailbox of u, each to its sender, waiting a short while for
// space; requesters that are gone are skipped, other failures logged.
// reqs are not modified.
func (s *session) answer(ctx context.Context, u exchange.UUID, reqs ...*exchange.Message) {
	if len(reqs) == 0 {
		return
	}
	ctx = context.WithoutCancel(ctx)
	var wg sync.WaitGroup
	for _, req := range reqs {
		if !req.Kind.IsRequest() {
			continue
		}
		id := req.Dest
		m := req.ErrorResponse(&exchange.RemoteError{Kind: exchange.ErrorKindMailboxTerminated, Message: "mailbox " + id.String() + " was terminated"})
		wg.Add(1)
		go func() {
			defer wg.Done()
			c, cancel := context.WithTimeout(ctx, 50*time.Millisecond+s.o.outage)
			defer cancel()
			if _, err := s.send(c, m, 50*time.Millisecond); err != nil &&
				!errors.Is(err, exchange.ErrBadEntityID) && !errors.Is(err, exchange.ErrMailboxClosed) {
				s.log.Warn("redisx: could not answer a request queued in a terminated mailbox", "mailbox", id, "sender", m.Dest, "err", err)
			}
		}()
	}
	wg.Wait()
}

func (s *session) retryReleases() {
	s.mu.Lock()
	pend := make([]*mailbox, 0, len(s.releases))
	for _, mb := range s.releases {
		pend = append(pend, mb)
	}
	s.mu.Unlock()
	for _, mb := range pend {
		ctx, cancel := context.WithTimeout(context.Background(), s.o.ttl/2)
		err := mb.release(ctx)
		cancel()
		if err == nil {
			s.mu.Lock()
			delete(s.releases, mb.token)
			s.mu.Unlock()
		}
	}
}

// pin takes a connection of the session's pool for one user alone: its
// pipelines skip the pool, whose checkout costs a health-check syscall
// each time. Only receivers pin: a take whose connection died unseen (a
// server restarted between two takes) fails as a lost reply, which the
// receiver recovers from (see mailbox.recover), whereas a send must learn
// from the pool's check that its command certainly did not run, to retry
// it. Nil when the client is not a *redis.Client (a cluster client, given
// with WithClient): the pipelines then go through the client.
func (s *session) pin() *redis.Conn {
	if c, ok := s.cl.(*redis.Client); ok {
		return c.Conn()
	}
	return nil
}

// pipeline returns a pipeline on c, or on the client when c is nil.
func (s *session) pipeline(c *redis.Conn) redis.Pipeliner {
	if c != nil {
		return c.Pipeline()
	}
	return s.cl.Pipeline()
}

// unpin closes c when err says that it may be unusable (anything but a
// reply of the server): the next pipeline pins a new one. It returns c, or
// nil when c was closed.
func unpin(c *redis.Conn, err error) *redis.Conn {
	if c == nil || err == nil {
		return c
	}
	var re redis.Error
	if errors.As(err, &re) {
		return c
	}
	c.Close()
	return nil
}

// pinRecv pins a connection for a receiver, unless receivers already hold
// half the pool: the others take theirs from the pool at each take, as
// senders and the registry's calls must still find some there.
func (s *session) pinRecv() *redis.Conn {
	if int(s.pinnedRecv.Add(1)) > s.o.poolSize/2 {
		s.pinnedRecv.Add(-1)
		return nil
	}
	c := s.pin()
	if c == nil {
		s.pinnedRecv.Add(-1)
	}
	return c
}

// unpinRecv is unpin for a receiver's connection.
func (s *session) unpinRecv(c *redis.Conn, err error) *redis.Conn {
	if c != nil && unpin(c, err) == nil {
		s.pinnedRecv.Add(-1)
		return nil
	}
	return c
}
