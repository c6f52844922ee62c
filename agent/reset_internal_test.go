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
	v := reflect.ValueOf(&a).Elem()
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
