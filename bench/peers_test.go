//go:build linux

package bench

import (
	"bufio"
	"context"
	"errors"
	"os"
	"os/exec"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/shmex/shmex/internal/testenv"
)

// needIceoryx skips the test when the iceoryx rows cannot run here, with
// the reason, and fails it under CI=true, where .ci/run installs iceoryx.
func needIceoryx(t *testing.T) {
	t.Helper()
	if reason := IceoryxSkip(); reason != "" {
		testenv.Missing(t, "iceoryx (iceoryx, libiceoryx-binding-c-dev)", reason)
	}
}

// TestIceoryxRows runs the iceoryx peer at smoke-test sizes: four measured
// rows, RouDi stopped and its segments and socket gone afterwards.
func TestIceoryxRows(t *testing.T) {
	needIceoryx(t)
	env := testEnv(t)
	rows, err := runIceoryx(context.Background(), env)
	if err != nil {
		t.Fatal(err)
	}
	if len(rows) != len(iceoryxRows) {
		t.Fatalf("%d rows: %+v", len(rows), rows)
	}
	for i, r := range rows {
		if r.Skipped || r.Error != "" || r.Value <= 0 || r.Hist == nil || r.Hist.Count == 0 ||
			r.Metric != iceoryxRows[i].metric || r.CompareTo != iceoryxRows[i].vs {
			t.Errorf("row %+v", r)
		}
	}
	for _, p := range []string{"/dev/shm/iceoryx_mgmt", "/tmp/roudi"} {
		if _, err := os.Stat(p); err == nil {
			// Another run's RouDi may hold them now; ours is gone if the
			// lock is free.
			if f, err := lockFile(context.Background(), rouDiLockPath, 0); err == nil {
				f.Close()
				t.Errorf("%s left behind with no RouDi running", p)
			}
		}
	}
}

// TestIceoryxSkips checks the reasons the iceoryx rows give when a piece is
// missing: no iox-roudi on PATH, and a RouDi that this run did not start.
func TestIceoryxSkips(t *testing.T) {
	needIceoryx(t)
	t.Run("no iox-roudi", func(t *testing.T) {
		t.Setenv("PATH", t.TempDir())
		if reason := IceoryxSkip(); !strings.Contains(reason, "iox-roudi not found") {
			t.Errorf("reason %q", reason)
		}
		rows, err := runIceoryx(context.Background(), testEnv(t))
		if err != nil || len(rows) != len(iceoryxRows) {
			t.Fatalf("rows %+v, %v", rows, err)
		}
		for _, r := range rows {
			if !r.Skipped || !strings.Contains(r.Note, "apt-get install iceoryx") {
				t.Errorf("row %+v", r)
			}
		}
	})
	t.Run("foreign RouDi", func(t *testing.T) {
		// Hold the lock as a run would, start a RouDi of our own as the
		// "foreign" one, and ask for another.
		lock, err := lockFile(context.Background(), rouDiLockPath, 2*time.Minute)
		if err != nil {
			t.Fatal(err)
		}
		defer lock.Close()
		path, _ := exec.LookPath("iox-roudi")
		cmd := exec.Command(path, "-l", "info")
		out, _ := cmd.StdoutPipe()
		cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		defer func() {
			cmd.Process.Signal(syscall.SIGTERM)
			done := make(chan error, 1)
			go func() { done <- cmd.Wait() }()
			select {
			case <-done:
			case <-time.After(10 * time.Second):
				cmd.Process.Kill()
				<-done
			}
		}()
		ready := make(chan struct{})
		go func() {
			sc := bufio.NewScanner(out)
			for sc.Scan() {
				if strings.Contains(sc.Text(), "RouDi is ready for clients") {
					close(ready)
					break
				}
			}
			for sc.Scan() {
			}
		}()
		select {
		case <-ready:
		case <-time.After(20 * time.Second):
			t.Fatal("the foreign RouDi did not start")
		}
		dup, err := os.Open(rouDiLockPath) // startRouDiLocked closes what it is given
		if err != nil {
			t.Fatal(err)
		}
		r, err := startRouDiLocked(context.Background(), testEnv(t), dup)
		if err == nil {
			r.Close()
		}
		if !errors.Is(err, errForeignRouDi) {
			t.Fatalf("second RouDi: %v, want errForeignRouDi", err)
		}
	})
}
