package redisx

import (
	"context"
	"encoding/binary"
	"testing"
	"time"

	"github.com/shmex/shmex/exchange"
	"github.com/shmex/shmex/internal/redistest"
)

// TestSendAsyncCloseCommits: when Close of a handle returns, every message
// it queued with SendAsync is in Redis, even while another handle keeps
// the process's session (and its sender) alive: the mailbox, which nobody
// receives from, holds them all.
func TestSendAsyncCloseCommits(t *testing.T) {
	srv := redistest.Start(t)
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	opts := []Option{WithAddr(srv.Addr), WithPrefix("closecommits"), WithNode("A")}
	keep, err := Open(ctx, opts...)
	if err != nil {
		t.Fatal(err)
	}
	defer keep.Close()
	x, err := Open(ctx, opts...)
	if err != nil {
		t.Fatal(err)
	}
	if x.s != keep.s {
		t.Fatal("two handles of one process do not share the session")
	}
	src, err := x.RegisterAgent(ctx, exchange.Behavior{Name: "W"})
	if err != nil {
		t.Fatal(err)
	}
	cid, err := keep.RegisterClient(ctx)
	if err != nil {
		t.Fatal(err)
	}
	const n = 2000
	for i := range n {
		m := exchange.NewActionResponse(src, cid, exchange.NewUUID(), binary.LittleEndian.AppendUint64(nil, uint64(i)))
		if err := x.SendAsync(ctx, m); err != nil {
			t.Fatalf("SendAsync %d: %v", i, err)
		}
	}
	if err := x.Close(); err != nil {
		t.Fatal(err)
	}
	_, ek := keep.s.k.of(cid)
	got, err := keep.s.cl.LLen(ctx, ek.q).Result()
	if err != nil {
		t.Fatal(err)
	}
	if got != n {
		t.Fatalf("the mailbox holds %d messages when Close returned, want %d", got, n)
	}
}
