package agent

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/shmex/shmex/exchange"
)

// Manager launches agents with a [Launcher], hands out handles to them (on
// its own [Client]), shuts them down and waits for them: Academy's Manager.
type Manager struct {
	x exchange.Exchange
	l Launcher
	c *Client
	o options

	mu    sync.Mutex
	byID  map[exchange.EntityID]*Instance
	insts []*Instance
}

// NewManager returns a manager that launches agents in x with l (nil means
// [ThreadLauncher]). Options are the client's (see [NewClient]); their
// logger is also the launches' default.
func NewManager(ctx context.Context, x exchange.Exchange, l Launcher, opts ...Option) (*Manager, error) {
	if l == nil {
		l = ThreadLauncher{}
	}
	c, err := NewClient(ctx, x, opts...)
	if err != nil {
		return nil, err
	}
	return &Manager{x: x, l: l, c: c, o: applyOptions(opts), byID: map[exchange.EntityID]*Instance{}}, nil
}

// Client returns the manager's client, whose mailbox its handles share.
func (m *Manager) Client() *Client { return m.c }

// Launch starts an agent of the registered behavior and returns a handle to
// it. The handle follows the agent across restarts (see [WithRestarts]).
// Options are the launcher's; [WithConfig] gives the agent its
// configuration (Academy's launch of an agent instance with its state).
func (m *Manager) Launch(ctx context.Context, behavior string, opts ...Option) (*Handle, error) {
	opts = append([]Option{WithLogger(m.o.log)}, opts...)
	in, err := m.l.Launch(ctx, m.x, behavior, opts...)
	if err != nil {
		return nil, err
	}
	m.mu.Lock()
	m.insts = append(m.insts, in)
	m.byID[in.ID()] = in
	m.mu.Unlock()
	return newHandle(m.c.ep, in.target), nil
}

// Instance returns the instance of the agent that has or had id, or nil.
func (m *Manager) Instance(id exchange.EntityID) *Instance {
	m.mu.Lock()
	defer m.mu.Unlock()
	if in := m.byID[id]; in != nil {
		return in
	}
	for _, in := range m.insts {
		for _, old := range in.IDs() {
			if old == id {
				return in
			}
		}
	}
	return nil
}

// Instances returns the instances launched, in launch order.
func (m *Manager) Instances() []*Instance {
	m.mu.Lock()
	defer m.mu.Unlock()
	return append([]*Instance(nil), m.insts...)
}

// Shutdown asks the agent id (any id it had) to shut down, without restart,
// by a shutdown request, and with wait also waits until it stopped, until
// ctx is done. [exchange.ErrBadEntityID] when the manager did not launch
// it.
func (m *Manager) Shutdown(ctx context.Context, id exchange.EntityID, wait bool) error {
	in := m.Instance(id)
	if in == nil {
		return fmt.Errorf("%w: %v was not launched by this manager", exchange.ErrBadEntityID, id)
	}
	in.stopping.Store(true)
	h := m.c.Handle(in.ID())
	defer h.Close(context.Background())
	if err := h.Shutdown(ctx); err != nil {
		return err
	}
	if !wait {
		return nil
	}
	select {
	case <-in.Done():
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

// Wait waits until every launched agent stopped for good, or ctx is done,
// and returns the agents' errors joined.
func (m *Manager) Wait(ctx context.Context) error {
	var errs []error
	for _, in := range m.Instances() {
		select {
		case <-in.Done():
			errs = append(errs, in.Err())
		case <-ctx.Done():
			return ctx.Err()
		}
	}
	return errors.Join(errs...)
}

// Close is CloseTimeout(10 * time.Second).
func (m *Manager) Close() error { return m.CloseTimeout(10 * time.Second) }

// CloseTimeout stops every agent still running ([Instance.Stop]), waits
// for them up to timeout, then closes the manager's client. It returns the
// agents' errors joined, or a timeout error.
func (m *Manager) CloseTimeout(timeout time.Duration) error {
	for _, in := range m.Instances() {
		in.Stop()
	}
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	err := m.Wait(ctx)
	return errors.Join(err, m.c.Close())
}
