package agent

import (
	"reflect"
	"testing"

	"github.com/shmex/shmex/exchange"
)

// TestResetMsg: resetMsg, the field-by-field Reset, leaves a Message as
// Reset does, whatever its fields hold; every field is filled through
// reflection, so that a field added to Message and not to resetMsg fails
// here.
func TestResetMsg(t *testing.T) {
	var a exchange.Message
	fillMsg(t, &a)
	v := reflect.ValueOf(&a).Elem()
	b := a
	a.Reset()
	resetMsg(&b)
	if !reflect.DeepEqual(a, b) {
		t.Fatalf("resetMsg left %+v, Reset %+v", b, a)
	}
	for i := range v.NumField() {
		if f := reflect.ValueOf(b).Field(i); f.Kind() == reflect.Slice && f.Cap() == 0 {
			t.Errorf("field %s lost its capacity", v.Type().Field(i).Name)
		}
	}
}

// fillMsg sets every field of m to something other than its zero value.
func fillMsg(t *testing.T, m *exchange.Message) {
	v := reflect.ValueOf(m).Elem()
	for i := range v.NumField() {
		f := v.Field(i)
		switch f.Kind() {
		case reflect.Slice:
			f.Set(reflect.ValueOf([]byte("filled")).Convert(f.Type()))
		case reflect.Bool:
			f.SetBool(true)
		case reflect.Uint8:
			f.SetUint(3)
		case reflect.Array:
			for j := range f.Len() {
				f.Index(j).SetUint(7)
			}
		case reflect.Struct: // EntityID
			for j := range f.NumField() {
				g := f.Field(j)
				switch g.Kind() {
				case reflect.Array:
					for k := range g.Len() {
						g.Index(k).SetUint(9)
					}
				case reflect.Uint8:
					g.SetUint(1)
				default:
					t.Fatalf("field %s.%s of kind %v: teach this test", v.Type().Field(i).Name, f.Type().Field(j).Name, g.Kind())
				}
			}
		default:
			t.Fatalf("field %s of kind %v: teach this test", v.Type().Field(i).Name, f.Kind())
		}
	}
}

// TestInitCallMsg: initCall leaves the request's Message as resetMsg and
// then the envelope's fields would, whatever it held (it writes each field
// itself, see initCall).
func TestInitCallMsg(t *testing.T) {
	o := defaultOptions()
	ep := newEndpoint(exchange.NewLocal(), exchange.NewClientID(), &o)
	h := newHandle(ep, fixedTarget(exchange.NewAgentID()))
	for _, kind := range []exchange.Kind{exchange.KindActionRequest, exchange.KindPingRequest, exchange.KindShutdownRequest} {
		c := &call{msg: new(exchange.Message)}
		fillMsg(t, c.msg)
		h.initCall(c, kind)
		want := new(exchange.Message)
		fillMsg(t, want)
		resetMsg(want)
		want.Kind, want.Tag, want.Src, want.Dest, want.Label = kind, c.tag, ep.id, h.AgentID(), h.label
		if !reflect.DeepEqual(c.msg, want) {
			t.Errorf("%v: initCall left %+v, want %+v", kind, c.msg, want)
		}
		if c.ep != ep || c.h != h || c.dest != h.AgentID() || c.kind != kind || c.tag == (exchange.UUID{}) {
			t.Errorf("%v: call fields %+v", kind, c)
		}
	}
}
