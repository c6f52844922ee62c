package proxystore_test

import (
	"context"
	"fmt"

	"github.com/shmex/shmex/exchange"
	"github.com/shmex/shmex/proxystore"
)

// Wrap an exchange so that large action arguments and results travel as
// proxies into a store, resolved on arrival.
func ExampleWrap() {
	ctx := context.Background()
	store := proxystore.NewMemStore() // the arena or a file store across processes
	defer store.Close()
	ex := proxystore.Wrap(exchange.NewLocal(), store, proxystore.WithThreshold(1024))
	defer ex.Close()

	agent, _ := ex.RegisterAgent(ctx, exchange.Behavior{Name: "Analyzer"})
	client, _ := ex.RegisterClient(ctx)
	mb, _ := ex.Mailbox(ctx, agent)

	big := make([]byte, 1<<20)
	if err := ex.Send(ctx, exchange.NewActionRequest(client, agent, "analyze", big)); err != nil {
		panic(err)
	}
	fmt.Println("payloads in the store:", store.Len())

	var m exchange.Message
	if err := mb.Recv(ctx, &m); err != nil {
		panic(err)
	}
	fmt.Printf("%s with %d bytes of arguments\n", m.Action, len(m.Args))
	fmt.Println("payloads in the store:", store.Len()) // single use: evicted
	fmt.Printf("%+v\n", ex.Stats())
	// Output:
	// payloads in the store: 1
	// analyze with 1048576 bytes of arguments
	// payloads in the store: 0
	// {Proxied:1 Resolved:1}
}

// With ResolveManual the receiver gets the proxy and resolves it when it
// wants the bytes.
func ExampleWithResolveMode() {
	ctx := context.Background()
	store := proxystore.NewMemStore()
	ex := proxystore.Wrap(exchange.NewLocal(), store,
		proxystore.WithThreshold(1024), proxystore.WithResolveMode(proxystore.ResolveManual))
	defer ex.Close()
	agent, _ := ex.RegisterAgent(ctx, exchange.Behavior{Name: "Lazy"})
	client, _ := ex.RegisterClient(ctx)
	mb, _ := ex.Mailbox(ctx, agent)
	ex.Send(ctx, exchange.NewActionRequest(client, agent, "f", make([]byte, 4096)))

	var m exchange.Message
	mb.Recv(ctx, &m)
	fmt.Println("proxy:", proxystore.IsPayload(m.Args))
	v, err := ex.Resolve(ctx, m.Args)
	if err != nil {
		panic(err)
	}
	fmt.Println("payload:", len(v.Bytes()), "bytes")
	v.Release()
	// Output:
	// proxy: true
	// payload: 4096 bytes
}
