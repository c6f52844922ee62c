package exchange_test

import (
	"context"
	"errors"
	"strings"
	"testing"

	"github.com/shmex/shmex/exchange"
)

// TestMessageTooLargeSaysWhatToDo: every ErrMessageTooLarge about a
// payload (over MaxPayloadSize, over a Local exchange's limit, over a
// shared-memory mailbox's largest record) says how to send it instead.
func TestMessageTooLargeSaysWhatToDo(t *testing.T) {
	const hint = "send larger payloads as proxies, through proxystore.Wrap (any []byte) or as a proxystore.Blob"
	ctx := context.Background()
	check := func(what string, err error, want string) {
		t.Helper()
		if !errors.Is(err, exchange.ErrMessageTooLarge) {
			t.Fatalf("%s: %v, want ErrMessageTooLarge", what, err)
		}
		if !strings.Contains(err.Error(), want) || !strings.Contains(err.Error(), hint) {
			t.Errorf("%s: %q, want it to say %q and %q", what, err, want, hint)
		}
	}
	client, agent := exchange.NewClientID(), exchange.NewAgentID()
	huge := exchange.NewActionRequest(client, agent, "f", make([]byte, exchange.MaxPayloadSize+1))
	check("Validate", huge.Validate(), "payload longer than")
	_, err := huge.MarshalMsg(nil)
	check("MarshalMsg", err, "payload longer than")

	l := exchange.NewLocal(exchange.WithLocalMaxMessageSize(200))
	defer l.Close()
	la, _ := l.RegisterAgent(ctx, exchange.Behavior{Name: "B"})
	lc, _ := l.RegisterClient(ctx)
	check("Local Send", l.Send(ctx, exchange.NewActionRequest(lc, la, "f", make([]byte, 200))), "the mailbox takes at most 200")

	x := openSHM(t, testRoot(t), "too-large", exchange.WithMailboxBytes(4096))
	sa, err := x.RegisterAgent(ctx, exchange.Behavior{Name: "B"})
	if err != nil {
		t.Fatal(err)
	}
	sc, err := x.RegisterClient(ctx)
	if err != nil {
		t.Fatal(err)
	}
	check("SHM Send", x.Send(ctx, exchange.NewActionRequest(sc, sa, "f", make([]byte, 4096))), "the mailbox takes at most")
}
