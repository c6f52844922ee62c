package main

import (
	"fmt"
	"go/ast"
	"go/token"
	"go/types"
	"strings"

	"golang.org/x/tools/go/packages"
)

// The types an action may take and return are the ones the agent runtime
// has a codec for (agent.CodecFor); the generator refuses every other one
// when it runs, with the file, the line and the reason, so that generated
// code never compiles into an agent that dies at start with "no codec":
//
//   - the basic types: bool, signed and unsigned integers, float32,
//     float64, string, and named types whose underlying type is one of
//     them (type Celsius float64);
//   - []byte, and struct{} (agent.NoArgs) for "nothing";
//   - types with msgp codecs: *T has MarshalMsg and UnmarshalMsg (what
//     `go tool msgp` generates, and what proxystore's payload type has), or
//     T is a struct declared in a file of the package that has a
//     `//go:generate` line running msgp (its methods are generated next);
//   - pointers to types with msgp codecs (nil travels as MessagePack nil);
//   - slices of any of these but struct{}, and maps from strings or
//     integers to any of these (named slice and map types too).
//
// Channels, functions, interfaces, arrays, complex numbers and structs
// without msgp codecs are refused.

// typeChecker decides whether a type can travel as an action's argument or
// result.
type typeChecker struct {
	pkg *types.Package
	// pendingMsgp holds the structs of the package whose file runs msgp
	// from go:generate: their codecs exist once go generate has run.
	pendingMsgp map[*types.TypeName]bool
}

// loadPackage type-checks the package in dir with the go command. A
// package that does not compile (a generated file that lags behind its
// interface, say) still gives the types the interfaces use: check finds
// those that do not resolve.
func loadPackage(dir string) (*packages.Package, error) {
	cfg := &packages.Config{
		Mode: packages.NeedName | packages.NeedFiles | packages.NeedSyntax | packages.NeedTypes |
			packages.NeedTypesInfo | packages.NeedImports,
		Dir: dir,
	}
	pkgs, err := packages.Load(cfg, ".")
	if err != nil {
		return nil, fmt.Errorf("type-checking the package in %s: %w", dir, err)
	}
	if len(pkgs) != 1 {
		return nil, fmt.Errorf("type-checking the package in %s: %d packages found", dir, len(pkgs))
	}
	p := pkgs[0]
	if p.Types == nil || len(p.Syntax) == 0 {
		msg := "no Go files"
		if len(p.Errors) > 0 {
			msg = p.Errors[0].Error()
		}
		return nil, fmt.Errorf("type-checking the package in %s: %s", dir, msg)
	}
	return p, nil
}

// newTypeChecker returns the checker of the package p.
func newTypeChecker(p *packages.Package) *typeChecker {
	c := &typeChecker{pkg: p.Types, pendingMsgp: map[*types.TypeName]bool{}}
	for _, f := range p.Syntax {
		if !runsMsgp(f) {
			continue
		}
		for _, d := range f.Decls {
			gd, ok := d.(*ast.GenDecl)
			if !ok || gd.Tok != token.TYPE {
				continue
			}
			for _, s := range gd.Specs {
				ts := s.(*ast.TypeSpec)
				if _, ok := ts.Type.(*ast.StructType); !ok {
					continue
				}
				if tn, ok := p.TypesInfo.Defs[ts.Name].(*types.TypeName); ok {
					c.pendingMsgp[tn] = true
				}
			}
		}
	}
	return c
}

// runsMsgp reports whether f has a go:generate line that runs msgp on it.
func runsMsgp(f *ast.File) bool {
	for _, cg := range f.Comments {
		for _, cm := range cg.List {
			if strings.HasPrefix(cm.Text, "//go:generate ") && strings.Contains(cm.Text, "msgp") {
				return true
			}
		}
	}
	return false
}

// check returns nil when t can be an action's argument or result, else the
// reason it cannot.
func (c *typeChecker) check(t types.Type) error {
	if s, ok := types.Unalias(t).(*types.Struct); ok && s.NumFields() == 0 {
		return nil // struct{}, agent.NoArgs: nothing
	}
	return c.checkValue(t, 0)
}

func (c *typeChecker) checkValue(t types.Type, depth int) error {
	if depth > 16 {
		return fmt.Errorf("%s: nested too deeply", c.str(t))
	}
	t = types.Unalias(t)
	if n, ok := t.(*types.Named); ok && c.hasMsgp(n) {
		return nil
	}
	switch u := t.(type) {
	case *types.Basic:
		if basicOK(u) {
			return nil
		}
		return fmt.Errorf("%s has no MessagePack codec (use bool, an integer, float32, float64 or string)", c.str(t))
	case *types.Named:
		switch under := u.Underlying().(type) {
		case *types.Basic:
			if basicOK(under) {
				return nil
			}
			return fmt.Errorf("%s: its underlying type %s has no MessagePack codec", c.str(t), under)
		case *types.Slice, *types.Map:
			if err := c.checkValue(under, depth+1); err != nil {
				return fmt.Errorf("%s: %w", c.str(t), err)
			}
			return nil
		case *types.Struct:
			return fmt.Errorf("%s is a struct without msgp codecs (MarshalMsg and UnmarshalMsg on *%s): add `//go:generate go tool msgp` to the file that declares it, and run go generate", c.str(t), u.Obj().Name())
		case *types.Pointer:
			return fmt.Errorf("%s: named pointer types are not supported (use *%s)", c.str(t), c.str(under.Elem()))
		}
		return c.refuse(t, u.Underlying())
	case *types.Pointer:
		if n, ok := types.Unalias(u.Elem()).(*types.Named); ok && c.hasMsgp(n) {
			return nil
		}
		return fmt.Errorf("%s: pointers are supported only to types with msgp codecs", c.str(t))
	case *types.Slice:
		if b, ok := types.Unalias(u.Elem()).(*types.Basic); ok && b.Kind() == types.Uint8 {
			return nil // []byte
		}
		if s, ok := types.Unalias(u.Elem()).(*types.Struct); ok && s.NumFields() == 0 {
			return fmt.Errorf("%s: a slice of empty structs carries nothing", c.str(t))
		}
		if err := c.checkValue(u.Elem(), depth+1); err != nil {
			return fmt.Errorf("element of %s: %w", c.str(t), err)
		}
		return nil
	case *types.Map:
		k, ok := types.Unalias(u.Key()).Underlying().(*types.Basic)
		if !ok || !(k.Info()&types.IsInteger != 0 || k.Info()&types.IsString != 0) {
			return fmt.Errorf("%s: map keys must be strings or integers", c.str(t))
		}
		if err := c.checkValue(u.Elem(), depth+1); err != nil {
			return fmt.Errorf("value of %s: %w", c.str(t), err)
		}
		return nil
	}
	return c.refuse(t, t)
}

// refuse explains why the type t (of underlying type u) cannot travel.
func (c *typeChecker) refuse(t, u types.Type) error {
	switch u.(type) {
	case *types.Chan, *types.Signature:
		return fmt.Errorf("%s cannot travel between processes", c.str(t))
	case *types.Interface:
		return fmt.Errorf("%s is an interface: the receiver cannot know what to decode (use a concrete type)", c.str(t))
	case *types.Array:
		return fmt.Errorf("%s: arrays are not supported (use a slice)", c.str(t))
	case *types.Struct:
		return fmt.Errorf("%s: anonymous structs are not supported (declare a named type with msgp codecs)", c.str(t))
	}
	return fmt.Errorf("%s is not supported", c.str(t))
}

// basicOK reports whether the basic type b has a codec.
func basicOK(b *types.Basic) bool {
	switch b.Kind() {
	case types.Bool, types.Int, types.Int8, types.Int16, types.Int32, types.Int64,
		types.Uint, types.Uint8, types.Uint16, types.Uint32, types.Uint64,
		types.Float32, types.Float64, types.String:
		return true
	}
	return false
}

// hasMsgp reports whether the named type n has msgp codecs: MarshalMsg and
// UnmarshalMsg with msgp's signatures on *n, or generated for it by a
// go:generate line of its package.
func (c *typeChecker) hasMsgp(n *types.Named) bool {
	if c.pendingMsgp[n.Obj()] {
		return true
	}
	ms := types.NewMethodSet(types.NewPointer(n))
	return hasBytesMethod(ms, "MarshalMsg") && hasBytesMethod(ms, "UnmarshalMsg")
}

// hasBytesMethod reports whether ms has a method name(b []byte) ([]byte,
// error).
func hasBytesMethod(ms *types.MethodSet, name string) bool {
	for i := 0; i < ms.Len(); i++ {
		f, ok := ms.At(i).Obj().(*types.Func)
		if !ok || f.Name() != name {
			continue
		}
		sig := f.Type().(*types.Signature)
		return sig.Params().Len() == 1 && isBytes(sig.Params().At(0).Type()) &&
			sig.Results().Len() == 2 && isBytes(sig.Results().At(0).Type()) &&
			sig.Results().At(1).Type().String() == "error"
	}
	return false
}

func isBytes(t types.Type) bool {
	s, ok := types.Unalias(t).(*types.Slice)
	if !ok {
		return false
	}
	b, ok := types.Unalias(s.Elem()).(*types.Basic)
	return ok && b.Kind() == types.Uint8
}

// str writes t as the package's own code would.
func (c *typeChecker) str(t types.Type) string {
	return types.TypeString(t, types.RelativeTo(c.pkg))
}

// checkTypes checks the argument and result types of the methods of the
// interface name (whose syntax is it) against what the agent runtime can
// encode, and names the first one it cannot with its position.
func checkTypes(p *packages.Package, tc *typeChecker, name string, it *ast.InterfaceType) error {
	for _, f := range it.Methods.List {
		if len(f.Names) != 1 {
			continue // refused by parseInterface
		}
		fn, ok := p.TypesInfo.Defs[f.Names[0]].(*types.Func)
		if !ok {
			continue
		}
		sig := fn.Type().(*types.Signature)
		where := fmt.Sprintf("%s: %s.%s", p.Fset.Position(f.Pos()), name, fn.Name())
		check := func(what string, t types.Type) error {
			if b, ok := t.(*types.Basic); ok && b.Kind() == types.Invalid {
				msg := "its type does not resolve"
				if len(p.Errors) > 0 {
					msg += ": " + p.Errors[0].Error()
				}
				return fmt.Errorf("%s: %s: %s", where, what, msg)
			}
			if err := tc.check(t); err != nil {
				return fmt.Errorf("%s: %s: %w", where, what, err)
			}
			return nil
		}
		if sig.Params().Len() == 2 {
			if err := check("argument "+sig.Params().At(1).Name(), sig.Params().At(1).Type()); err != nil {
				return err
			}
		}
		if sig.Results().Len() == 2 {
			if err := check("result", sig.Results().At(0).Type()); err != nil {
				return err
			}
		}
	}
	return nil
}
