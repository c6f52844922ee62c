//go:build linux && !race

package bench

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"path/filepath"
	"sync"
	"time"

	"github.com/cloudwego/shmipc-go"
)

func init() { RegisterChild("shmipc-echo", childShmipcEcho) }

var shmipcQuiet sync.Once

// shmipcConfig is the session configuration of both sides: buffers and
// queue in memfds (no file in /dev/shm), logs discarded, a small buffer.
func shmipcConfig() *shmipc.Config {
	// Errors only (shmipc's levels: trace 0 to error 4, none 5): its
	// warnings of normal teardown would reach the terminal. Once, before
	// any session: its goroutines read the level unsynchronized.
	shmipcQuiet.Do(func() { shmipc.SetLogLevel(4) })
	c := shmipc.DefaultConfig()
	c.MemMapType = shmipc.MemMapTypeMemFd
	c.ShareMemoryBufferCap = 4 << 20
	c.ShareMemoryPathPrefix = "shmbench-shmipc"
	c.QueuePath = "shmbench-shmipc-queue"
	c.LogOutput = io.Discard
	c.InitializeTimeout = 10 * time.Second
	return c
}

func runShmipc(ctx context.Context, env *Env) ([]Row, error) {
	dir, err := env.Dir()
	if err != nil {
		return nil, err
	}
	sock := filepath.Join(dir, fmt.Sprintf("shmipc-%d.sock", sockSeq.Add(1)))
	child, err := env.StartChild(ctx, "shmipc-echo", sock)
	if err != nil {
		return nil, err
	}
	defer child.Close()
	if _, err := child.Expect(ctx, "ready"); err != nil {
		return nil, err
	}
	conf := shmipc.DefaultSessionManagerConfig()
	conf.Config = shmipcConfig()
	conf.Network, conf.Address = "unix", sock
	conf.SessionNum = 1
	sm, err := shmipc.NewSessionManager(conf)
	if err != nil {
		return nil, fmt.Errorf("shmipc session: %w", err)
	}
	defer sm.Close()
	stream, err := sm.GetStream()
	if err != nil {
		return nil, fmt.Errorf("shmipc stream: %w", err)
	}
	msg := make([]byte, MsgSize)
	n := 0
	rt := func() error {
		if n&1023 == 0 {
			stream.SetDeadline(time.Now().Add(env.ChildTimeout))
		}
		n++
		msg[0]++
		if _, err := stream.BufferWriter().WriteBytes(msg); err != nil {
			return err
		}
		if err := stream.Flush(false); err != nil {
			return err
		}
		got, err := stream.BufferReader().ReadBytes(MsgSize)
		if err != nil {
			return err
		}
		if got[0] != msg[0] {
			return fmt.Errorf("bench: shmipc echo %d, want %d", got[0], msg[0])
		}
		stream.ReleaseReadAndReuse()
		return nil
	}
	unlock := env.LockThread()
	l, err := env.MeasureRTT(ctx, rt)
	unlock()
	// Tear down from this side only, the child still connected: shmipc-go
	// v0.2.0 races (under the race detector) when the peer's disconnect
	// closes a session while a local Close runs. The child waits for its
	// standard input to close before it lets go of the connection.
	stream.Close()
	sm.Close()
	if err != nil {
		return nil, err
	}
	if err := child.Close(); err != nil {
		return nil, err
	}
	row := env.LatencyRow(MetricShmipcRTT, l, MetricExchangeRTTFutex)
	row.Note = join("one stream, Flush and ReadBytes per round trip", row.Note)
	return []Row{row}, nil
}

// childShmipcEcho serves one shmipc session on the Unix socket args[0]:
// it echoes every MsgSize-byte message of the first stream until the
// parent closes the stream, then holds the session until the parent stops
// it (see runShmipc).
func childShmipcEcho(args []string) error {
	if len(args) != 1 {
		return fmt.Errorf("want 1 argument (socket), got %d", len(args))
	}
	ln, err := net.ListenUnix("unix", &net.UnixAddr{Name: args[0], Net: "unix"})
	if err != nil {
		return err
	}
	defer ln.Close()
	if err := Ready(""); err != nil {
		return err
	}
	ln.SetDeadline(time.Now().Add(ChildTimeout()))
	conn, err := ln.Accept()
	if err != nil {
		return fmt.Errorf("accept: %w", err)
	}
	s, err := shmipc.Server(conn, shmipcConfig())
	if err != nil {
		return fmt.Errorf("shmipc server: %w", err)
	}
	defer s.Close()
	stream, err := s.AcceptStream()
	if err != nil {
		return fmt.Errorf("accept stream: %w", err)
	}
	defer stream.Close()
	var buf [MsgSize]byte
	for {
		stream.SetDeadline(time.Now().Add(ChildTimeout()))
		msg, err := stream.BufferReader().ReadBytes(MsgSize)
		if err != nil {
			if errors.Is(err, shmipc.ErrEndOfStream) || errors.Is(err, shmipc.ErrStreamClosed) || errors.Is(err, io.EOF) {
				Listen() // returns when the parent closes our standard input (we exit) or after ChildTimeout
				return nil
			}
			return fmt.Errorf("read: %w", err)
		}
		copy(buf[:], msg)
		// Release the request before writing: ReleaseReadAndReuse hands
		// the read buffer's slice to the writer.
		stream.ReleaseReadAndReuse()
		if _, err := stream.BufferWriter().WriteBytes(buf[:]); err != nil {
			return fmt.Errorf("write: %w", err)
		}
		if err := stream.Flush(false); err != nil {
			return fmt.Errorf("flush: %w", err)
		}
	}
}
