package proxystore

import (
	"context"
	"crypto/rand"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"fmt"
	"hash/crc32"
	"math"
	"strconv"
	"sync/atomic"
	"time"
	"unsafe"

	"github.com/redis/go-redis/v9"
	"github.com/redis/go-redis/v9/maintnotifications"
)

// KindRedis marks the proxies of a [RedisStore]: the payload is a value in
// Redis, which every node that reaches the server can resolve.
const KindRedis Kind = 4

// ErrStoreUnreachable reports that a store's backing service (the Redis
// server of a RedisStore) could not be reached; it wraps the network error.
var ErrStoreUnreachable = errors.New("proxystore: store unreachable")

// DefaultRedisMaxPayload is the largest payload a RedisStore takes by
// default: Redis refuses values over its proto-max-bulk-len (512 MB by
// default).
const DefaultRedisMaxPayload = 512<<20 - redisHeaderSize

// Layout of a payload's value in Redis: a header, then the payload.
//
//	off  size  field
//	0    8     magic "SHMXRED1"
//	8    1     lifetime (Owned, SingleUse, Leased)
//	9    3     zero
//	12   4     CRC-32C of the payload
//	16   8     payload length, little endian
//	24   8     lease deadline, Unix nanoseconds (Leased), else 0
const (
	redisHeaderSize = 32
	redisMagic      = "SHMXRED1"
	// redisLeaseSlack is how long after its deadline Redis keeps a leased
	// payload, so that a late resolve says ErrExpired rather than stale.
	redisLeaseSlack = time.Minute
)

var redisCRC = crc32.MakeTable(crc32.Castagnoli)

// RedisOption configures [OpenRedisStore].
type RedisOption func(*redisOptions)

type redisOptions struct {
	addr       string
	client     redis.UniversalClient
	prefix     string
	maxPayload int64
}

// WithRedisAddr sets the Redis server's host:port (default 127.0.0.1:6379).
func WithRedisAddr(addr string) RedisOption { return func(o *redisOptions) { o.addr = addr } }

// WithRedisClient uses c (a *redis.Client or *redis.ClusterClient) instead
// of a client of the store's own; the store does not close it.
func WithRedisClient(c redis.UniversalClient) RedisOption {
	return func(o *redisOptions) { o.client = c }
}

// WithRedisPrefix sets the key prefix (default "shmex"): stores with the
// same server and prefix share one StoreID and resolve each other's
// proxies. Payload keys are "<prefix>:p:{<segment>}" (each its own Redis
// Cluster hash slot); the store's id is "{<prefix>}:pstore".
func WithRedisPrefix(p string) RedisOption { return func(o *redisOptions) { o.prefix = p } }

// WithRedisMaxPayload bounds the payloads Put and Alloc take
// (default DefaultRedisMaxPayload).
func WithRedisMaxPayload(n int64) RedisOption {
	return func(o *redisOptions) { o.maxPayload = min(max(n, 0), DefaultRedisMaxPayload) }
}

// RedisStore is a [Store] of payloads kept as values in Redis, as
// ProxyStore's Redis connector does: every process of every node that
// reaches the server resolves them, at the cost of a copy in and a copy
// out over the network. It is the store for payloads that cross nodes (see
// [RouteStore]).
//
// Put and Alloc (backed by a heap buffer) write the value with one SET;
// Resolve reads it with one GET and checks it (magic, length, CRC-32C)
// before it hands out a view of the bytes read, which stays valid after
// Release and Close (it is process memory, read-only by contract). Any
// process may Free a payload. Single-use payloads are deleted by the
// first Release; leased ones resolve with [ErrExpired] after their
// deadline and are deleted by Redis a minute later. A payload whose key
// is gone is [ErrStaleProxy]; Redis unreachable is [ErrStoreUnreachable].
type RedisStore struct {
	cl     redis.UniversalClient
	owns   bool
	o      redisOptions
	id     StoreID
	closed atomic.Bool
}

var _ Store = (*RedisStore)(nil)

// OpenRedisStore connects to Redis (within ctx) and returns the store of
// the prefix, creating its id at first use. Like every store, it is listed
// among the stores of this process (StoreFor) until its Close.
func OpenRedisStore(ctx context.Context, opts ...RedisOption) (*RedisStore, error) {
	o := redisOptions{addr: "127.0.0.1:6379", prefix: "shmex", maxPayload: DefaultRedisMaxPayload}
	for _, f := range opts {
		if f != nil {
			f(&o)
		}
	}
	s := &RedisStore{o: o, cl: o.client}
	if s.cl == nil {
		s.cl = redis.NewClient(&redis.Options{
			Addr:                     o.addr,
			Protocol:                 2,
			DisableIdentity:          true,
			MaintNotificationsConfig: &maintnotifications.Config{Mode: maintnotifications.ModeDisabled},
			MaxRetries:               -1,
			DialTimeout:              time.Second,
			DialerRetries:            1,
			ReadTimeout:              30 * time.Second, // a large value takes a while
			WriteTimeout:             30 * time.Second,
			ContextTimeoutEnabled:    true,
		})
		s.owns = true
	}
	idKey := "{" + o.prefix + "}:pstore"
	fresh := NewStoreID()
	pipe := s.cl.Pipeline()
	pipe.SetNX(ctx, idKey, hex.EncodeToString(fresh[:]), 0)
	get := pipe.Get(ctx, idKey)
	if _, err := pipe.Exec(ctx); err != nil {
		s.Close()
		return nil, s.fail("open", err)
	}
	b, err := hex.DecodeString(get.Val())
	if err != nil || len(b) != len(s.id) {
		s.Close()
		return nil, fmt.Errorf("%w: %s holds %q, not a store id", ErrCorrupt, idKey, get.Val())
	}
	copy(s.id[:], b)
	register(s) // for decoders that meet its proxies (see StoreFor)
	return s, nil
}

// ID returns the store's id, shared by every RedisStore of the server and
// prefix.
func (s *RedisStore) ID() StoreID { return s.id }

// Prefix returns the key prefix.
func (s *RedisStore) Prefix() string { return s.o.prefix }

func (s *RedisStore) key(segment uint64) string {
	return s.o.prefix + ":p:{" + strconv.FormatUint(segment, 16) + "}"
}

// fail wraps a Redis error: a network failure in ErrStoreUnreachable.
func (s *RedisStore) fail(op string, err error) error {
	var re redis.Error
	switch {
	case errors.Is(err, context.Canceled), errors.Is(err, context.DeadlineExceeded):
		return fmt.Errorf("proxystore: redis store %s: %w", op, err)
	case errors.As(err, &re) && !redis.HasErrorPrefix(err, "LOADING"):
		return fmt.Errorf("proxystore: redis store %s: %w", op, err)
	}
	return fmt.Errorf("%w: redis store %s at %s: %w", ErrStoreUnreachable, op, s.o.addr, err)
}

func (s *RedisStore) check() error {
	if s.closed.Load() {
		return ErrClosed
	}
	return nil
}

// Put copies b into Redis (one SET) and returns its proxy.
func (s *RedisStore) Put(ctx context.Context, b []byte, opts ...PutOption) (Proxy, error) {
	l, err := s.Alloc(ctx, len(b), opts...)
	if err != nil {
		return Proxy{}, err
	}
	copy(l.Bytes(), b)
	return l.Commit()
}

// Alloc lends a heap buffer of n bytes; Commit writes it to Redis.
func (s *RedisStore) Alloc(ctx context.Context, n int, opts ...PutOption) (Loan, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	if err := s.check(); err != nil {
		return nil, err
	}
	if n < 0 || int64(n) > s.o.maxPayload {
		return nil, fmt.Errorf("%w: %d-byte payload, the Redis store takes at most %d", ErrStoreFull, n, s.o.maxPayload)
	}
	o, err := putOptions(opts)
	if err != nil {
		return nil, err
	}
	return &redisLoan{s: s, ctx: context.WithoutCancel(ctx), buf: make([]byte, redisHeaderSize+n), o: o}, nil
}

type redisLoan struct {
	s    *RedisStore
	ctx  context.Context
	buf  []byte // header, then the payload
	o    PutOptions
	done atomic.Bool
}

func (l *redisLoan) Bytes() []byte { return l.buf[redisHeaderSize:] }

func (l *redisLoan) Abort() error {
	if l.done.Swap(true) {
		return ErrReleased
	}
	l.buf = nil
	return nil
}

func (l *redisLoan) Commit() (Proxy, error) {
	if l.done.Swap(true) {
		return Proxy{}, ErrReleased
	}
	s := l.s
	if err := s.check(); err != nil {
		return Proxy{}, err
	}
	data := l.buf[redisHeaderSize:]
	h := l.buf[:redisHeaderSize]
	copy(h, redisMagic)
	h[8] = byte(l.o.Lifetime)
	le := binary.LittleEndian
	le.PutUint32(h[12:], crc32.Checksum(data, redisCRC))
	le.PutUint64(h[16:], uint64(len(data)))
	var expire time.Duration
	if l.o.Lifetime == Leased {
		le.PutUint64(h[24:], uint64(l.o.Deadline.UnixNano()))
		expire = max(time.Until(l.o.Deadline)+redisLeaseSlack, time.Millisecond)
	}
	seg := randomSegment()
	if err := s.cl.Set(l.ctx, s.key(seg), l.buf, expire).Err(); err != nil {
		return Proxy{}, s.fail("put", err)
	}
	l.buf = nil
	return Proxy{Store: s.id, Kind: uint8(KindRedis), Segment: seg, Length: uint64(len(data)), Generation: 1}, nil
}

func randomSegment() uint64 {
	var b [8]byte
	for {
		rand.Read(b[:])
		if v := binary.LittleEndian.Uint64(b[:]); v != 0 {
			return v
		}
	}
}

// checkProxy checks what can be checked without Redis.
func (s *RedisStore) checkProxy(p Proxy) error {
	switch {
	case StoreID(p.Store) != s.id:
		return fmt.Errorf("%w: %v is not of Redis store %v (prefix %q)", ErrForeignProxy, p, s.id, s.o.prefix)
	case Kind(p.Kind) != KindRedis || p.Offset != 0 || p.Generation != 1 || p.Segment == 0:
		return fmt.Errorf("%w: %v", ErrBadProxy, p)
	case p.Length > uint64(s.o.maxPayload):
		return fmt.Errorf("%w: %v: longer than the store's largest payload", ErrBadProxy, p)
	}
	return nil
}

// Resolve reads the payload (one GET) and checks it.
func (s *RedisStore) Resolve(ctx context.Context, p Proxy) (View, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	if err := s.check(); err != nil {
		return nil, err
	}
	if err := s.checkProxy(p); err != nil {
		return nil, err
	}
	val, err := s.cl.Get(ctx, s.key(p.Segment)).Result()
	if errors.Is(err, redis.Nil) {
		return nil, fmt.Errorf("%w: %v: gone from Redis (freed, used once, or expired)", ErrStaleProxy, p)
	}
	if err != nil {
		return nil, s.fail("resolve", err)
	}
	// A view of the string's bytes, no copy: read-only by the View
	// contract, and never written here.
	data, life, deadline, err := parseRedisValue(unsafe.Slice(unsafe.StringData(val), len(val)), p)
	if err != nil {
		return nil, err
	}
	if life == Leased && time.Now().After(deadline) {
		s.cl.Del(context.WithoutCancel(ctx), s.key(p.Segment))
		return nil, fmt.Errorf("%w: %v: lease ended at %v", ErrExpired, p, deadline.Format(time.RFC3339Nano))
	}
	return &redisView{s: s, p: p, b: data, evict: life == SingleUse}, nil
}

// parseRedisValue checks a value read from Redis for proxy p (it may have
// been written by anyone) and returns its payload (aliasing b), lifetime
// and lease deadline.
func parseRedisValue(b []byte, p Proxy) (data []byte, life Lifetime, deadline time.Time, err error) {
	if len(b) < redisHeaderSize || string(b[:8]) != redisMagic {
		return nil, 0, time.Time{}, fmt.Errorf("%w: %v: the value is not a payload of this store", ErrCorrupt, p)
	}
	le := binary.LittleEndian
	life = Lifetime(b[8])
	n := le.Uint64(b[16:])
	data = b[redisHeaderSize:len(b):len(b)]
	switch {
	case life > Leased:
		return nil, 0, time.Time{}, fmt.Errorf("%w: %v: lifetime %d", ErrCorrupt, p, life)
	case n != uint64(len(data)) || n != p.Length:
		return nil, 0, time.Time{}, fmt.Errorf("%w: %v: value holds %d bytes, header says %d", ErrCorrupt, p, len(data), n)
	case crc32.Checksum(data, redisCRC) != le.Uint32(b[12:]):
		return nil, 0, time.Time{}, fmt.Errorf("%w: %v: checksum mismatch", ErrCorrupt, p)
	}
	if life == Leased {
		dl := le.Uint64(b[24:])
		if dl > math.MaxInt64 {
			return nil, 0, time.Time{}, fmt.Errorf("%w: %v: lease deadline out of range", ErrCorrupt, p)
		}
		deadline = time.Unix(0, int64(dl))
	}
	return data, life, deadline, nil
}

type redisView struct {
	s        *RedisStore
	p        Proxy
	b        []byte
	evict    bool
	released atomic.Bool
}

func (v *redisView) Bytes() []byte   { return v.b }
func (v *redisView) singleUse() bool { return v.evict }
func (v *redisView) Proxy() Proxy    { return v.p }

// Release drops the view; the first Release of a single-use payload
// deletes it from Redis.
func (v *redisView) Release() error {
	if v.released.Swap(true) {
		return ErrReleased
	}
	if v.evict && !v.s.closed.Load() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		if err := v.s.cl.Del(ctx, v.s.key(v.p.Segment)).Err(); err != nil {
			return v.s.fail("evict", err)
		}
	}
	return nil
}

// Free deletes the payload ([ErrStaleProxy] when it is gone already).
func (s *RedisStore) Free(ctx context.Context, p Proxy) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	if err := s.check(); err != nil {
		return err
	}
	if err := s.checkProxy(p); err != nil {
		return err
	}
	n, err := s.cl.Del(ctx, s.key(p.Segment)).Result()
	if err != nil {
		return s.fail("free", err)
	}
	if n == 0 {
		return fmt.Errorf("%w: %v", ErrStaleProxy, p)
	}
	return nil
}

// Close closes the store's own client; payloads stay in Redis (single-use
// and leased ones go as their lifetimes say, owned ones when freed).
// Views stay valid.
func (s *RedisStore) Close() error {
	if s.closed.Swap(true) {
		return nil
	}
	unregister(s)
	if s.owns {
		return s.cl.Close()
	}
	return nil
}
