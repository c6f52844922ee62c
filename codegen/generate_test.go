package main

import (
	"bytes"
	"flag"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// writePkg writes src as api.go of a new module example.com/api, and the
// other files given as path/contents pairs, and returns its directory.
func writePkg(t *testing.T, src string, files ...string) string {
	t.Helper()
	dir := t.TempDir()
	files = append([]string{"go.mod", "module example.com/api\n\ngo 1.26\n", "api.go", src}, files...)
	for i := 0; i < len(files); i += 2 {
		p := filepath.Join(dir, files[i])
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, []byte(files[i+1]), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	return dir
}

// gen runs Generate on the interfaces names of the package in dir.
func gen(dir string, names ...string) ([]byte, error) {
	return Generate(dir, Config{Names: names, Output: "api_shmex.go"})
}

func TestGenerateImports(t *testing.T) {
	dir := writePkg(t, `package api

import (
	stdctx "context"
	"io/fs"
	"strings"
	"time"
)

type Clock interface {
	Since(ctx stdctx.Context, t time.Duration) (fs.FileMode, error)
	Stop(stdctx.Context) error
}

var _ = strings.ToUpper
`)
	src, err := gen(dir, "Clock")
	if err != nil {
		t.Fatal(err)
	}
	s := string(src)
	for _, want := range []string{`"context"`, `"io/fs"`, `"time"`, `"github.com/shmex/shmex/agent"`,
		"func (h ClockHandle) Since(ctx context.Context, t time.Duration) (fs.FileMode, error)",
		"func (h ClockHandle) StopAsync(ctx context.Context) (*agent.Future[agent.NoArgs], error)",
		"func AddClockActions(b *agent.Behavior, impl Clock) error",
		"DO NOT EDIT"} {
		if !strings.Contains(s, want) {
			t.Errorf("generated code lacks %q:\n%s", want, s)
		}
	}
	if strings.Contains(s, `"strings"`) {
		t.Errorf("generated code imports an unused package:\n%s", s)
	}
}

// TestGenerateImportNames: an import is kept when a type names it, not when
// its name is a suffix of another one's (pkg in mypkg.T); a major version
// suffix is not the package's name, nor is a last element that is not a
// Go name: the generated imports use the packages' real names.
func TestGenerateImportNames(t *testing.T) {
	dir := writePkg(t, `package api

import (
	"context"
	"example.com/api/mypkg"
	"example.com/api/pkg"
	"example.com/api/vers/v2"
	"example.com/api/yaml.v3"
)

type API interface {
	Get(ctx context.Context, k mypkg.Key) (vers.Value, error)
	Node(ctx context.Context) (yaml.Node, error)
}

var _ pkg.X
`,
		"mypkg/k.go", "package mypkg\n\ntype Key string\n",
		"pkg/x.go", "package pkg\n\ntype X int\n",
		"vers/v2/v.go", "package vers\n\ntype Value int64\n",
		"yaml.v3/n.go", "package yaml\n\ntype Node []string\n")
	src, err := gen(dir, "API")
	if err != nil {
		t.Fatal(err)
	}
	s := string(src)
	for _, want := range []string{`"example.com/api/mypkg"`, `vers "example.com/api/vers/v2"`, `yaml "example.com/api/yaml.v3"`} {
		if !strings.Contains(s, want) {
			t.Errorf("generated code lacks %q:\n%s", want, s)
		}
	}
	if strings.Contains(s, `"example.com/api/pkg"`) {
		t.Errorf("generated code imports an unused package:\n%s", s)
	}
}

func TestGenerateErrors(t *testing.T) {
	for _, tc := range []struct{ name, body, want string }{
		{"no context", "Do(n int) error", "context.Context"},
		{"two args", "Do(ctx context.Context, a, b int) error", "at most one argument"},
		{"no error", "Do(ctx context.Context) int", "error last"},
		{"three results", "Do(ctx context.Context) (int, int, error)", "error last"},
		{"variadic", "Do(ctx context.Context, a ...int) error", "variadic"},
		{"embedded", "fmt.Stringer", "embedded"},
		{"clash", "Do(ctx context.Context) error\n\tDoAsync(ctx context.Context) error", "clashes"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dir := writePkg(t, "package api\n\nimport (\n\t\"context\"\n\t\"fmt\"\n)\n\nvar _ fmt.Stringer\nvar _ context.Context\n\ntype API interface {\n\t"+tc.body+"\n}\n")
			_, err := gen(dir, "API")
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("err = %v, want one mentioning %q", err, tc.want)
			}
		})
	}
	dir := writePkg(t, "package api\n\ntype NotIface struct{}\n")
	for _, name := range []string{"NotIface", "Missing"} {
		if _, err := gen(dir, name); err == nil {
			t.Errorf("%s: no error", name)
		}
	}
	if _, err := gen(t.TempDir(), "X"); err == nil {
		t.Error("empty directory: no error")
	}
}

func TestRun(t *testing.T) {
	dir := writePkg(t, "package api\n\nimport \"context\"\n\ntype Pinger interface {\n\tPing(ctx context.Context) error\n}\n")
	var stderr bytes.Buffer
	t.Setenv("GOFILE", "api.go")
	if code := run([]string{"-type", "Pinger", "-dir", dir}, &stderr); code != 0 {
		t.Fatalf("exit %d: %s", code, stderr.String())
	}
	if _, err := os.Stat(filepath.Join(dir, "api_shmex.go")); err != nil {
		t.Fatal(err)
	}
	// The output file is not parsed as input: a second run works.
	if code := run([]string{"-type", "Pinger", "-dir", dir}, &stderr); code != 0 {
		t.Fatalf("second run: exit %d: %s", code, stderr.String())
	}
	if code := run([]string{"-dir", dir}, &stderr); code != 2 {
		t.Errorf("no -type: exit %d", code)
	}
	if code := run([]string{"-type", "Missing", "-dir", dir}, &stderr); code != 1 {
		t.Errorf("missing type: exit %d", code)
	}
}

// TestGenerateTypeChecks: every argument and result type is checked when
// the generator runs; one the agent runtime has no codec for is refused
// with its file, line and reason.
func TestGenerateTypeChecks(t *testing.T) {
	const types = `
type Celsius float64
type Vec []float64
type Point struct{ X, Y float64 }

func (p *Point) MarshalMsg(b []byte) ([]byte, error)   { return b, nil }
func (p *Point) UnmarshalMsg(b []byte) ([]byte, error) { return b, nil }

type Plain struct{ A int }
`
	for _, tc := range []struct{ name, sig, want string }{
		{"basic", "Do(ctx context.Context, a int64) (string, error)", ""},
		{"named basic", "Do(ctx context.Context, c Celsius) (Celsius, error)", ""},
		{"slice of float", "Do(ctx context.Context, v []float64) ([]float64, error)", ""},
		{"named slice", "Do(ctx context.Context, v Vec) (Vec, error)", ""},
		{"map", "Do(ctx context.Context, m map[string][]int) (map[int64]Point, error)", ""},
		{"msgp value and pointer", "Do(ctx context.Context, p Point) (*Point, error)", ""},
		{"slice of msgp", "Do(ctx context.Context, ps []Point) ([]*Point, error)", ""},
		{"bytes", "Do(ctx context.Context, b []byte) ([][]byte, error)", ""},
		{"struct without codec", "Do(ctx context.Context, p Plain) error", "api.go:6:2: API.Do: argument p: Plain is a struct without msgp codecs"},
		{"chan", "Do(ctx context.Context) (chan int, error)", "result: chan int cannot travel between processes"},
		{"func", "Do(ctx context.Context, f func()) error", "func() cannot travel"},
		{"interface", "Do(ctx context.Context) (any, error)", "is an interface"},
		{"array", "Do(ctx context.Context, a [4]int) error", "use a slice"},
		{"pointer to basic", "Do(ctx context.Context, p *int) error", "pointers are supported only to types with msgp codecs"},
		{"float keys", "Do(ctx context.Context, m map[float64]int) error", "map keys must be strings or integers"},
		{"nested refusal", "Do(ctx context.Context, m map[string][]Plain) error", "Plain is a struct without msgp codecs"},
		{"complex", "Do(ctx context.Context, c complex128) error", "complex128 has no MessagePack codec"},
		{"anonymous struct", "Do(ctx context.Context, s struct{ A int }) error", "anonymous structs"},
		{"unresolved", "Do(ctx context.Context, u Undefined) error", "does not resolve"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dir := writePkg(t, "package api\n\nimport \"context\"\n\ntype API interface {\n\t"+tc.sig+"\n}\n"+types)
			_, err := gen(dir, "API")
			if tc.want == "" {
				if err != nil {
					t.Fatalf("refused: %v", err)
				}
				return
			}
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("err = %v, want one with %q", err, tc.want)
			}
		})
	}
}

// TestGeneratePendingMsgp: a struct of a file that runs msgp from
// go:generate is accepted before msgp has written its methods (the two
// generators run in either order).
func TestGeneratePendingMsgp(t *testing.T) {
	dir := writePkg(t, `package api

import "context"

type API interface {
	Do(ctx context.Context, r Request) (Reply, error)
}
`, "types.go", "package api\n\n//go:generate go tool msgp\n\ntype Request struct{ N int }\n\ntype Reply struct{ S string }\n")
	if _, err := gen(dir, "API"); err != nil {
		t.Fatal(err)
	}
}

func TestGenerateNaming(t *testing.T) {
	for _, tc := range []struct {
		naming Naming
		want   []string
	}{
		{"", []string{`"get_value"`, `"http_server"`, `"id"`, `"add2"`, `"custom-name"`}},
		{NamingSnake, []string{`"get_value"`, `"http_server"`}},
		{NamingGo, []string{`"GetValue"`, `"HTTPServer"`, `"ID"`, `"Add2"`, `"custom-name"`}},
		{NamingCamel, []string{`"getValue"`, `"httpServer"`, `"id"`}},
	} {
		dir := writePkg(t, `package api

import "context"

type API interface {
	GetValue(ctx context.Context) (int, error)
	HTTPServer(ctx context.Context) error
	ID(ctx context.Context) (string, error)
	Add2(ctx context.Context, n int) (int, error)
	// Mean is called "custom-name" by peers.
	//
	//shmex:action custom-name
	Mean(ctx context.Context, v []float64) (float64, error)
}
`)
		src, err := Generate(dir, Config{Names: []string{"API"}, Output: "api_shmex.go", Naming: tc.naming})
		if err != nil {
			t.Fatalf("%q: %v", tc.naming, err)
		}
		for _, w := range tc.want {
			if c := strings.Count(string(src), w); c != 5 { // Call, Action and AddAction, and the two doc comments
				t.Errorf("naming %q: %s appears %d times, want 5:\n%s", tc.naming, w, c, src)
			}
		}
	}
	dir := writePkg(t, "package api\n\nimport \"context\"\n\ntype API interface {\n\tGetX(ctx context.Context) error\n\tGet_x(ctx context.Context) error\n}\n")
	if _, err := gen(dir, "API"); err == nil || !strings.Contains(err.Error(), `action name "get_x"`) {
		t.Errorf("two methods with one action name: %v", err)
	}
	if _, err := Generate(dir, Config{Names: []string{"API"}, Naming: "kebab"}); err == nil {
		t.Error("unknown naming accepted")
	}
}

func TestSnake(t *testing.T) {
	for in, want := range map[string]string{
		"Mean": "mean", "GetValue": "get_value", "HTTPServer": "http_server", "ID": "id",
		"Add2": "add2", "ServeHTTP": "serve_http", "A": "a", "ParseURL": "parse_url", "V2Beta": "v2_beta",
	} {
		if got := snake(in); got != want {
			t.Errorf("snake(%q) = %q, want %q", in, got, want)
		}
	}
}

var update = flag.Bool("update", false, "rewrite the golden files of TestGolden")

// TestGolden compares the generator's output for testdata/golden with the
// committed file (go test ./codegen -run TestGolden -update rewrites it).
func TestGolden(t *testing.T) {
	dir := filepath.Join("testdata", "golden")
	src, err := Generate(dir, Config{Names: []string{"Stats"}, Output: "api_shmex.go"})
	if err != nil {
		t.Fatal(err)
	}
	golden := filepath.Join(dir, "api_shmex.go.golden")
	if *update {
		if err := os.WriteFile(golden, src, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	want, err := os.ReadFile(golden)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(src, want) {
		t.Errorf("generated code differs from %s (rerun with -update if the change is meant):\n%s", golden, src)
	}
}
