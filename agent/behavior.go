package agent

import (
	"context"
	"fmt"
	"reflect"
	"slices"
	"sort"
	"sync/atomic"

	"github.com/shmex/shmex/exchange"
)

// Hook is a setup or shutdown hook, or the body of a control loop.
type Hook func(ctx context.Context) error

// handler runs one action: it decodes args, runs the action, and appends the
// encoded result to out.
type handler func(ctx context.Context, args []byte, out []byte) ([]byte, error)

// action is one of a behavior's actions.
type action struct {
	name string
	h    handler
	// quick counts the runs in a row that a serving leader ran inline and
	// that ended within handoffDelay; from quickRuns on, the leader runs
	// the action without arming its hand-off timer, and the watchdog
	// catches the run that turns slow (see serve.go).
	quick atomic.Int32
}

// Behavior is what an agent does: a name, the names of the behaviors it
// implements (what [exchange.Exchange.Discover] with subtypes finds),
// actions that peers call, control loops that run until shutdown, and
// optional setup and shutdown hooks. Build it with [NewBehavior],
// [AddAction] and the methods below before the agent starts; a Behavior is
// not modified by running it, but its actions, loops and hooks close over
// whatever state the factory gave them, so give each agent its own
// Behavior (a [Factory] does).
type Behavior struct {
	name       string
	implements []string
	actions    map[string]*action
	loops      []namedLoop
	setup      Hook
	shutdown   Hook
}

type namedLoop struct {
	name string
	fn   Hook
}

// NewBehavior returns an empty behavior called name that implements the
// behaviors named in implements (its "base classes").
func NewBehavior(name string, implements ...string) *Behavior {
	return &Behavior{name: name, implements: slices.Clone(implements), actions: map[string]*action{}}
}

// Name returns the behavior's name.
func (b *Behavior) Name() string { return b.name }

// Implements returns the names of the behaviors b implements.
func (b *Behavior) Implements() []string { return slices.Clone(b.implements) }

// Exchange returns the registration form of b for [exchange.Exchange].
func (b *Behavior) Exchange() exchange.Behavior {
	return exchange.Behavior{Name: b.name, Implements: slices.Clone(b.implements)}
}

// Actions returns the sorted names of b's actions.
func (b *Behavior) Actions() []string {
	names := make([]string, 0, len(b.actions))
	for n := range b.actions {
		names = append(names, n)
	}
	sort.Strings(names)
	return names
}

// Loop adds a control loop: fn runs in its own goroutine from the end of
// setup until shutdown, when its ctx is cancelled. A loop that returns
// early just ends; one that returns an error shuts the agent down when the
// runtime has [WithTerminateOnError] (the default). It returns b.
func (b *Behavior) Loop(name string, fn Hook) *Behavior {
	b.loops = append(b.loops, namedLoop{name: name, fn: fn})
	return b
}

// OnSetup sets the setup hook, run before the agent serves requests or
// starts its loops; an error stops the agent. It returns b.
func (b *Behavior) OnSetup(fn Hook) *Behavior { b.setup = fn; return b }

// OnShutdown sets the shutdown hook, run last, after the running actions
// ended and the loops stopped. Its ctx is not cancelled by the shutdown. It
// returns b.
func (b *Behavior) OnShutdown(fn Hook) *Behavior { b.shutdown = fn; return b }

// AddRawAction adds an action that takes and returns raw bytes (by
// convention MessagePack): fn gets the request's arguments (valid only
// until it returns) and appends its result to out. [ErrDuplicate] when the
// name is taken.
func (b *Behavior) AddRawAction(name string, fn func(ctx context.Context, args []byte, out []byte) ([]byte, error)) error {
	return b.add(name, resolveRawArgs(fn))
}

func (b *Behavior) add(name string, h handler) error {
	if name == "" {
		return fmt.Errorf("agent: empty action name in behavior %q", b.name)
	}
	if _, ok := b.actions[name]; ok {
		return fmt.Errorf("%w: action %q in behavior %q", ErrDuplicate, name, b.name)
	}
	b.actions[name] = &action{name: name, h: h}
	return nil
}

// AddAction adds the action name to b: fn is called with the decoded
// arguments and its result is encoded back. In and Out must have a codec
// ([CodecFor]); otherwise AddAction returns [ErrNoCodec] and adds nothing.
// An error returned by fn reaches the caller as a [*exchange.RemoteError]
// (return one to choose its kind); a panic in fn is recovered and answered
// with [ErrorKindActionPanic].
func AddAction[In, Out any](b *Behavior, name string, fn func(ctx context.Context, in In) (Out, error)) error {
	inc, err := CodecFor[In]()
	if err != nil {
		return fmt.Errorf("action %q arguments: %w", name, err)
	}
	outc, err := CodecFor[Out]()
	if err != nil {
		return fmt.Errorf("action %q result: %w", name, err)
	}
	return AddActionCodec(b, name, inc, outc, fn)
}

// AddActionCodec is [AddAction] with explicit codecs.
func AddActionCodec[In, Out any](b *Behavior, name string, in Codec[In], out Codec[Out], fn func(ctx context.Context, in In) (Out, error)) error {
	if in == nil || out == nil {
		return fmt.Errorf("%w: nil codec for action %q", ErrNoCodec, name)
	}
	release := releaseArgs[In]() // blob.go: the Blobs in the arguments live until the action returns
	blobs := blobsIn[In]()
	return b.add(name, func(ctx context.Context, args []byte, buf []byte) ([]byte, error) {
		v, err := decodeArg(in, args, blobs) // blob.go: reads a proxied payload in place
		if err != nil {
			err = decodeMismatch(fmt.Sprintf("arguments of action %q", name), reflect.TypeFor[In](), args, err) // explain.go
			return buf, &exchange.RemoteError{Kind: ErrorKindBadArguments, Message: err.Error()}
		}
		if blobs {
			// A copy to release: taking v's address would move every
			// action's arguments to the heap. The Blobs' state is shared.
			held := v
			defer release(&held)
		}
		res, err := fn(ctx, v)
		if err != nil {
			return buf, err
		}
		return out.Append(buf, res)
	})
}
