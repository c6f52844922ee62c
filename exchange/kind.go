package exchange

import "fmt"

// Kind is the kind of a [Message]: one of Academy's six message types. The
// zero Kind is invalid. On the wire it is a MessagePack unsigned integer.
type Kind uint8

// The message kinds. The numbers are part of the wire format.
const (
	// KindInvalid is the zero Kind; no valid message has it.
	KindInvalid Kind = 0
	// KindActionRequest asks an agent to run the action named by
	// [Message.Action] with [Message.Args].
	KindActionRequest Kind = 1
	// KindActionResponse carries an action's [Message.Result], or its error.
	KindActionResponse Kind = 2
	// KindPingRequest asks an agent whether it is alive.
	KindPingRequest Kind = 3
	// KindPingResponse answers a ping.
	KindPingResponse Kind = 4
	// KindShutdownRequest asks an agent to shut down, and with
	// [Message.Terminate] to terminate its mailbox too.
	KindShutdownRequest Kind = 5
	// KindShutdownResponse acknowledges a shutdown request.
	KindShutdownResponse Kind = 6
)

var kindNames = [...]string{
	KindInvalid:          "Invalid",
	KindActionRequest:    "ActionRequest",
	KindActionResponse:   "ActionResponse",
	KindPingRequest:      "PingRequest",
	KindPingResponse:     "PingResponse",
	KindShutdownRequest:  "ShutdownRequest",
	KindShutdownResponse: "ShutdownResponse",
}

// String returns the kind's name, such as "ActionRequest", or "Kind(n)" for
// an unknown kind.
func (k Kind) String() string {
	if int(k) < len(kindNames) {
		return kindNames[k]
	}
	return fmt.Sprintf("Kind(%d)", uint8(k))
}

// Valid reports whether k is one of the six message kinds.
func (k Kind) Valid() bool { return k >= KindActionRequest && k <= KindShutdownResponse }

// IsRequest reports whether k is a request kind (action, ping, shutdown).
func (k Kind) IsRequest() bool {
	return k == KindActionRequest || k == KindPingRequest || k == KindShutdownRequest
}

// IsResponse reports whether k is a response kind.
func (k Kind) IsResponse() bool {
	return k == KindActionResponse || k == KindPingResponse || k == KindShutdownResponse
}

// ResponseKind returns the kind of the response to a request of kind k, or
// KindInvalid when k is not a request kind.
func (k Kind) ResponseKind() Kind {
	if k.IsRequest() {
		return k + 1
	}
	return KindInvalid
}
