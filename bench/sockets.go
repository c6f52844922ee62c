//go:build linux

package bench

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net"
	"path/filepath"
	"sync/atomic"
	"syscall"
	"time"
)

// Metric names of the socket peers, for CompareTo.
const (
	MetricUDSRTT        = "uds.rtt_ns"
	MetricUDSThroughput = "uds.throughput_msgs"
	MetricTCPRTT        = "tcp.rtt_ns"
	MetricTCPThroughput = "tcp.throughput_msgs"
)

func init() {
	Register(Scenario{
		Name: "uds", Rank: RankPeer + 1,
		Doc:     "Unix domain stream socket to a child process: 64-byte echo round trip, one-way throughput",
		Metrics: []string{MetricUDSRTT, MetricUDSThroughput},
		Run: func(ctx context.Context, env *Env) ([]Row, error) {
			return runSocket(ctx, env, "unix", MetricUDSRTT, MetricUDSThroughput)
		},
	})
	Register(Scenario{
		Name: "tcp", Rank: RankPeer + 2,
		Doc:     "TCP over loopback (TCP_NODELAY) to a child process: 64-byte echo round trip, one-way throughput",
		Metrics: []string{MetricTCPRTT, MetricTCPThroughput},
		Run: func(ctx context.Context, env *Env) ([]Row, error) {
			return runSocket(ctx, env, "tcp", MetricTCPRTT, MetricTCPThroughput)
		},
	})
	RegisterChild("sock-server", childSockServer)
}

// Socket protocol: the parent dials and sends one mode byte. After modeEcho
// the child echoes every MsgSize-byte message until end of stream. After
// modeSink it reads until end of stream (the parent's half-close), then
// answers with the number of bytes it read as 8 bytes, little-endian.
// After modePayload the child reads messages made of an 8-byte little-endian
// length and that many bytes, and answers each with MsgSize bytes.
const (
	modeEcho    = 'E'
	modeSink    = 'S'
	modePayload = 'P'
)

// sockServer is the parent's handle on a socket server child.
type sockServer struct {
	network, addr string
	child         *Child
	timeout       time.Duration
}

// sockSeq numbers the Unix sockets of a run.
var sockSeq atomic.Int64

// startSockServer starts a child serving on a Unix socket in the scratch
// directory or on a free loopback TCP port.
func startSockServer(ctx context.Context, env *Env, network string) (*sockServer, error) {
	addr := "127.0.0.1:0"
	if network == "unix" {
		dir, err := env.Dir()
		if err != nil {
			return nil, err
		}
		addr = filepath.Join(dir, fmt.Sprintf("uds-%d.sock", sockSeq.Add(1)))
	}
	c, err := env.StartChild(ctx, "sock-server", network, addr)
	if err != nil {
		return nil, err
	}
	got, err := c.Expect(ctx, "ready")
	if err != nil {
		c.Kill()
		return nil, err
	}
	return &sockServer{network: network, addr: got, child: c, timeout: env.ChildTimeout}, nil
}

func (s *sockServer) dial(ctx context.Context, mode byte) (net.Conn, error) {
	d := net.Dialer{Timeout: s.timeout}
	conn, err := d.DialContext(ctx, s.network, s.addr)
	if err != nil {
		return nil, err
	}
	conn.SetDeadline(time.Now().Add(s.timeout))
	if _, err := conn.Write([]byte{mode}); err != nil {
		conn.Close()
		return nil, err
	}
	return conn, nil
}

func (s *sockServer) close() error { return s.child.Close() }

// sockEcho is an echo connection: one round trip per call of rtt.
type sockEcho struct {
	conn    net.Conn
	buf     [MsgSize]byte
	n       int
	timeout time.Duration
}

func (s *sockServer) echo(ctx context.Context) (*sockEcho, error) {
	conn, err := s.dial(ctx, modeEcho)
	if err != nil {
		return nil, err
	}
	return &sockEcho{conn: conn, timeout: s.timeout}, nil
}

// rtt writes one message and reads the echo. The deadline is renewed every
// 1024 round trips: it bounds the wait without a timer update on every call.
func (e *sockEcho) rtt() error {
	if e.n&1023 == 0 {
		e.conn.SetDeadline(time.Now().Add(e.timeout))
	}
	e.n++
	e.buf[0]++
	if _, err := e.conn.Write(e.buf[:]); err != nil {
		return err
	}
	_, err := io.ReadFull(e.conn, e.buf[:])
	return err
}

// throughput sends MsgSize-byte messages, one write each, for one phase on a
// new sink connection, and returns the count and the time until the child
// confirmed it read them all.
func (s *sockServer) throughput(ctx context.Context, p Phase) (int64, time.Duration, error) {
	conn, err := s.dial(ctx, modeSink)
	if err != nil {
		return 0, 0, err
	}
	defer conn.Close()
	var msg [MsgSize]byte
	k := 0
	start := time.Now()
	n, _, err := p.Loop(ctx, func() error {
		if k++; k&1023 == 0 {
			conn.SetDeadline(time.Now().Add(s.timeout))
		}
		msg[0]++
		_, err := conn.Write(msg[:])
		return err
	})
	if err != nil {
		return 0, 0, err
	}
	if err := conn.(interface{ CloseWrite() error }).CloseWrite(); err != nil {
		return 0, 0, err
	}
	conn.SetDeadline(time.Now().Add(s.timeout))
	var ack [8]byte
	if _, err := io.ReadFull(conn, ack[:]); err != nil {
		return 0, 0, fmt.Errorf("bench: sink confirmation: %w", err)
	}
	el := time.Since(start)
	if got := binary.LittleEndian.Uint64(ack[:]); got != uint64(n*MsgSize) {
		return 0, 0, fmt.Errorf("bench: sink read %d bytes, sent %d", got, n*MsgSize)
	}
	return n, el, nil
}

func runSocket(ctx context.Context, env *Env, network, rttMetric, tputMetric string) ([]Row, error) {
	srv, err := startSockServer(ctx, env, network)
	if err != nil {
		return nil, err
	}
	defer srv.close()
	echo, err := srv.echo(ctx)
	if err != nil {
		return nil, err
	}
	unlock := env.LockThread()
	l, err := env.MeasureRTT(ctx, echo.rtt)
	unlock()
	echo.conn.Close()
	if err != nil {
		return nil, err
	}
	unlock = env.LockThread()
	r, err := env.MeasureRate(ctx, srv.throughput)
	unlock()
	if err != nil {
		return nil, err
	}
	if err := srv.close(); err != nil {
		return nil, err
	}
	tp := env.RateRow(tputMetric, "msgs/s", r, MetricChanThroughput)
	tp.Note = join("one write per message", tp.Note)
	rtt := env.LatencyRow(rttMetric, l, MetricFutexRTT)
	rtt.Transport = map[string]string{"unix": "uds", "tcp": "tcp"}[network] // as the payload sweep's series
	return []Row{rtt, tp}, nil
}

// childSockServer serves echo and sink connections one at a time until the
// parent closes its standard input.
func childSockServer(args []string) error {
	if len(args) != 2 {
		return fmt.Errorf("want 2 arguments (network, address), got %d", len(args))
	}
	ln, err := net.Listen(args[0], args[1])
	if err != nil {
		return err
	}
	defer ln.Close()
	if err := Ready(ln.Addr().String()); err != nil {
		return err
	}
	for {
		if d, ok := ln.(interface{ SetDeadline(time.Time) error }); ok {
			d.SetDeadline(time.Now().Add(ChildTimeout()))
		}
		conn, err := ln.Accept()
		if err != nil {
			return fmt.Errorf("accept: %w", err)
		}
		err = serveSock(conn)
		conn.Close()
		if err != nil {
			return err
		}
	}
}

func serveSock(conn net.Conn) error {
	var mode [1]byte
	if _, err := io.ReadFull(conn, mode[:]); err != nil {
		return fmt.Errorf("read mode: %w", err)
	}
	switch mode[0] {
	case modeEcho:
		var buf [MsgSize]byte
		for {
			if _, err := io.ReadFull(conn, buf[:]); err != nil {
				if errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) || errors.Is(err, syscall.ECONNRESET) {
					return nil
				}
				return fmt.Errorf("echo read: %w", err)
			}
			if _, err := conn.Write(buf[:]); err != nil {
				return fmt.Errorf("echo write: %w", err)
			}
		}
	case modeSink:
		buf := make([]byte, 64<<10)
		var total uint64
		for {
			n, err := conn.Read(buf)
			total += uint64(n)
			if errors.Is(err, io.EOF) {
				break
			}
			if err != nil {
				return fmt.Errorf("sink read: %w", err)
			}
		}
		var ack [8]byte
		binary.LittleEndian.PutUint64(ack[:], total)
		_, err := conn.Write(ack[:])
		return err
	case modePayload:
		var hdr [8]byte
		var ack [MsgSize]byte
		var buf []byte
		for {
			if _, err := io.ReadFull(conn, hdr[:]); err != nil {
				if errors.Is(err, io.EOF) || errors.Is(err, syscall.ECONNRESET) {
					return nil
				}
				return fmt.Errorf("payload read: %w", err)
			}
			n := binary.LittleEndian.Uint64(hdr[:])
			if n > sweepMaxBytes {
				return fmt.Errorf("payload of %d bytes", n)
			}
			if uint64(cap(buf)) < n {
				buf = make([]byte, n)
			}
			if _, err := io.ReadFull(conn, buf[:n]); err != nil {
				return fmt.Errorf("payload read: %w", err)
			}
			if _, err := conn.Write(ack[:]); err != nil {
				return fmt.Errorf("payload ack: %w", err)
			}
		}
	}
	return fmt.Errorf("unknown mode %q", mode[0])
}
