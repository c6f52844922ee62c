package fuzzlong

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"go/ast"
	"go/parser"
	"go/token"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"
)

// target is one fuzz target: its package's directory and import path, and
// its name.
type target struct {
	dir, pkg, name string
}

func (t target) String() string { return t.pkg + "." + t.name }

// moduleRoot returns the directory of the module's go.mod and the module
// path it declares.
func moduleRoot(t *testing.T) (string, string) {
	t.Helper()
	dir, err := filepath.Abs(".")
	if err != nil {
		t.Fatal(err)
	}
	for {
		b, err := os.ReadFile(filepath.Join(dir, "go.mod"))
		if err == nil {
			for line := range strings.Lines(string(b)) {
				if f := strings.Fields(line); len(f) == 2 && f[0] == "module" {
					return dir, f[1]
				}
			}
			t.Fatalf("%s/go.mod declares no module", dir)
		}
		up := filepath.Dir(dir)
		if up == dir {
			t.Fatal("no go.mod above the test's directory")
		}
		dir = up
	}
}

// targets finds the fuzz targets of the module: the functions FuzzXxx with
// one *testing.F parameter in its _test.go files, outside testdata, hidden
// directories and nested modules.
func targets(t *testing.T) (string, []target) {
	t.Helper()
	root, mod := moduleRoot(t)
	var out []target
	fset := token.NewFileSet()
	err := filepath.WalkDir(root, func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if d.IsDir() {
			name := d.Name()
			if path != root && (name == "testdata" || name == "vendor" || strings.HasPrefix(name, ".") || strings.HasPrefix(name, "_")) {
				return filepath.SkipDir
			}
			if _, err := os.Stat(filepath.Join(path, "go.mod")); err == nil && path != root {
				return filepath.SkipDir
			}
			return nil
		}
		if !strings.HasSuffix(path, "_test.go") {
			return nil
		}
		f, err := parser.ParseFile(fset, path, nil, parser.SkipObjectResolution)
		if err != nil {
			return err
		}
		rel, err := filepath.Rel(root, filepath.Dir(path))
		if err != nil {
			return err
		}
		pkg := mod
		if rel != "." {
			pkg += "/" + filepath.ToSlash(rel)
		}
		for _, decl := range f.Decls {
			fn, ok := decl.(*ast.FuncDecl)
			if !ok || fn.Recv != nil || !isFuzzName(fn.Name.Name) || len(fn.Type.Params.List) != 1 {
				continue
			}
			star, ok := fn.Type.Params.List[0].Type.(*ast.StarExpr)
			if sel, ok2 := star.X.(*ast.SelectorExpr); !ok || !ok2 || sel.Sel.Name != "F" {
				continue
			}
			out = append(out, target{dir: filepath.Dir(path), pkg: pkg, name: fn.Name.Name})
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	slices.SortFunc(out, func(a, b target) int { return strings.Compare(a.String(), b.String()) })
	return root, out
}

// isFuzzName reports whether name is a fuzz target's: Fuzz, then nothing
// or a character that is not a lower-case letter (as go test says).
func isFuzzName(name string) bool {
	rest, ok := strings.CutPrefix(name, "Fuzz")
	return ok && (rest == "" || !('a' <= rest[0] && rest[0] <= 'z'))
}

// TestEveryTargetHasCorpus: every fuzz target has a committed corpus
// (testdata/fuzz/NAME beside it, at least one file), so that the normal
// suite replays inputs found by fuzzing, not only the seeds in code.
func TestEveryTargetHasCorpus(t *testing.T) {
	_, ts := targets(t)
	if len(ts) < 20 {
		t.Fatalf("found %d fuzz targets: the search is broken", len(ts))
	}
	for _, tg := range ts {
		es, err := os.ReadDir(filepath.Join(tg.dir, "testdata", "fuzz", tg.name))
		if err != nil || len(es) == 0 {
			t.Errorf("%v has no committed corpus (testdata/fuzz/%s): run the long mode with SHMEX_FUZZSAVE=N (docs/fuzzing.md)", tg, tg.name)
		}
	}
}

// env returns the environment variable name, or def when it is unset.
func env(name, def string) string {
	if v := os.Getenv(name); v != "" {
		return v
	}
	return def
}

// execsRE finds the last progress line of a fuzzing run.
var execsRE = regexp.MustCompile(`elapsed: (\S+), execs: (\d+)`)

// TestFuzzLong (SHMEX_LONG=1) runs every fuzz target of the module, one at
// a time, for SHMEX_FUZZTIME (default 60s) each with a minimize time of
// SHMEX_FUZZMINIMIZE (default 5s), so that shrinking a crasher does not eat
// the budget; SHMEX_FUZZ (a regexp on pkg.Name) picks some;
// SHMEX_FUZZPARALLEL sets the workers (go test's -parallel; default, all
// CPUs). A target that fails is reported with the end of its output (the
// crasher is in its testdata/fuzz directory, written by go test) and the
// others still run. SHMEX_FUZZSAVE=N copies up to N of the newest inputs
// each run added to the fuzz cache into the target's testdata/fuzz (the
// committed corpus). Run it with -timeout 0:
//
//	SHMEX_LONG=1 go test -timeout 0 -v -run TestFuzzLong ./internal/fuzzlong
func TestFuzzLong(t *testing.T) {
	if os.Getenv("SHMEX_LONG") != "1" {
		t.Skip("the long mode: SHMEX_LONG=1 (docs/fuzzing.md)")
	}
	root, ts := targets(t)
	if re := os.Getenv("SHMEX_FUZZ"); re != "" {
		pick := regexp.MustCompile(re)
		ts = slices.DeleteFunc(ts, func(tg target) bool { return !pick.MatchString(tg.String()) })
	}
	fuzztime, err := time.ParseDuration(env("SHMEX_FUZZTIME", "60s"))
	if err != nil {
		t.Fatalf("SHMEX_FUZZTIME: %v", err)
	}
	minimize := env("SHMEX_FUZZMINIMIZE", "5s")
	save, _ := strconv.Atoi(os.Getenv("SHMEX_FUZZSAVE"))
	if dl, ok := t.Deadline(); ok {
		if need := time.Duration(len(ts)) * (fuzztime + time.Minute); time.Until(dl) < need {
			t.Fatalf("%d targets of %v need about %v; the test's deadline is in %v: run with -timeout 0",
				len(ts), fuzztime, need, time.Until(dl).Round(time.Second))
		}
	}
	gocache, err := exec.Command("go", "env", "GOCACHE").Output()
	if err != nil {
		t.Fatalf("go env GOCACHE: %v", err)
	}
	cacheRoot := filepath.Join(strings.TrimSpace(string(gocache)), "fuzz")
	environ := slices.DeleteFunc(os.Environ(), func(kv string) bool { return strings.HasPrefix(kv, "SHMEX_LONG=") })
	t.Logf("%d targets, %v each, minimize %s", len(ts), fuzztime, minimize)
	for _, tg := range ts {
		cache := filepath.Join(cacheRoot, tg.pkg, tg.name)
		before := cacheFiles(cache)
		corpus := filepath.Join(tg.dir, "testdata", "fuzz", tg.name)
		committed := cacheFiles(corpus)
		args := []string{"test", "-run", "^$", "-fuzz", "^" + tg.name + "$",
			"-fuzztime", fuzztime.String(), "-fuzzminimizetime", minimize}
		if p := os.Getenv("SHMEX_FUZZPARALLEL"); p != "" {
			args = append(args, "-parallel", p)
		}
		// A bound for a wedged run: the budget, the minimization, and
		// the build and baseline on a loaded machine.
		ctx, cancel := context.WithTimeout(t.Context(), 2*fuzztime+10*time.Minute)
		cmd := exec.CommandContext(ctx, "go", append(args, "./"+mustRel(t, root, tg.dir))...)
		cmd.Dir = root
		cmd.Env = environ
		start := time.Now()
		out, err := cmd.CombinedOutput()
		cancel()
		last := "no progress line"
		if m := execsRE.FindAllSubmatch(out, -1); len(m) > 0 {
			last = fmt.Sprintf("%s execs in %s", m[len(m)-1][2], m[len(m)-1][1])
		}
		if err != nil && deadlineFlake(out, len(newFiles(cacheFiles(corpus), committed))) {
			// Go's fuzzing coordinator can report the end of -fuzztime
			// as a failure (go.dev/issue/75804, fixed in Go 1.27): no
			// input failed, and none was written.
			t.Logf("%v: ok, %s; go test said %q at the end of the fuzzing time and wrote no failing input (go.dev/issue/75804)", tg, last, "context deadline exceeded")
			err = nil
		}
		if err != nil {
			t.Errorf("%v: %v after %v (%s):\n%s", tg, err, time.Since(start).Round(time.Second), last, tail(out, 40))
			continue
		}
		added := newFiles(cacheFiles(cache), before)
		t.Logf("%v: ok, %s, %d new inputs in the cache", tg, last, len(added))
		if save > 0 && len(added) > 0 {
			n, err := saveCorpus(added, filepath.Join(tg.dir, "testdata", "fuzz", tg.name), save)
			if err != nil {
				t.Errorf("%v: saving its corpus: %v", tg, err)
			}
			t.Logf("%v: %d inputs saved to testdata/fuzz/%s", tg, n, tg.name)
		}
	}
}

// deadlineFlake reports whether a failed fuzzing run's output out is Go's
// coordinator reporting the end of -fuzztime as a failure
// (go.dev/issue/75804): its only failure is "context deadline exceeded",
// and no failing input was written (written counts the new files of the
// target's testdata/fuzz directory).
func deadlineFlake(out []byte, written int) bool {
	return written == 0 && bytes.Contains(out, []byte("\n    context deadline exceeded\n")) &&
		!bytes.Contains(out, []byte("Failing input written")) && !bytes.Contains(out, []byte("panic:"))
}

func mustRel(t *testing.T, root, dir string) string {
	t.Helper()
	rel, err := filepath.Rel(root, dir)
	if err != nil {
		t.Fatal(err)
	}
	return filepath.ToSlash(rel)
}

// cacheFiles returns the files of a fuzz cache directory with their
// modification times.
func cacheFiles(dir string) map[string]time.Time {
	out := map[string]time.Time{}
	es, _ := os.ReadDir(dir)
	for _, e := range es {
		if info, err := e.Info(); err == nil && info.Mode().IsRegular() {
			out[filepath.Join(dir, e.Name())] = info.ModTime()
		}
	}
	return out
}

// newFiles returns the files of now that before did not have, newest
// first.
func newFiles(now, before map[string]time.Time) []string {
	var out []string
	for p := range now {
		if _, ok := before[p]; !ok {
			out = append(out, p)
		}
	}
	slices.SortFunc(out, func(a, b string) int { return now[b].Compare(now[a]) })
	return out
}

// saveCorpus copies up to n of files (at most 64 KiB each) into dir,
// under their own names (go test's content hashes), and returns how many
// it copied.
func saveCorpus(files []string, dir string, n int) (int, error) {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return 0, err
	}
	saved := 0
	for _, p := range files {
		if saved == n {
			break
		}
		b, err := os.ReadFile(p)
		if err != nil {
			return saved, err
		}
		if len(b) > 64<<10 || !bytes.HasPrefix(b, []byte("go test fuzz v1\n")) {
			continue
		}
		dst := filepath.Join(dir, filepath.Base(p))
		if _, err := os.Stat(dst); err == nil {
			continue
		}
		if err := os.WriteFile(dst, b, 0o644); err != nil {
			return saved, err
		}
		saved++
	}
	return saved, nil
}

// tail returns the last n lines of out.
func tail(out []byte, n int) string {
	var lines []string
	sc := bufio.NewScanner(bytes.NewReader(out))
	sc.Buffer(nil, 1<<20)
	for sc.Scan() {
		lines = append(lines, sc.Text())
	}
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}

// TestDeadlineFlake: the end of -fuzztime reported as a failure by Go's
// coordinator is told apart from a failing input and from a panic.
func TestDeadlineFlake(t *testing.T) {
	flake := "fuzz: elapsed: 1m0s, execs: 438513 (0/sec), new interesting: 8 (total: 116)\n--- FAIL: FuzzDecodeMessage (60.09s)\n    context deadline exceeded\nFAIL\nexit status 1\n"
	crash := "--- FAIL: FuzzX (1.00s)\n    fuzzing process hung or terminated unexpectedly: exit status 2\n    Failing input written to testdata/fuzz/FuzzX/1fb128f823126b4b\n"
	for _, tc := range []struct {
		out     string
		written int
		want    bool
	}{
		{flake, 0, true},
		{flake, 1, false},
		{crash, 0, false},
		{flake + "panic: boom\n", 0, false},
	} {
		if got := deadlineFlake([]byte(tc.out), tc.written); got != tc.want {
			t.Errorf("deadlineFlake(%q, %d) = %v, want %v", tc.out, tc.written, got, tc.want)
		}
	}
}
