package shm

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"

	"golang.org/x/sys/unix"
)

// Temporary files. A segment or a lock file is made under a temporary name
// (TempPrefix) and renamed into place once whole. Its creator holds an
// exclusive flock on it from the moment it exists under that name until
// after the rename, so that another process can tell a temporary file
// whose creator died (the kernel dropped the lock) from one still being
// made, at once and without a grace period: RemoveAbandonedTemp. (The lock
// is dropped explicitly after publishing: a mapping of the file holds its
// open file description, and so the lock, after the descriptor closes.)
//
// The creator opens the file, then locks it: a collector that opens and
// locks it in between takes it for abandoned and removes it. The creator
// cannot be fooled by that race: its lock fails while the collector holds
// one, and once the collector has let go the file has no link left. In
// either case it starts again under another name.

// unlock drops the creator's lock on f (createTemp). Closing f is not
// enough while a mapping of it lives: the lock belongs to the open file
// description, which the mapping holds too.
func unlock(f *os.File) { unix.Flock(int(f.Fd()), unix.LOCK_UN) }

// createTemp creates a new temporary file in dir, named after stem, and
// returns it locked (see above) with its path.
func createTemp(dir, stem string) (*os.File, string, error) {
	for attempt := 0; attempt < 16; attempt++ {
		tmp := filepath.Join(dir, TempPrefix+stem+"-"+randomHex(8))
		f, st, err := openFile(tmp, os.O_RDWR|os.O_CREATE|os.O_EXCL, 0o600)
		if errors.Is(err, ErrExist) {
			continue
		}
		if err != nil {
			return nil, "", err
		}
		if err := unix.Flock(int(f.Fd()), unix.LOCK_EX|unix.LOCK_NB); err != nil {
			f.Close()
			if errors.Is(err, unix.EWOULDBLOCK) {
				continue // a collector holds it: it will remove it
			}
			os.Remove(tmp)
			return nil, "", fmt.Errorf("shm: lock %s: %w", tmp, err)
		}
		if err := unix.Fstat(int(f.Fd()), st); err != nil || st.Nlink == 0 {
			f.Close() // a collector removed it before we locked it
			if err != nil {
				return nil, "", fmt.Errorf("shm: stat %s: %w", tmp, err)
			}
			continue
		}
		return f, tmp, nil
	}
	return nil, "", fmt.Errorf("shm: could not create a temporary file in %s", dir)
}

// RemoveAbandonedTemp removes the temporary file at path (a directory entry
// for which IsTemp holds) if its creator is gone: no process holds its
// lock. It reports whether it removed it. A file still being made, or one
// published meanwhile under its final name, is left alone (false, nil).
func RemoveAbandonedTemp(path string) (bool, error) {
	f, st, err := openFile(path, os.O_RDONLY, 0)
	if errors.Is(err, ErrNotExist) {
		return false, nil // published or removed meanwhile
	}
	if err != nil {
		return false, err
	}
	defer f.Close()
	if err := unix.Flock(int(f.Fd()), unix.LOCK_EX|unix.LOCK_NB); err != nil {
		if errors.Is(err, unix.EWOULDBLOCK) {
			return false, nil // its creator is at work
		}
		return false, fmt.Errorf("shm: lock %s: %w", path, err)
	}
	// Under the lock, nobody else makes or publishes this file. Remove it
	// only if path still names the file locked: a creator may have renamed
	// it into place (and let go of it) between our open and our lock.
	var now unix.Stat_t
	if err := unix.Lstat(path, &now); err != nil || now.Ino != st.Ino || now.Dev != st.Dev {
		return false, nil
	}
	if err := os.Remove(path); err != nil && !errors.Is(err, os.ErrNotExist) {
		return false, fmt.Errorf("shm: remove %s: %w", path, err)
	}
	return true, nil
}
