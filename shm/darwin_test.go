package shm_test

import (
	"bytes"
	"context"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/shmex/shmex/internal/testenv"
	"github.com/shmex/shmex/shm"
)

// TestDarwinVet: code that uses only the in-process exchange and the agent
// layer builds on macOS (issue 17); the shared-memory parts say at run
// time that they are Linux-only. It runs `GOOS=darwin GOARCH=arm64 go vet
// ./...` over the module: the files for darwin are the ones that differ
// from Linux; those for amd64 (the assembly of shm and ring) are vetted by
// the ordinary go vet on linux/amd64.
func TestDarwinVet(t *testing.T) {
	if testing.Short() {
		t.Skip("vets the whole module for another system: minutes with a cold build cache")
	}
	gobin := testenv.LookPath(t, "go")
	ctx, cancel := context.WithTimeout(context.Background(), 15*time.Minute)
	defer cancel()
	mod, err := exec.CommandContext(ctx, gobin, "env", "GOMOD").Output()
	if err != nil {
		t.Fatalf("go env GOMOD: %v", err)
	}
	root := filepath.Dir(strings.TrimSpace(string(mod)))
	for _, arch := range []string{"arm64"} {
		t.Run(arch, func(t *testing.T) {
			cmd := exec.CommandContext(ctx, gobin, "vet", "./...")
			cmd.Dir = root
			cmd.Env = append(os.Environ(), "GOOS=darwin", "GOARCH="+arch, "CGO_ENABLED=0")
			var out bytes.Buffer
			cmd.Stdout, cmd.Stderr = &out, &out
			runErr := cmd.Run()
			for pkg, lines := range vetFailures(out.String()) {
				t.Errorf("GOOS=darwin GOARCH=%s go vet: %s:\n%s", arch, pkg, lines)
			}
			if runErr != nil {
				t.Errorf("GOOS=darwin GOARCH=%s go vet: %v\n%s", arch, runErr, out.String())
			}
		})
	}
}

// vetFailures splits the output of go vet into the packages it reports
// ("# pkg" or "# pkg [pkg.test]" headers; an external test package counts
// as its package) and their lines. Lines before any header go under "".
func vetFailures(out string) map[string]string {
	failed := map[string]string{}
	pkg := ""
	for _, l := range strings.Split(out, "\n") {
		if strings.TrimSpace(l) == "" {
			continue
		}
		if rest, ok := strings.CutPrefix(l, "# "); ok {
			f := strings.Fields(rest)
			if len(f) > 0 && !strings.HasPrefix(f[0], "[") {
				pkg = strings.TrimSuffix(f[0], "_test")
				continue
			}
			if len(f) > 0 { // "# [pkg_test]": the test variant of the package above
				continue
			}
		}
		failed[pkg] += l + "\n"
	}
	return failed
}

// TestSupported: the primitives work on Linux; elsewhere they say they do
// not, with an error that errors.Is matches with errors.ErrUnsupported.
func TestSupported(t *testing.T) {
	if !errors.Is(shm.ErrUnsupported, errors.ErrUnsupported) {
		t.Fatalf("ErrUnsupported %v does not match errors.ErrUnsupported", shm.ErrUnsupported)
	}
	err := shm.Supported()
	if runtime.GOOS == "linux" && err != nil {
		t.Fatalf("Supported on Linux: %v", err)
	}
	if runtime.GOOS != "linux" {
		if !errors.Is(err, shm.ErrUnsupported) {
			t.Fatalf("Supported on %s: %v", runtime.GOOS, err)
		}
		if err := shm.EnsureDir(filepath.Join(t.TempDir(), "r", "x")); !errors.Is(err, errors.ErrUnsupported) {
			t.Fatalf("EnsureDir on %s: %v", runtime.GOOS, err)
		}
	}
}
