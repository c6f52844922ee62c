package shm_test

import (
	"errors"
	"os"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/shmex/shmex/internal/childproc"
	"github.com/shmex/shmex/internal/plant"
	"github.com/shmex/shmex/shm"
)

// TestLives: Lives lists the lock files of a directory with the pids
// written in them and whether their processes live; a planted FIFO among
// them is reported by name, without blocking, and the others still listed.
func TestLives(t *testing.T) {
	dir := testDir(t)
	me, err := shm.HoldLife(dir)
	if err != nil {
		t.Fatal(err)
	}
	defer me.Close()
	kid := childproc.Start(t, "holder", dir)
	l, err := kid.Line(30 * time.Second)
	if err != nil {
		t.Fatal(err)
	}
	kidID, err := strconv.ParseUint(l, 10, 64)
	if err != nil {
		t.Fatalf("child said %q", l)
	}
	kidPID := kid.Cmd.Process.Pid
	kid.Kill()
	planted := shm.LifePath(dir, 0xfeed)
	plant.Plant(t, planted, plant.FIFO)
	if err := os.WriteFile(shm.LifePath(dir, 0xbad)+"x", nil, 0o600); err != nil { // not a lock file name
		t.Fatal(err)
	}

	var lives []shm.LifeInfo
	err = plant.Within(t, "Lives", func() (err error) { lives, err = shm.Lives(dir); return err })
	if !errors.Is(err, shm.ErrNotRegular) || !strings.Contains(err.Error(), planted) {
		t.Errorf("Lives with a FIFO among the lock files: %v, want ErrNotRegular naming %s", err, planted)
	}
	want := map[uint64]shm.LifeInfo{
		me.ID(): {ID: me.ID(), Path: me.Path(), PID: os.Getpid(), Alive: true},
		kidID:   {ID: kidID, Path: shm.LifePath(dir, kidID), PID: kidPID, Alive: false},
	}
	if len(lives) != len(want) {
		t.Fatalf("Lives: %+v, want %+v", lives, want)
	}
	for _, li := range lives {
		if li != want[li.ID] {
			t.Errorf("Lives: %+v, want %+v", li, want[li.ID])
		}
	}
	if _, err := shm.ReadLife(dir + "/registry"); !errors.Is(err, shm.ErrBadName) {
		t.Errorf("ReadLife of a file that is not a lock file: %v", err)
	}
}
