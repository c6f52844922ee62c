//go:build linux

package bench

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"strconv"
	"sync"
	"syscall"
	"time"

	"github.com/redis/go-redis/v9"
	"github.com/redis/go-redis/v9/maintnotifications"
)

// Metric names of the Redis peer, for CompareTo.
const (
	MetricRedisRTT        = "redis.rtt_ns"
	MetricRedisThroughput = "redis.throughput_msgs"
)

func init() {
	Register(Scenario{
		Name: "redis", Rank: RankPeer + 3,
		Doc: "Redis lists as Academy's Redis exchange uses them (LPUSH, BRPOP) against a local redis-server " +
			"started for the run: 64-byte round trip with a child process, one-way throughput",
		Metrics: []string{MetricRedisRTT, MetricRedisThroughput},
		Run:     runRedis,
	})
	RegisterChild("redis-peer", childRedisPeer)
}

// Redis protocol between the parent and the redis-peer child, on lists named
// <prefix>:req (parent to child), <prefix>:resp and <prefix>:done (child to
// parent). The first byte of a message on req says what to do with it.
const (
	redisEcho = 'E' // push the message back on resp
	redisAck  = 'A' // push a MsgSize-byte acknowledgement on resp
	redisSink = 'S' // count it
	redisEnd  = 'N' // push the count of sink messages since the last end on done
	redisStop = 'Q' // exit
)

// FindRedisServer resolves the redis-server program of a Config: the path to
// run, or a reason to skip the Redis rows.
func FindRedisServer(name string) (path, skip string) {
	switch name {
	case "none", "-":
		return "", "Redis disabled (--redis-server=none)"
	case "":
		name = "redis-server"
	}
	p, err := exec.LookPath(name)
	if err != nil {
		return "", fmt.Sprintf("%s not found (install redis-server or pass --redis-server PATH)", name)
	}
	return p, ""
}

// RedisServer is a redis-server process started for a run on a free
// loopback port, with persistence off. It dies with the parent.
type RedisServer struct {
	// Addr is the server's host:port.
	Addr string

	cmd  *exec.Cmd
	dir  string
	out  *syncBuffer
	done chan struct{}
}

// StartRedisServer starts the redis-server at path on a free loopback port
// and waits until it answers PING, at most timeout.
func StartRedisServer(ctx context.Context, path string, timeout time.Duration, log interface {
	Debug(string, ...any)
}) (*RedisServer, error) {
	dir, err := os.MkdirTemp("", "shmbench-redis-")
	if err != nil {
		return nil, err
	}
	var lastErr error
	for attempt := 0; attempt < 3; attempt++ {
		port, err := freePort()
		if err != nil {
			os.RemoveAll(dir)
			return nil, err
		}
		s := &RedisServer{Addr: net.JoinHostPort("127.0.0.1", strconv.Itoa(port)), dir: dir,
			out: &syncBuffer{}, done: make(chan struct{})}
		s.cmd = exec.Command(path, "--port", strconv.Itoa(port), "--bind", "127.0.0.1",
			"--save", "", "--appendonly", "no", "--protected-mode", "yes", "--daemonize", "no",
			"--dir", dir, "--loglevel", "warning")
		s.cmd.Stdout, s.cmd.Stderr = s.out, s.out
		s.cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
		if err := s.cmd.Start(); err != nil {
			os.RemoveAll(dir)
			return nil, fmt.Errorf("bench: start %s: %w", path, err)
		}
		go func() { s.cmd.Wait(); close(s.done) }()
		log.Debug("redis-server started", "addr", s.Addr, "pid", s.cmd.Process.Pid)
		if lastErr = s.waitReady(ctx, timeout); lastErr == nil {
			return s, nil
		}
		s.kill()
		if ctx.Err() != nil {
			break
		}
	}
	os.RemoveAll(dir)
	return nil, lastErr
}

// waitReady polls the server with PING until it answers +PONG.
func (s *RedisServer) waitReady(ctx context.Context, timeout time.Duration) error {
	deadline := time.Now().Add(timeout)
	for {
		conn, err := net.DialTimeout("tcp", s.Addr, 200*time.Millisecond)
		if err == nil {
			conn.SetDeadline(time.Now().Add(time.Second))
			_, err = conn.Write([]byte("PING\r\n"))
			buf := make([]byte, 7)
			var n int
			if err == nil {
				n, err = conn.Read(buf)
			}
			conn.Close()
			if err == nil && bytes.HasPrefix(buf[:n], []byte("+PONG")) {
				return nil
			}
		}
		select {
		case <-s.done:
			return fmt.Errorf("bench: redis-server exited at start: %s", bytes.TrimSpace(s.out.Bytes()))
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(20 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("bench: redis-server on %s not ready within %v", s.Addr, timeout)
		}
	}
}

func (s *RedisServer) kill() {
	s.cmd.Process.Signal(syscall.SIGKILL)
	select {
	case <-s.done:
	case <-time.After(5 * time.Second):
	}
}

// Close kills the server and removes its directory.
func (s *RedisServer) Close() error {
	s.kill()
	return os.RemoveAll(s.dir)
}

// freePort returns a loopback TCP port that was free a moment ago.
func freePort() (int, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, err
	}
	defer ln.Close()
	return ln.Addr().(*net.TCPAddr).Port, nil
}

// syncBuffer is a bytes.Buffer safe for concurrent use.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.b.Len() > 64<<10 {
		return len(p), nil
	}
	return b.b.Write(p)
}

func (b *syncBuffer) Bytes() []byte {
	b.mu.Lock()
	defer b.mu.Unlock()
	return bytes.Clone(b.b.Bytes())
}

// NewRedisClient returns a plain go-redis client for addr: RESP2, no
// identity or maintenance handshakes, a small pool, no retries (a failure is
// reported, not hidden).
func NewRedisClient(addr string, timeout time.Duration) *redis.Client {
	return redis.NewClient(&redis.Options{
		Addr:                     addr,
		Protocol:                 2,
		DisableIdentity:          true,
		MaintNotificationsConfig: &maintnotifications.Config{Mode: maintnotifications.ModeDisabled},
		PoolSize:                 2,
		MaxRetries:               -1,
		DialTimeout:              timeout,
		ReadTimeout:              timeout,
		WriteTimeout:             timeout,
	})
}

// redisPeer is the parent side of the Redis scenarios: a redis-server
// started for the run, a redis-peer child serving the lists of prefix on it,
// and a client.
type redisPeer struct {
	srv     *RedisServer
	child   *Child
	cl      *redis.Client
	req     string
	resp    string
	done    string
	timeout time.Duration
	msg     [MsgSize]byte
}

// startRedisPeer starts the redis-server at path, and a redis-peer child on
// the lists named after prefix, and waits until the child is ready.
func startRedisPeer(ctx context.Context, env *Env, path, prefix string) (*redisPeer, error) {
	srv, err := StartRedisServer(ctx, path, env.ChildTimeout, env.Logger)
	if err != nil {
		return nil, err
	}
	child, err := env.StartChild(ctx, "redis-peer", srv.Addr, prefix)
	if err != nil {
		srv.Close()
		return nil, err
	}
	if _, err := child.Expect(ctx, "ready"); err != nil {
		child.Close()
		srv.Close()
		return nil, err
	}
	return &redisPeer{srv: srv, child: child, cl: NewRedisClient(srv.Addr, env.ChildTimeout),
		req: prefix + ":req", resp: prefix + ":resp", done: prefix + ":done", timeout: env.ChildTimeout}, nil
}

// close tells the child to stop, waits for it and returns its exit error;
// then it stops the child, the client and the server whatever happened.
func (p *redisPeer) close(ctx context.Context) error {
	err := p.cl.LPush(ctx, p.req, []byte{redisStop}).Err()
	if err == nil {
		if err = p.child.Wait(); err != nil {
			err = fmt.Errorf("bench: redis-peer: %w", err)
		}
	}
	p.child.Close()
	p.cl.Close()
	p.srv.Close()
	return err
}

// pop waits for the next answer on the resp list.
func (p *redisPeer) pop(ctx context.Context) (string, error) {
	v, err := p.cl.BRPop(ctx, p.timeout, p.resp).Result()
	if errors.Is(err, redis.Nil) {
		return "", fmt.Errorf("bench: no Redis answer within %v", p.timeout)
	}
	if err != nil {
		return "", err
	}
	if len(v) != 2 {
		return "", fmt.Errorf("bench: bad Redis answer of %d parts", len(v))
	}
	return v[1], nil
}

// rtt pushes one echo message and pops the answer.
func (p *redisPeer) rtt(ctx context.Context) error {
	p.msg[0] = redisEcho
	p.msg[1]++
	if err := p.cl.LPush(ctx, p.req, p.msg[:]).Err(); err != nil {
		return err
	}
	v, err := p.pop(ctx)
	if err != nil {
		return err
	}
	if len(v) != MsgSize || v[1] != p.msg[1] {
		return fmt.Errorf("bench: bad Redis answer %q", v)
	}
	return nil
}

// ack pushes msg, whose first byte is redisAck, and pops the child's
// MsgSize-byte acknowledgement.
func (p *redisPeer) ack(ctx context.Context, msg []byte) error {
	if err := p.cl.LPush(ctx, p.req, msg).Err(); err != nil {
		return err
	}
	v, err := p.pop(ctx)
	if err != nil {
		return err
	}
	if len(v) != MsgSize {
		return fmt.Errorf("bench: Redis acknowledgement of %d bytes", len(v))
	}
	return nil
}

// throughput pushes sink messages for one phase, then an end marker, and
// waits for the child's count.
func (p *redisPeer) throughput(ctx context.Context, ph Phase) (int64, time.Duration, error) {
	var msg [MsgSize]byte
	msg[0] = redisSink
	start := time.Now()
	n, _, err := ph.Loop(ctx, func() error {
		msg[1]++
		return p.cl.LPush(ctx, p.req, msg[:]).Err()
	})
	if err != nil {
		return 0, 0, err
	}
	if err := p.cl.LPush(ctx, p.req, []byte{redisEnd}).Err(); err != nil {
		return 0, 0, err
	}
	v, err := p.cl.BRPop(ctx, p.timeout, p.done).Result()
	if errors.Is(err, redis.Nil) {
		return 0, 0, fmt.Errorf("bench: Redis sink did not confirm within %v", p.timeout)
	}
	if err != nil {
		return 0, 0, err
	}
	el := time.Since(start)
	if got, _ := strconv.ParseInt(v[1], 10, 64); got != n {
		return 0, 0, fmt.Errorf("bench: Redis sink got %s messages, sent %d", v[1], n)
	}
	return n, el, nil
}

func runRedis(ctx context.Context, env *Env) ([]Row, error) {
	metrics := []string{MetricRedisRTT, MetricRedisThroughput}
	path, skip := FindRedisServer(env.RedisServer)
	if skip != "" {
		return SkipRows(skip, metrics...), nil
	}
	p, err := startRedisPeer(ctx, env, path, fmt.Sprintf("shmbench:%d", os.Getpid()))
	if err != nil {
		return nil, err
	}
	l, err := env.MeasureRTT(ctx, func() error { return p.rtt(ctx) })
	var r Rate
	if err == nil {
		r, err = env.MeasureRate(ctx, p.throughput)
	}
	if cerr := p.close(ctx); err == nil {
		err = cerr
	}
	if err != nil {
		return nil, err
	}
	rtt := env.LatencyRow(MetricRedisRTT, l, MetricFutexRTT)
	rtt.Transport = "redis" // as the payload sweep's series
	rtt.Note = join("LPUSH+BRPOP each way", rtt.Note)
	tp := env.RateRow(MetricRedisThroughput, "msgs/s", r, MetricChanThroughput)
	tp.Note = join("one LPUSH per message", tp.Note)
	return []Row{rtt, tp}, nil
}

// childRedisPeer pops messages from <prefix>:req and acts on their first
// byte (see redisEcho and the other markers).
func childRedisPeer(args []string) error {
	if len(args) != 2 {
		return fmt.Errorf("want 2 arguments (address, key prefix), got %d", len(args))
	}
	ctx := context.Background()
	cl := NewRedisClient(args[0], ChildTimeout())
	defer cl.Close()
	if err := cl.Ping(ctx).Err(); err != nil {
		return err
	}
	req, resp, done := args[1]+":req", args[1]+":resp", args[1]+":done"
	if err := Ready(""); err != nil {
		return err
	}
	var sunk int64
	var ack [MsgSize]byte
	for {
		v, err := cl.BRPop(ctx, ChildTimeout(), req).Result()
		if errors.Is(err, redis.Nil) {
			return fmt.Errorf("no message for %v", ChildTimeout())
		}
		if err != nil {
			return err
		}
		m := v[1]
		if m == "" {
			return errors.New("empty message")
		}
		switch m[0] {
		case redisEcho:
			err = cl.LPush(ctx, resp, m).Err()
		case redisAck:
			err = cl.LPush(ctx, resp, ack[:]).Err()
		case redisSink:
			sunk++
		case redisEnd:
			err = cl.LPush(ctx, done, strconv.FormatInt(sunk, 10)).Err()
			sunk = 0
		case redisStop:
			return nil
		default:
			err = fmt.Errorf("unknown message kind %q", m[0])
		}
		if err != nil {
			return err
		}
	}
}
