package redisx

import (
	"log/slog"
	"os"
	"time"

	"github.com/redis/go-redis/v9"
)

// Defaults.
const (
	// DefaultAddr is the Redis server used when no WithAddr or WithClient
	// is given.
	DefaultAddr = "127.0.0.1:6379"
	// DefaultPrefix is the default key prefix.
	DefaultPrefix = "shmex"
	// DefaultMailboxCapacity is the number of messages a mailbox holds
	// before Send waits for space.
	DefaultMailboxCapacity = 65536
	// DefaultLivenessTTL is how long a session's heartbeat lives: a process
	// that stops beating (killed, or cut off from Redis) is seen dead at
	// most this long after its last beat. A live process whose heartbeat
	// goroutine is starved for that long is seen dead too: on busy nodes,
	// prefer a longer TTL.
	DefaultLivenessTTL = 5 * time.Second
	// DefaultOutageWait bounds how long an operation waits for Redis to
	// come back (reconnecting) before it fails with ErrUnavailable, when
	// its context allows that long.
	DefaultOutageWait = 5 * time.Second
	// DefaultRecvBatch is how many messages a receive returns per round
	// trip when several are queued.
	DefaultRecvBatch = 64
	// maxSendBatch bounds the messages of one send script.
	maxSendBatch = 256
)

// Option configures Open and OpenHybrid.
type Option func(*options)

type options struct {
	addr     string
	client   redis.UniversalClient
	prefix   string
	node     string
	capacity int
	ttl      time.Duration
	outage   time.Duration
	batch    int
	poolSize int
	log      *slog.Logger
}

func defaultOptions() options {
	node, err := os.Hostname()
	if err != nil || node == "" {
		node = "localhost"
	}
	return options{
		addr:     DefaultAddr,
		prefix:   DefaultPrefix,
		node:     node,
		capacity: DefaultMailboxCapacity,
		ttl:      DefaultLivenessTTL,
		outage:   DefaultOutageWait,
		batch:    DefaultRecvBatch,
		poolSize: 256,
	}
}

// WithAddr sets the Redis server's host:port (default DefaultAddr).
func WithAddr(addr string) Option { return func(o *options) { o.addr = addr } }

// WithClient uses c instead of a client of its own (a *redis.Client, or a
// *redis.ClusterClient for Redis Cluster). The exchange does not close it.
// The client should not retry commands by itself (MaxRetries -1): a
// retried send can deliver twice.
func WithClient(c redis.UniversalClient) Option { return func(o *options) { o.client = c } }

// WithPrefix sets the key prefix (default DefaultPrefix): exchanges with
// different prefixes share a server without seeing each other. Every key
// of the exchange starts with "{prefix}:" (a Redis Cluster hash tag).
func WithPrefix(p string) Option { return func(o *options) { o.prefix = p } }

// WithNode names the node this handle runs on (default the host name). The
// entities it registers are recorded as living there; the hybrid exchange
// routes by it. Handles of one process with different node names are
// separate participants (separate sessions), which is how tests simulate
// several nodes in one process.
func WithNode(name string) Option { return func(o *options) { o.node = name } }

// WithMailboxCapacity sets how many messages each mailbox this handle
// registers holds before Send waits for space (default
// DefaultMailboxCapacity). It bounds the mailbox's queue; its receiver's
// taken list, which holds what a take moved and Recv has not returned
// yet, can hold as many more (a take moves the whole queue at once).
func WithMailboxCapacity(n int) Option { return func(o *options) { o.capacity = max(n, 1) } }

// WithLivenessTTL sets how long a heartbeat lives (default
// DefaultLivenessTTL); the session beats four times per TTL. Every process
// of an exchange should use the same: a dead process is seen dead at most
// this long after its last beat (a live one is never, unless it cannot
// reach Redis for that long).
func WithLivenessTTL(d time.Duration) Option {
	return func(o *options) { o.ttl = max(d, 200*time.Millisecond) }
}

// WithOutageWait bounds how long an operation keeps reconnecting to an
// unreachable Redis before it fails with ErrUnavailable (default
// DefaultOutageWait; the caller's context may end it sooner).
func WithOutageWait(d time.Duration) Option { return func(o *options) { o.outage = max(d, 0) } }

// WithRecvBatch sets how many queued messages a receiver reads per round
// trip (default DefaultRecvBatch). They are acknowledged together at the
// next take: a receiver that dies may have a whole batch delivered again
// (see the package documentation on delivery); what it moved to its
// taken list and did not read goes back to the mailbox, undelivered.
func WithRecvBatch(n int) Option { return func(o *options) { o.batch = min(max(n, 1), 1024) } }

// WithPoolSize sets the connection pool size of the client the exchange
// makes (default 256): every receiver blocked in Recv holds a connection.
func WithPoolSize(n int) Option { return func(o *options) { o.poolSize = max(n, 4) } }

// WithLogger sets the logger. By default warnings and errors (among them
// an asynchronous send that failed after SendAsync returned) go to
// slog.Default, and nothing else, as in the rest of shmex.
func WithLogger(l *slog.Logger) Option { return func(o *options) { o.log = l } }
