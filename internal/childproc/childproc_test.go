package childproc_test

import (
	"bufio"
	"errors"
	"fmt"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/shmex/shmex/internal/childproc"
)

func TestMain(m *testing.M) {
	childproc.Main(m, map[string]childproc.Role{
		"echo": echoChild,
		"long": longChild,
	})
}

// echoChild reports its arguments, then echoes each line of its standard
// input until "exit <status>".
func echoChild(args []string) int {
	fmt.Println("args", strings.Join(args, "|"))
	sc := bufio.NewScanner(os.Stdin)
	for sc.Scan() {
		var status int
		if _, err := fmt.Sscanf(sc.Text(), "exit %d", &status); err == nil {
			return status
		}
		fmt.Println("echo", sc.Text())
	}
	return 0
}

// longChild writes a line longer than Child reads, then more output than a
// pipe holds, and exits.
func longChild([]string) int {
	w := bufio.NewWriter(os.Stdout)
	w.WriteString(strings.Repeat("x", 2<<20) + "\n")
	for range 1000 {
		w.WriteString(strings.Repeat("y", 200) + "\n")
	}
	w.Flush()
	return 0
}

func TestEcho(t *testing.T) {
	c := childproc.Start(t, "echo", "a b", "", "c")
	if l, err := c.Line(30 * time.Second); err != nil || l != "args a b||c" {
		t.Fatalf("first line %q, %v", l, err)
	}
	if err := c.Send("hello"); err != nil {
		t.Fatal(err)
	}
	if l, err := c.Line(30 * time.Second); err != nil || l != "echo hello" {
		t.Fatalf("echo %q, %v", l, err)
	}
	if err := c.Send("exit 3"); err != nil {
		t.Fatal(err)
	}
	if l, err := c.Line(30 * time.Second); !errors.Is(err, childproc.ErrNoLine) {
		t.Fatalf("after exit: %q, %v", l, err)
	}
	var ee interface{ ExitCode() int }
	if err := c.Wait(30 * time.Second); !errors.As(err, &ee) || ee.ExitCode() != 3 {
		t.Fatalf("Wait: %v, want exit status 3", err)
	}
}

func TestKill(t *testing.T) {
	c := childproc.Start(t, "echo")
	if _, err := c.Line(30 * time.Second); err != nil {
		t.Fatal(err)
	}
	c.Kill()
	select {
	case <-c.Done():
	default:
		t.Fatal("Done not closed after Kill")
	}
	if _, err := c.Line(time.Second); !errors.Is(err, childproc.ErrNoLine) {
		t.Fatalf("Line after Kill: %v", err)
	}
}

// TestLongLine: a line too long to read ends Line with a clear error, and
// the child, which goes on writing, is not left blocked on a full pipe.
func TestLongLine(t *testing.T) {
	c := childproc.Start(t, "long")
	if l, err := c.Line(30 * time.Second); !errors.Is(err, childproc.ErrNoLine) || !strings.Contains(err.Error(), "too long") {
		t.Fatalf("Line = %.20q, %v; want ErrNoLine for a line too long", l, err)
	}
	if err := c.Wait(30 * time.Second); err != nil {
		t.Fatalf("Wait: %v (the child must not block writing)", err)
	}
}
