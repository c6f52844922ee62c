package main

import (
	"bytes"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func writePkg(t *testing.T, src string) string {
	t.Helper()
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, "api.go"), []byte(src), 0o644); err != nil {
		t.Fatal(err)
	}
	return dir
}

func TestGenerateImports(t *testing.T) {
	dir := writePkg(t, `package api

import (
	stdctx "context"
	"net/netip"
	"time"
	"unused/pkg"
)

type Clock interface {
	Since(ctx stdctx.Context, t time.Duration) (netip.Addr, error)
	Stop(stdctx.Context) error
}

var _ pkg.X
`)
	src, err := Generate(dir, []string{"Clock"}, "api_shmex.go")
	if err != nil {
		t.Fatal(err)
	}
	s := string(src)
	for _, want := range []string{`"context"`, `"net/netip"`, `"time"`, `"github.com/shmex/shmex/agent"`,
		"func (h ClockHandle) Since(ctx context.Context, t time.Duration) (netip.Addr, error)",
		"func (h ClockHandle) StopAsync(ctx context.Context) (*agent.Future[agent.NoArgs], error)",
		"func AddClockActions(b *agent.Behavior, impl Clock) error",
		"DO NOT EDIT"} {
		if !strings.Contains(s, want) {
			t.Errorf("generated code lacks %q:\n%s", want, s)
		}
	}
	if strings.Contains(s, "unused/pkg") {
		t.Errorf("generated code imports an unused package:\n%s", s)
	}
}

// TestGenerateImportNames: an import is kept when a type names it, not when
// its name is a suffix of another one's (pkg in mypkg.T); a major version
// suffix is not the package's name; a qualifier no import names is an error.
func TestGenerateImportNames(t *testing.T) {
	dir := writePkg(t, `package api

import (
	"context"
	"example.com/mypkg"
	"example.com/pkg"
	"example.com/vers/v2"
)

type API interface {
	Get(ctx context.Context, k mypkg.Key) (vers.Value, error)
}

var _ pkg.X
`)
	src, err := Generate(dir, []string{"API"}, "api_shmex.go")
	if err != nil {
		t.Fatal(err)
	}
	s := string(src)
	for _, want := range []string{`"example.com/mypkg"`, `vers "example.com/vers/v2"`} {
		if !strings.Contains(s, want) {
			t.Errorf("generated code lacks %q:\n%s", want, s)
		}
	}
	if strings.Contains(s, `"example.com/pkg"`) {
		t.Errorf("generated code imports an unused package:\n%s", s)
	}
	dir = writePkg(t, "package api\n\nimport (\n\t\"context\"\n\t\"gopkg.in/yaml.v3\"\n)\n\nvar _ yaml.Node\n\ntype API interface {\n\tGet(ctx context.Context) (yaml.Node, error)\n}\n")
	if _, err := Generate(dir, []string{"API"}, "x.go"); err == nil || !strings.Contains(err.Error(), "explicit name") {
		t.Fatalf("type of an import whose name is unknown: err = %v", err)
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
			_, err := Generate(dir, []string{"API"}, "x.go")
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("err = %v, want one mentioning %q", err, tc.want)
			}
		})
	}
	dir := writePkg(t, "package api\n\ntype NotIface struct{}\n")
	for _, name := range []string{"NotIface", "Missing"} {
		if _, err := Generate(dir, []string{name}, "x.go"); err == nil {
			t.Errorf("%s: no error", name)
		}
	}
	if _, err := Generate(t.TempDir(), []string{"X"}, "x.go"); err == nil {
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
