package proxystore_test

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"path/filepath"

	"github.com/shmex/shmex/proxystore"
)

// A file store keeps payloads in files that outlive the processes: any
// process that opens the same directory resolves the proxies of the others.
func ExampleOpenFileStore() {
	ctx := context.Background()
	tmp, _ := os.MkdirTemp("", "example")
	defer os.RemoveAll(tmp)
	dir := filepath.Join(tmp, "payloads")

	writer, err := proxystore.OpenFileStore(dir, proxystore.WithCompression(proxystore.CompressZstd))
	if err != nil {
		panic(err)
	}
	defer writer.Close()
	p, err := writer.Put(ctx, bytes.Repeat([]byte("simulation output "), 10000))
	if err != nil {
		panic(err)
	}

	// Another process (here another store on the same directory) resolves
	// the proxy, which travels in a message as a few dozen bytes.
	payload := proxystore.AppendPayload(nil, p)
	reader, err := proxystore.OpenFileStore(dir)
	if err != nil {
		panic(err)
	}
	defer reader.Close()
	q, _ := proxystore.ParsePayload(payload)
	v, err := reader.Resolve(ctx, q)
	if err != nil {
		panic(err)
	}
	fmt.Printf("a proxy of %d bytes or fewer for a payload of %d bytes\n", 3+proxystore.MaxEncodedProxy, len(v.Bytes()))
	fmt.Println(len(payload) <= 3+proxystore.MaxEncodedProxy)
	v.Release()
	fmt.Println(reader.Free(ctx, q))
	// Output:
	// a proxy of 59 bytes or fewer for a payload of 180000 bytes
	// true
	// <nil>
}

// Alloc lends a region that the producer fills in place.
func ExampleFileStore_Alloc() {
	ctx := context.Background()
	dir, _ := os.MkdirTemp("", "example")
	defer os.RemoveAll(dir)
	s, err := proxystore.OpenFileStore(dir)
	if err != nil {
		panic(err)
	}
	defer s.Close()

	loan, err := s.Alloc(ctx, 1<<20, proxystore.WithSingleUse())
	if err != nil {
		panic(err)
	}
	b := loan.Bytes()
	for i := range b {
		b[i] = byte(i)
	}
	p, err := loan.Commit()
	if err != nil {
		panic(err)
	}
	v, _ := s.Resolve(ctx, p)
	fmt.Println(len(v.Bytes()), v.Bytes()[1000])
	v.Release() // single use: the file is gone
	_, err = s.Resolve(ctx, p)
	fmt.Println(err != nil)
	// Output:
	// 1048576 232
	// true
}
