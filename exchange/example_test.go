package exchange_test

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/shmex/shmex/exchange"
	"github.com/tinylib/msgp/msgp"
)

// An agent and a client on the in-process exchange: the client invokes the
// agent's "greet" action, the agent answers, the client gets the result.
// Arguments and results are MessagePack bytes.
func Example() {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	ex := exchange.NewLocal()
	defer ex.Close()

	agent, _ := ex.RegisterAgent(ctx, exchange.Behavior{Name: "Greeter"}, exchange.WithName("greeter"))
	client, _ := ex.RegisterClient(ctx)
	agentBox, _ := ex.Mailbox(ctx, agent)
	defer agentBox.Close()
	clientBox, _ := ex.Mailbox(ctx, client)
	defer clientBox.Close()

	// The client sends an action request.
	req := exchange.NewActionRequest(client, agent, "greet", msgp.AppendString(nil, "world"))
	if err := ex.Send(ctx, req); err != nil {
		fmt.Println(err)
		return
	}

	// The agent receives it and answers in place, reusing the message.
	var m exchange.Message
	if err := agentBox.Recv(ctx, &m); err != nil {
		fmt.Println(err)
		return
	}
	who, _, _ := msgp.ReadStringBytes(m.Args)
	fmt.Println("agent received", m.Kind, string(m.Action), who)
	m.SetResponse(&m, msgp.AppendString(nil, "hello, "+who))
	if err := ex.Send(ctx, &m); err != nil {
		fmt.Println(err)
		return
	}

	// The client receives the response, matched to its request by tag.
	var r exchange.Message
	if err := clientBox.Recv(ctx, &r); err != nil {
		fmt.Println(err)
		return
	}
	result, _, _ := msgp.ReadStringBytes(r.Result)
	fmt.Println("client received", r.Kind, result, r.Tag == req.Tag, r.Src == agent)
	// Output:
	// agent received ActionRequest greet world
	// client received ActionResponse hello, world true true
}

// Discover finds active agents by behavior, exactly or including those that
// implement it.
func ExampleLocal_Discover() {
	ctx := context.Background()
	ex := exchange.NewLocal()
	defer ex.Close()
	ex.RegisterAgent(ctx, exchange.Behavior{Name: "Simulation"})
	ex.RegisterAgent(ctx, exchange.Behavior{Name: "MDSimulation", Implements: []string{"Simulation"}})
	surrogate, _ := ex.RegisterAgent(ctx, exchange.Behavior{Name: "Surrogate", Implements: []string{"Model"}})

	exact, _ := ex.Discover(ctx, "Simulation", false)
	all, _ := ex.Discover(ctx, "Simulation", true)
	models, _ := ex.Discover(ctx, "Model", true)
	fmt.Println(len(exact), len(all), models[0] == surrogate)

	ex.Terminate(ctx, surrogate)
	models, _ = ex.Discover(ctx, "Model", true)
	fmt.Println(len(models))
	// Output:
	// 1 2 true
	// 0
}

// Terminating a mailbox answers the requests still queued in it, so that no
// caller waits forever, and refuses later messages.
func ExampleLocal_Terminate() {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	ex := exchange.NewLocal()
	defer ex.Close()
	agent, _ := ex.RegisterAgent(ctx, exchange.Behavior{Name: "Worker"})
	client, _ := ex.RegisterClient(ctx)
	clientBox, _ := ex.Mailbox(ctx, client)
	defer clientBox.Close()

	req := exchange.NewActionRequest(client, agent, "work", nil)
	ex.Send(ctx, req)
	ex.Terminate(ctx, agent)

	var r exchange.Message
	clientBox.Recv(ctx, &r)
	var re *exchange.RemoteError
	errors.As(r.Err(), &re)
	fmt.Println(r.Kind, r.Tag == req.Tag, re.Kind)
	fmt.Println(errors.Is(r.Err(), exchange.ErrMailboxClosed))
	err := ex.Send(ctx, exchange.NewPingRequest(client, agent))
	fmt.Println(errors.Is(err, exchange.ErrMailboxClosed))
	st, _ := ex.Status(ctx, agent)
	fmt.Println(st)
	// Output:
	// ActionResponse true MailboxTerminatedError
	// true
	// true
	// terminated
}

// Recv with a deadline: a timeout is the context's error.
func ExampleMailbox_Recv() {
	ex := exchange.NewLocal()
	defer ex.Close()
	client, _ := ex.RegisterClient(context.Background())
	box, _ := ex.Mailbox(context.Background(), client)
	defer box.Close()

	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Millisecond)
	defer cancel()
	var m exchange.Message
	err := box.Recv(ctx, &m)
	fmt.Println(errors.Is(err, context.DeadlineExceeded))
	// Output: true
}

// A sender that writes straight into claimed space (a shared ring) asks for
// the exact size first; the receiver decodes and validates in one call.
func ExampleMessage_EncodeTo() {
	m := exchange.NewPingRequest(exchange.NewClientID(), exchange.NewAgentID())
	space := make([]byte, m.EncodedSize()) // in shmex: space claimed in the destination's ring
	n, err := m.EncodeTo(space)
	fmt.Println(n == len(space), err)

	var got exchange.Message
	err = got.Decode(space[:n])
	fmt.Println(err, got.Equal(m))
	// Output:
	// true <nil>
	// <nil> true
}
