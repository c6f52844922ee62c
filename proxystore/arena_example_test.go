package proxystore_test

import (
	"context"
	"fmt"
	"os"
	"path/filepath"

	"github.com/shmex/shmex/proxystore"
	"github.com/shmex/shmex/shm"
)

// exampleDir makes a throwaway exchange directory; a real program uses the
// exchange's own (shm.ExchangeDir(shm.DefaultRoot(), name)).
func exampleDir() (dir string, cleanup func()) {
	root, err := os.MkdirTemp("", "shmex-example-")
	if err != nil {
		panic(err)
	}
	dir = filepath.Join(root, "root", "my-exchange")
	if err := shm.EnsureDir(dir); err != nil {
		panic(err)
	}
	return dir, func() { os.RemoveAll(root) }
}

// Two processes (here two Arena values) share the arena store of an
// exchange directory: one puts a payload, the other resolves its proxy
// without copying it.
func ExampleOpenArena() {
	dir, cleanup := exampleDir()
	defer cleanup()
	ctx := context.Background()

	producer, err := proxystore.OpenArena(dir)
	if err != nil {
		panic(err)
	}
	defer producer.Close()
	consumer, err := proxystore.OpenArena(dir)
	if err != nil {
		panic(err)
	}
	defer consumer.Close()

	p, err := producer.Put(ctx, []byte("a large payload"), proxystore.WithSingleUse())
	if err != nil {
		panic(err)
	}
	msg := proxystore.AppendPayload(nil, p) // what travels in the message

	q, err := proxystore.ParsePayload(msg)
	if err != nil {
		panic(err)
	}
	v, err := consumer.Resolve(ctx, q)
	if err != nil {
		panic(err)
	}
	fmt.Printf("%s (%d-byte proxy)\n", v.Bytes(), len(msg))
	v.Release() // single use: the payload is evicted now

	_, err = consumer.Resolve(ctx, q)
	fmt.Println(err != nil)
	// Output:
	// a large payload (59-byte proxy)
	// true
}

// A producer fills a loan in place: the payload is written once, into the
// shared arena, and never copied afterwards.
func ExampleArena_Alloc() {
	dir, cleanup := exampleDir()
	defer cleanup()
	ctx := context.Background()
	a, err := proxystore.OpenArena(dir)
	if err != nil {
		panic(err)
	}
	defer a.Close()

	loan, err := a.Alloc(ctx, 1<<20)
	if err != nil {
		panic(err)
	}
	buf := loan.Bytes()
	for i := range buf {
		buf[i] = byte(i)
	}
	p, err := loan.Commit()
	if err != nil {
		panic(err)
	}
	fmt.Println(p.Length)

	v, err := a.Resolve(ctx, p)
	if err != nil {
		panic(err)
	}
	fmt.Println(v.Bytes()[1000])
	v.Release()
	fmt.Println(a.Free(ctx, p))
	// Output:
	// 1048576
	// 232
	// <nil>
}
