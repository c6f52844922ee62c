package ring_test

import (
	"context"
	"path/filepath"
	"testing"
	"time"

	"github.com/shmex/shmex/ring"
	"github.com/shmex/shmex/shm"
)

// TestCancelAfterUnmap: a consumer that slept on the futex with a
// cancellable context keeps that context registered between receives (so a
// receive loop sleeps without allocating). Unmapping the ring without
// closing the consumer, then cancelling the context, must not touch the
// unmapped memory.
func TestCancelAfterUnmap(t *testing.T) {
	cfg := ring.Config{Capacity: 4096, Slots: 16}
	path := filepath.Join(shmDir(t), "ring")
	seg, err := shm.Create(path, shm.KindRing, int64(shm.HeaderSize+ring.Size(cfg.Capacity, cfg.Slots)),
		func(body []byte) error { _, err := ring.New(body, cfg, ring.Options{}); return err })
	if err != nil {
		t.Fatal(err)
	}
	r, err := ring.Attach(seg.Body(), ring.Options{})
	if err != nil {
		t.Fatal(err)
	}
	c, err := r.NewConsumer(1, ring.Park)
	if err != nil {
		t.Fatal(err)
	}
	p, err := r.NewProducer(2)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go func() {
		time.Sleep(20 * time.Millisecond) // let the consumer fall asleep
		p.Write(ctx, 1, []byte("wake"))
	}()
	if n, err := c.Receive(ctx, func(int32, []byte) {}, 0); n != 1 || err != nil {
		t.Fatalf("Receive = %d, %v", n, err)
	}
	seg.Close() // unmapped, the consumer not closed
	cancel()    // the registration fires: it must leave the word alone
	time.Sleep(20 * time.Millisecond)
}
