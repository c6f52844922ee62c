package proxystore

import (
	"reflect"
	"sync"
)

// The end of a decoder's scope: a receiver that decodes a value, uses it
// and is done with it (the agent runtime around an action) releases the
// Blobs the decoding resolved. These find them in the decoded value by
// reflection, following the value's type once.

var blobType = reflect.TypeFor[Blob]()

// hasBlobsCache memoizes HasBlobs by type.
var hasBlobsCache sync.Map // reflect.Type -> bool

// HasBlobs reports whether a value of type t can hold a [Blob]: t is Blob,
// or a struct, array, slice, map (its values) or pointer type leading to
// one. Interface-typed fields are not followed: a decoder never puts a Blob
// there.
func HasBlobs(t reflect.Type) bool {
	if t == nil {
		return false
	}
	if v, ok := hasBlobsCache.Load(t); ok {
		return v.(bool)
	}
	seen := map[reflect.Type]bool{}
	has := hasBlobs(t, seen)
	hasBlobsCache.Store(t, has)
	return has
}

func hasBlobs(t reflect.Type, seen map[reflect.Type]bool) bool {
	if t == blobType {
		return true
	}
	if seen[t] {
		return false // a recursive type: answered where it started
	}
	seen[t] = true
	switch t.Kind() {
	case reflect.Struct:
		for i := range t.NumField() {
			if hasBlobs(t.Field(i).Type, seen) {
				return true
			}
		}
	case reflect.Array, reflect.Slice, reflect.Pointer:
		return hasBlobs(t.Elem(), seen)
	case reflect.Map:
		return hasBlobs(t.Elem(), seen)
	}
	return false
}

// ReleaseBlobs releases once every [Blob] reachable from ptr, a pointer to
// a decoded value (struct fields, array and slice elements, map values,
// pointers), and returns how many it released. A receiver calls it when it
// is done with a value it decoded: each Blob then keeps its payload only
// if it was retained ([Blob.Retain]). Blobs released already are skipped.
func ReleaseBlobs(ptr any) int {
	if p, ok := ptr.(*Blob); ok && p != nil {
		// An action's argument that is one Blob (the common case): no
		// reflection.
		if p.r != nil && p.Release() == nil {
			return 1
		}
		return 0
	}
	v := reflect.ValueOf(ptr)
	if !v.IsValid() || !HasBlobs(v.Type()) {
		return 0
	}
	n := 0
	releaseIn(v, &n, 0)
	return n
}

// maxReleaseDepth bounds the walk: decoded values are trees, and a value
// built otherwise with a cycle through pointers stops here.
const maxReleaseDepth = 64

func releaseIn(v reflect.Value, n *int, depth int) {
	if depth > maxReleaseDepth || !HasBlobs(v.Type()) {
		return
	}
	t := v.Type()
	if t == blobType {
		// The field r may be unexported in the caller's struct: read the
		// pointer without Interface, which reflect refuses there.
		p := v.Field(0)
		if p.IsNil() {
			return
		}
		r := (*blobRef)(p.UnsafePointer())
		if (Blob{r}).Release() == nil {
			*n++
		}
		return
	}
	switch t.Kind() {
	case reflect.Pointer:
		if !v.IsNil() {
			releaseIn(v.Elem(), n, depth+1)
		}
	case reflect.Struct:
		for i := range v.NumField() {
			releaseIn(v.Field(i), n, depth+1)
		}
	case reflect.Array, reflect.Slice:
		for i := range v.Len() {
			releaseIn(v.Index(i), n, depth+1)
		}
	case reflect.Map:
		it := v.MapRange()
		for it.Next() {
			releaseIn(it.Value(), n, depth+1)
		}
	}
}
