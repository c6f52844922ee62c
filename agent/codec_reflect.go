package agent

import (
	"errors"
	"fmt"
	"reflect"
	"sync"

	"github.com/tinylib/msgp/msgp"
)

// The composite codecs: what CodecFor supports beyond the basic types and
// the msgp-generated ones, built once per type by reflection. The set is
// the one codegen accepts (see its check.go): named types over a basic
// type, slices (not of struct{}), maps from strings or integers, pointers
// to msgp types, and any nesting of these with basic and msgp types.

// valueCodec encodes and decodes one value of a fixed type by reflection.
type valueCodec struct {
	enc func(b []byte, v reflect.Value) ([]byte, error)
	// dec decodes into v, which is settable, and returns the rest of b.
	dec func(b []byte, v reflect.Value) ([]byte, error)
}

// reflectCodec is the Codec of a composite type T.
type reflectCodec[T any] struct{ c *valueCodec }

func (r reflectCodec[T]) Append(b []byte, v T) ([]byte, error) {
	return r.c.enc(b, reflect.ValueOf(&v).Elem())
}

func (r reflectCodec[T]) Decode(b []byte, v *T) error {
	rest, err := r.c.dec(b, reflect.ValueOf(v).Elem())
	if err != nil {
		return err
	}
	if len(rest) != 0 {
		return fmt.Errorf("%d trailing bytes", len(rest))
	}
	return nil
}

// valueCodecs caches the codecs built by valueCodecFor, by type.
var valueCodecs sync.Map // reflect.Type -> *valueCodec

var msgpValueType = reflect.TypeFor[msgpValue]()

// errEmptyStruct refuses a struct{} where it would carry nothing.
var errEmptyStruct = errors.New("a slice or map of empty structs carries nothing")

// valueCodecFor returns the codec of t, or why t has none.
func valueCodecFor(t reflect.Type, depth int) (*valueCodec, error) {
	if c, ok := valueCodecs.Load(t); ok {
		return c.(*valueCodec), nil
	}
	if depth > 16 {
		return nil, fmt.Errorf("%v: nested too deeply", t)
	}
	c, err := buildValueCodec(t, depth)
	if err != nil {
		return nil, err
	}
	v, _ := valueCodecs.LoadOrStore(t, c)
	return v.(*valueCodec), nil
}

func buildValueCodec(t reflect.Type, depth int) (*valueCodec, error) {
	if reflect.PointerTo(t).Implements(msgpValueType) {
		return &valueCodec{
			enc: func(b []byte, v reflect.Value) ([]byte, error) {
				if !v.CanAddr() { // a map's value: copy it out
					p := reflect.New(t)
					p.Elem().Set(v)
					v = p.Elem()
				}
				return v.Addr().Interface().(msgpValue).MarshalMsg(b)
			},
			dec: func(b []byte, v reflect.Value) ([]byte, error) {
				return v.Addr().Interface().(msgpValue).UnmarshalMsg(b)
			},
		}, nil
	}
	switch t.Kind() {
	case reflect.Bool:
		return &valueCodec{
			enc: func(b []byte, v reflect.Value) ([]byte, error) { return msgp.AppendBool(b, v.Bool()), nil },
			dec: func(b []byte, v reflect.Value) ([]byte, error) {
				x, rest, err := msgp.ReadBoolBytes(b)
				if err == nil {
					v.SetBool(x)
				}
				return rest, err
			},
		}, nil
	case reflect.Int, reflect.Int8, reflect.Int16, reflect.Int32, reflect.Int64:
		return &valueCodec{
			enc: func(b []byte, v reflect.Value) ([]byte, error) { return msgp.AppendInt64(b, v.Int()), nil },
			dec: func(b []byte, v reflect.Value) ([]byte, error) {
				x, rest, err := msgp.ReadInt64Bytes(b)
				if err != nil {
					return rest, err
				}
				if v.OverflowInt(x) {
					return rest, fmt.Errorf("%d overflows %v", x, t)
				}
				v.SetInt(x)
				return rest, nil
			},
		}, nil
	case reflect.Uint, reflect.Uint8, reflect.Uint16, reflect.Uint32, reflect.Uint64:
		return &valueCodec{
			enc: func(b []byte, v reflect.Value) ([]byte, error) { return msgp.AppendUint64(b, v.Uint()), nil },
			dec: func(b []byte, v reflect.Value) ([]byte, error) {
				x, rest, err := msgp.ReadUint64Bytes(b)
				if err != nil {
					return rest, err
				}
				if v.OverflowUint(x) {
					return rest, fmt.Errorf("%d overflows %v", x, t)
				}
				v.SetUint(x)
				return rest, nil
			},
		}, nil
	case reflect.Float32:
		return &valueCodec{
			enc: func(b []byte, v reflect.Value) ([]byte, error) { return msgp.AppendFloat32(b, float32(v.Float())), nil },
			dec: func(b []byte, v reflect.Value) ([]byte, error) {
				x, rest, err := msgp.ReadFloat32Bytes(b)
				if err == nil {
					v.SetFloat(float64(x))
				}
				return rest, err
			},
		}, nil
	case reflect.Float64:
		return &valueCodec{
			enc: func(b []byte, v reflect.Value) ([]byte, error) { return msgp.AppendFloat64(b, v.Float()), nil },
			dec: func(b []byte, v reflect.Value) ([]byte, error) {
				x, rest, err := msgp.ReadFloat64Bytes(b)
				if err == nil {
					v.SetFloat(x)
				}
				return rest, err
			},
		}, nil
	case reflect.String:
		return &valueCodec{
			enc: func(b []byte, v reflect.Value) ([]byte, error) { return msgp.AppendString(b, v.String()), nil },
			dec: func(b []byte, v reflect.Value) ([]byte, error) {
				x, rest, err := msgp.ReadStringBytes(b)
				if err == nil {
					v.SetString(x)
				}
				return rest, err
			},
		}, nil
	case reflect.Pointer:
		if !t.Implements(msgpValueType) {
			return nil, fmt.Errorf("%v: pointers are supported only to msgp-generated types", t)
		}
		elem := t.Elem()
		return &valueCodec{
			enc: func(b []byte, v reflect.Value) ([]byte, error) {
				if v.IsNil() {
					return msgp.AppendNil(b), nil
				}
				return v.Interface().(msgpValue).MarshalMsg(b)
			},
			dec: func(b []byte, v reflect.Value) ([]byte, error) {
				if msgp.IsNil(b) {
					v.SetZero()
					return msgp.ReadNilBytes(b)
				}
				if v.IsNil() {
					v.Set(reflect.New(elem))
				}
				return v.Interface().(msgpValue).UnmarshalMsg(b)
			},
		}, nil
	case reflect.Slice:
		if t.Elem().Kind() == reflect.Uint8 && !reflect.PointerTo(t.Elem()).Implements(msgpValueType) {
			return &valueCodec{
				enc: func(b []byte, v reflect.Value) ([]byte, error) { return msgp.AppendBytes(b, v.Bytes()), nil },
				dec: func(b []byte, v reflect.Value) ([]byte, error) {
					x, rest, err := msgp.ReadBytesBytes(b, v.Bytes()[:0])
					if err == nil {
						if x == nil {
							x = []byte{}
						}
						v.SetBytes(x)
					}
					return rest, err
				},
			}, nil
		}
		if isEmptyStruct(t.Elem()) {
			return nil, fmt.Errorf("%v: %w", t, errEmptyStruct)
		}
		ec, err := valueCodecFor(t.Elem(), depth+1)
		if err != nil {
			return nil, fmt.Errorf("element of %v: %w", t, err)
		}
		return &valueCodec{
			enc: func(b []byte, v reflect.Value) ([]byte, error) {
				if v.IsNil() {
					return msgp.AppendNil(b), nil
				}
				n := v.Len()
				b = msgp.AppendArrayHeader(b, uint32(n))
				var err error
				for i := 0; i < n; i++ {
					if b, err = ec.enc(b, v.Index(i)); err != nil {
						return b, err
					}
				}
				return b, nil
			},
			dec: func(b []byte, v reflect.Value) ([]byte, error) {
				if msgp.IsNil(b) {
					v.SetZero()
					return msgp.ReadNilBytes(b)
				}
				n, rest, err := msgp.ReadArrayHeaderBytes(b)
				if err != nil {
					return rest, err
				}
				// Every element takes at least one byte: a count above
				// what is left is a lie, not a reason to allocate.
				if int(n) > len(rest) {
					return rest, fmt.Errorf("array of %d elements in %d bytes: %w", n, len(rest), msgp.ErrShortBytes)
				}
				s := v
				if s.IsNil() || s.Cap() < int(n) {
					s = reflect.MakeSlice(t, int(n), int(n))
				} else {
					s = s.Slice(0, int(n))
				}
				for i := 0; i < int(n); i++ {
					if rest, err = ec.dec(rest, s.Index(i)); err != nil {
						return rest, fmt.Errorf("element %d: %w", i, err)
					}
				}
				v.Set(s)
				return rest, nil
			},
		}, nil
	case reflect.Map:
		switch t.Key().Kind() {
		case reflect.String, reflect.Int, reflect.Int8, reflect.Int16, reflect.Int32, reflect.Int64,
			reflect.Uint, reflect.Uint8, reflect.Uint16, reflect.Uint32, reflect.Uint64:
		default:
			return nil, fmt.Errorf("%v: map keys must be strings or integers", t)
		}
		if isEmptyStruct(t.Elem()) {
			return nil, fmt.Errorf("%v: %w", t, errEmptyStruct)
		}
		kc, err := valueCodecFor(t.Key(), depth+1)
		if err != nil {
			return nil, fmt.Errorf("key of %v: %w", t, err)
		}
		vc, err := valueCodecFor(t.Elem(), depth+1)
		if err != nil {
			return nil, fmt.Errorf("value of %v: %w", t, err)
		}
		return &valueCodec{
			enc: func(b []byte, v reflect.Value) ([]byte, error) {
				if v.IsNil() {
					return msgp.AppendNil(b), nil
				}
				b = msgp.AppendMapHeader(b, uint32(v.Len()))
				var err error
				for it := v.MapRange(); it.Next(); {
					if b, err = kc.enc(b, it.Key()); err != nil {
						return b, err
					}
					if b, err = vc.enc(b, it.Value()); err != nil {
						return b, err
					}
				}
				return b, nil
			},
			dec: func(b []byte, v reflect.Value) ([]byte, error) {
				if msgp.IsNil(b) {
					v.SetZero()
					return msgp.ReadNilBytes(b)
				}
				n, rest, err := msgp.ReadMapHeaderBytes(b)
				if err != nil {
					return rest, err
				}
				if int(n) > len(rest)/2 {
					return rest, fmt.Errorf("map of %d entries in %d bytes: %w", n, len(rest), msgp.ErrShortBytes)
				}
				m := reflect.MakeMapWithSize(t, int(n))
				k, e := reflect.New(t.Key()).Elem(), reflect.New(t.Elem()).Elem()
				for i := 0; i < int(n); i++ {
					k.SetZero()
					e.SetZero()
					if rest, err = kc.dec(rest, k); err != nil {
						return rest, fmt.Errorf("key %d: %w", i, err)
					}
					if rest, err = vc.dec(rest, e); err != nil {
						return rest, fmt.Errorf("value of key %v: %w", k, err)
					}
					m.SetMapIndex(k, e)
				}
				v.Set(m)
				return rest, nil
			},
		}, nil
	case reflect.Struct:
		if t.NumField() == 0 {
			return &valueCodec{
				enc: func(b []byte, v reflect.Value) ([]byte, error) { return msgp.AppendNil(b), nil },
				dec: func(b []byte, v reflect.Value) ([]byte, error) {
					var s struct{}
					rest, err := basicStructDecode(b, &s)
					return rest, err
				},
			}, nil
		}
		return nil, fmt.Errorf("%v is a struct without msgp codecs: run `go tool msgp` on the file that declares it (go:generate)", t)
	case reflect.Array:
		return nil, fmt.Errorf("%v: arrays are not supported (use a slice)", t)
	case reflect.Interface:
		return nil, fmt.Errorf("%v is an interface: the receiver cannot know what to decode (use a concrete type)", t)
	case reflect.Chan, reflect.Func, reflect.UnsafePointer, reflect.Uintptr:
		return nil, fmt.Errorf("%v cannot travel between processes", t)
	}
	return nil, fmt.Errorf("%v is not supported", t)
}

func isEmptyStruct(t reflect.Type) bool { return t.Kind() == reflect.Struct && t.NumField() == 0 }

// basicStructDecode reads "no value" as basicCodec does for struct{}, and
// returns the rest of b.
func basicStructDecode(b []byte, _ *struct{}) ([]byte, error) {
	switch msgp.NextType(b) {
	case msgp.NilType:
		return msgp.ReadNilBytes(b)
	case msgp.ArrayType:
		n, rest, err := msgp.ReadArrayHeaderBytes(b)
		if err == nil && n != 0 {
			err = fmt.Errorf("expected no value, got an array of %d", n)
		}
		return rest, err
	case msgp.MapType:
		n, rest, err := msgp.ReadMapHeaderBytes(b)
		if err == nil && n != 0 {
			err = fmt.Errorf("expected no value, got a map of %d", n)
		}
		return rest, err
	}
	return b, fmt.Errorf("expected no value, got %v", msgp.NextType(b))
}
