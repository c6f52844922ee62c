package capitest

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"strings"
	"sync"
	"time"
)

// Tool returns the path of a program on PATH, or an error that says which
// Debian package provides it.
func Tool(name, pkg string) (string, error) {
	p, err := exec.LookPath(name)
	if err != nil {
		return "", fmt.Errorf("%s is not on PATH (apt-get install %s)", name, pkg)
	}
	return p, nil
}

// Python is an interpreter that has the modules the bindings need.
type Python struct {
	// Path of the interpreter.
	Path string
	// Version is its sys.version, first line.
	Version string
	// NumPy tells whether numpy imports.
	NumPy bool
	// Pytest tells whether pytest imports.
	Pytest bool
}

// EnvPython names an interpreter to use instead of the candidates below.
const EnvPython = "SHMEX_PYTHON"

// pythonCandidates are tried in order: Debian's interpreter first, because
// the python3 on PATH may be another one (pyenv, a virtual environment)
// without Debian's python3-msgpack.
var pythonCandidates = []string{"/usr/bin/python3", "python3", "python"}

var (
	pyOnce sync.Once
	py     *Python
	pyErr  error
)

// FindPython returns the first interpreter (SHMEX_PYTHON, /usr/bin/python3,
// python3, python) that imports msgpack, or an error that says what each
// candidate lacked.
func FindPython() (*Python, error) {
	pyOnce.Do(func() { py, pyErr = findPython() })
	return py, pyErr
}

func findPython() (*Python, error) {
	cands := pythonCandidates
	if p := os.Getenv(EnvPython); p != "" {
		cands = []string{p}
	}
	var why []string
	for _, c := range cands {
		path, err := exec.LookPath(c)
		if err != nil {
			why = append(why, c+": not found")
			continue
		}
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		var out, stderr bytes.Buffer
		cmd := exec.CommandContext(ctx, path, "-c", `
import sys
import msgpack
def has(m):
    try:
        __import__(m)
        return "1"
    except Exception:
        return "0"
print(has("numpy"), has("pytest"), sys.version.splitlines()[0])
`)
		cmd.Stdout, cmd.Stderr = &out, &stderr
		err = cmd.Run()
		cancel()
		if err != nil {
			why = append(why, fmt.Sprintf("%s: %s", path, lastLine(stderr.String(), err)))
			continue
		}
		f := strings.SplitN(strings.TrimSpace(out.String()), " ", 3)
		if len(f) != 3 {
			why = append(why, fmt.Sprintf("%s: unexpected probe output %q", path, out.String()))
			continue
		}
		return &Python{Path: path, NumPy: f[0] == "1", Pytest: f[1] == "1", Version: f[2]}, nil
	}
	return nil, fmt.Errorf("no Python interpreter with msgpack (apt-get install python3 python3-msgpack python3-numpy python3-pytest): %s",
		strings.Join(why, "; "))
}

func lastLine(s string, err error) string {
	s = strings.TrimSpace(s)
	if i := strings.LastIndexByte(s, '\n'); i >= 0 {
		s = s[i+1:]
	}
	if s == "" {
		return err.Error()
	}
	return s
}

// errNoPytest says that the interpreter found lacks pytest.
var errNoPytest = errors.New("pytest is missing")

// FindPytest is FindPython for an interpreter that also has pytest and numpy.
func FindPytest() (*Python, error) {
	p, err := FindPython()
	if err != nil {
		return nil, err
	}
	if !p.Pytest {
		return nil, fmt.Errorf("%w from %s (apt-get install python3-pytest)", errNoPytest, p.Path)
	}
	return p, nil
}
