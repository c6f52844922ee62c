package agent

import (
	"encoding/base64"
	"fmt"
	"reflect"
)

// Launching with a configuration: the counterpart of the state an Academy
// agent instance carries into Manager.launch(agent). A behavior registered
// with RegisterBehaviorConfig has a factory that takes a value of its
// configuration type; a launch gives the value with WithConfig. The value
// travels encoded like an action argument (MessagePack, CodecFor), also to
// an agent process (in EnvConfig), and each run of the agent, restarts
// included, decodes a fresh copy.

// EnvConfig carries a launched agent's configuration to its process:
// base64 of its MessagePack encoding (see [WithConfig]).
const EnvConfig = "SHMEX_AGENT_CONFIG"

// MaxConfigSize bounds the encoded configuration of an agent (an
// environment variable carries it to an agent process). Pass larger data
// by reference: a file's path, or a proxystore.Blob in an action call.
const MaxConfigSize = 64 << 10

// launchConfig is a configuration given with WithConfig.
type launchConfig struct {
	data []byte       // the value's MessagePack encoding
	typ  reflect.Type // the value's type; nil when it came from EnvConfig
	err  error        // the encoding failed
}

// WithConfig gives the agent a launch starts its configuration (launches
// only: [Launcher.Launch], [Manager.Launch]): cfg is encoded with
// [CodecFor] when WithConfig is called, given to the factory that
// [RegisterBehaviorConfig] registered for the behavior, decoded afresh for
// every run (restarts included), and carried to an agent process in its
// environment ([EnvConfig], at most [MaxConfigSize] encoded). The launch
// fails when C has no codec, when the behavior was registered with
// [RegisterBehavior] (it takes no configuration) or with a configuration
// of another type.
//
//	type WorkerConfig struct{ Scale int }   // a basic, composite or msgp type
//	agent.RegisterBehaviorConfig("Worker", func(cfg WorkerConfig) (*agent.Behavior, error) { ... })
//	h, err := m.Launch(ctx, "Worker", agent.WithConfig(WorkerConfig{Scale: 3}))
func WithConfig[C any](cfg C) Option {
	lc := &launchConfig{typ: reflect.TypeFor[C]()}
	codec, err := CodecFor[C]()
	if err == nil {
		lc.data, err = codec.Append(nil, cfg)
	}
	if err != nil {
		lc.err = fmt.Errorf("agent: WithConfig(%v): %w", lc.typ, err)
	} else if len(lc.data) > MaxConfigSize {
		lc.err = fmt.Errorf("agent: WithConfig(%v): %d bytes encoded, more than MaxConfigSize (%d): pass large data by reference (a file's path)", lc.typ, len(lc.data), MaxConfigSize)
	}
	return func(o *options) { o.config = lc }
}

// RegisterBehaviorConfig registers, as [RegisterBehavior] does, a behavior
// whose factory takes a configuration of type C: the value a launch gives
// with [WithConfig], or C's zero value when it gives none. C needs a codec
// ([CodecFor]; [ErrNoCodec] otherwise). Register it the same way in the
// parent and in the agent processes (at program start, before
// [ServeIfChild]).
func RegisterBehaviorConfig[C any](name string, f func(cfg C) (*Behavior, error)) error {
	if f == nil {
		return RegisterBehavior(name, nil) // the error
	}
	codec, err := CodecFor[C]()
	if err != nil {
		return fmt.Errorf("agent: behavior %q configuration: %w", name, err)
	}
	typ := reflect.TypeFor[C]()
	return register(name, registered{
		cfgType: typ,
		build: func(data []byte) (*Behavior, error) {
			var cfg C
			if len(data) > 0 {
				if err := codec.Decode(data, &cfg); err != nil {
					return nil, decodeMismatch(fmt.Sprintf("agent: configuration of behavior %q", name), typ, data, err)
				}
			}
			return f(cfg)
		},
	})
}

// registered is a registered behavior: its factory, which takes the
// encoded configuration, and the configuration's type (nil for a behavior
// that takes none).
type registered struct {
	build   func(config []byte) (*Behavior, error)
	cfgType reflect.Type
}

// factory returns the Factory of one launch of r with cfg (nil: no
// WithConfig), or why cfg does not fit r.
func (r registered) factory(name string, cfg *launchConfig) (Factory, error) {
	var data []byte
	if cfg != nil {
		switch {
		case cfg.err != nil:
			return nil, cfg.err
		case r.cfgType == nil:
			return nil, fmt.Errorf("agent: behavior %q takes no configuration (WithConfig(%v) given): register it with RegisterBehaviorConfig", name, cfg.typ)
		case cfg.typ != nil && cfg.typ != r.cfgType:
			return nil, fmt.Errorf("agent: behavior %q takes a configuration of type %v, not %v", name, r.cfgType, cfg.typ)
		}
		data = cfg.data
	}
	return func() (*Behavior, error) { return r.build(data) }, nil
}

// configEnv returns the environment entry that carries cfg to an agent
// process: empty when there is none (an agent process that launches
// agents must not pass its own on).
func configEnv(cfg *launchConfig) string {
	if cfg == nil {
		return EnvConfig + "="
	}
	return EnvConfig + "=" + base64.StdEncoding.EncodeToString(cfg.data)
}

// configFromEnv reads the configuration an agent process was given.
func configFromEnv(s string) (*launchConfig, error) {
	if s == "" {
		return nil, nil
	}
	data, err := base64.StdEncoding.DecodeString(s)
	if err != nil {
		return nil, fmt.Errorf("agent: %s: %w", EnvConfig, err)
	}
	return &launchConfig{data: data}, nil
}
