package exchange

import (
	"context"
	"fmt"

	"github.com/shmex/shmex/ring"
	"github.com/shmex/shmex/shm"
)

// RegisterAgent implements [Exchange.RegisterAgent].
func (x *SHM) RegisterAgent(ctx context.Context, behavior Behavior, opts ...RegisterOption) (EntityID, error) {
	if behavior.Name == "" {
		return EntityID{}, fmt.Errorf("%w: empty behavior name", ErrInvalidArgument)
	}
	id, name, err := ResolveRegistration(RoleAgent, opts)
	if err != nil {
		return EntityID{}, err
	}
	return x.register(id, name, behavior)
}

// RegisterClient implements [Exchange.RegisterClient].
func (x *SHM) RegisterClient(ctx context.Context, opts ...RegisterOption) (EntityID, error) {
	id, name, err := ResolveRegistration(RoleClient, opts)
	if err != nil {
		return EntityID{}, err
	}
	return x.register(id, name, Behavior{})
}

func (x *SHM) register(id EntityID, name string, b Behavior) (EntityID, error) {
	if err := checkFields(name, b); err != nil {
		return EntityID{}, err
	}
	if err := x.enter(); err != nil {
		return EntityID{}, err
	}
	defer x.leave()
	if err := x.reg.lock(); err != nil {
		return EntityID{}, err
	}
	defer x.reg.unlock()
	if x.reg.find(id.UUID) >= 0 {
		return EntityID{}, fmt.Errorf("%w: %v", ErrDuplicateID, id)
	}
	capacity := x.opts.mailboxBytes
	path := ringPath(x.dir, id.UUID, 0)
	if err := createRing(path, capacity, capacity/4); err != nil {
		return EntityID{}, err
	}
	e := entry{id: id, name: name, behavior: b, ringCap: capacity, maxRecord: capacity / 4}
	if _, err := x.reg.append(e, x.life.id()); err != nil {
		shm.Remove(path)
		return EntityID{}, err
	}
	return id, nil
}

// createRing creates the ring segment of a mailbox at path, replacing one
// left there by a registration or Reopen that died before publishing it.
func createRing(path string, capacity, maxRecord int) error {
	cfg := ring.Config{Capacity: capacity, MaxRecord: maxRecord, Slots: ringSlots}
	shm.Remove(path)
	seg, err := shm.Create(path, shm.KindRing, int64(shm.HeaderSize+ring.Size(cfg.Capacity, cfg.Slots)),
		func(body []byte) error { _, err := ring.New(body, cfg, ring.Options{}); return err })
	if err != nil {
		return err
	}
	return seg.Close()
}

// lookup returns the registry index of id, or -1.
func (x *SHM) lookup(id EntityID) int {
	i := x.reg.find(id.UUID)
	if i < 0 || Role(x.reg.raw(i)[entRole]) != id.Role {
		return -1
	}
	return i
}

// Status implements [Exchange.Status]. An active mailbox whose owner
// process is dead is reported (and marked) terminated.
func (x *SHM) Status(ctx context.Context, id EntityID) (Status, error) {
	if err := x.enter(); err != nil {
		return StatusMissing, err
	}
	defer x.leave()
	i := x.lookup(id)
	if i < 0 {
		return StatusMissing, nil
	}
	return x.status(i, id), nil
}

func (x *SHM) status(i int, id EntityID) Status {
	if x.reg.state(i) == regTerminated {
		return StatusTerminated
	}
	if !x.alive(x.reg.owner(i)) {
		if d, err := x.destPinned(id); err == nil {
			x.terminateDead(d)
			x.unpin(d)
		}
		return StatusTerminated
	}
	return StatusActive
}

// Info implements [Exchange.Info].
func (x *SHM) Info(ctx context.Context, id EntityID) (EntityInfo, error) {
	if err := x.enter(); err != nil {
		return EntityInfo{}, err
	}
	defer x.leave()
	i := x.lookup(id)
	if i < 0 {
		return EntityInfo{}, fmt.Errorf("%w: %v", ErrBadEntityID, id)
	}
	e, err := x.reg.decode(i)
	if err != nil {
		return EntityInfo{}, err
	}
	return EntityInfo{ID: e.id, Name: e.name, Behavior: e.behavior, Status: x.status(i, id)}, nil
}

// Discover implements [Exchange.Discover]. Agents whose owner process is
// dead are not returned.
func (x *SHM) Discover(ctx context.Context, behavior string, allowSubtypes bool) ([]EntityID, error) {
	if err := x.enter(); err != nil {
		return nil, err
	}
	defer x.leave()
	var found []EntityID
	n := x.reg.published()
	for i := 0; i < n; i++ {
		if x.reg.state(i) != regActive || Role(x.reg.raw(i)[entRole]) != RoleAgent {
			continue
		}
		e, err := x.reg.decode(i)
		if err != nil {
			x.opts.log.Warn("shmex: skipping damaged registry entry", "exchange", x.name, "entry", i, "err", err)
			continue
		}
		if e.behavior.Matches(behavior, allowSubtypes) && x.status(i, e.id) == StatusActive {
			found = append(found, e.id)
		}
	}
	return found, nil
}
