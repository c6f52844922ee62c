package shm

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"syscall"

	"golang.org/x/sys/unix"
)

// Directory layout. Everything shmex puts in shared memory lives in one
// directory per exchange:
//
//	<root>/                      DefaultRoot(): /dev/shm/shmex-<uid>, mode 0700
//	<root>/<exchange>/           ExchangeDir(root, name), mode 0700
//	<root>/<exchange>/registry   the registry segment
//	<root>/<exchange>/ring-<id>  one ring segment per mailbox
//	<root>/<exchange>/arena-<id> proxy-store arenas
//	<root>/<exchange>/live-<id>  liveness lock files, one per process
//	<root>/<exchange>/.tmp-*     segments being created (never opened)
//
// The SHMEX_ROOT environment variable overrides the root.

// RootEnv is the environment variable that overrides DefaultRoot.
const RootEnv = "SHMEX_ROOT"

// Name prefixes of the files in an exchange directory.
const (
	RegistryName = "registry"
	RingPrefix   = "ring-"
	ArenaPrefix  = "arena-"
	LivePrefix   = "live-"
	TempPrefix   = ".tmp-" // a segment being created; see IsTemp
	maxNameLen   = 200
)

// DefaultRoot returns the per-user root directory: $SHMEX_ROOT if set, else
// /dev/shm/shmex-<uid> when /dev/shm exists, else <tmp>/shmex-<uid>.
func DefaultRoot() string {
	if r := os.Getenv(RootEnv); r != "" {
		return r
	}
	base := "/dev/shm"
	if fi, err := os.Stat(base); err != nil || !fi.IsDir() {
		base = os.TempDir()
	}
	return filepath.Join(base, fmt.Sprintf("shmex-%d", os.Geteuid()))
}

// ValidName reports whether name may be used as an exchange or segment name:
// 1 to 200 bytes of letters, digits, '-', '_' and '.', not starting with '.'.
func ValidName(name string) error {
	if name == "" || len(name) > maxNameLen || name[0] == '.' {
		return fmt.Errorf("%w: %q", ErrBadName, name)
	}
	for i := 0; i < len(name); i++ {
		c := name[i]
		ok := c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' ||
			c == '-' || c == '_' || c == '.'
		if !ok {
			return fmt.Errorf("%w: %q", ErrBadName, name)
		}
	}
	return nil
}

// ExchangeDir returns the directory of the named exchange under root.
func ExchangeDir(root, name string) (string, error) {
	if err := ValidName(name); err != nil {
		return "", err
	}
	return filepath.Join(root, name), nil
}

// EnsureDir creates dir (and its parent, the root) with mode 0700 if needed
// and checks that both are real directories (not symlinks), owned by the
// effective user, and not accessible to group or others.
//
// On a system other than Linux it creates nothing and returns
// [ErrUnsupported]: the first call of an exchange that opens, it makes the
// exchange say that it is Linux-only before anything else happens.
func EnsureDir(dir string) error {
	if err := Supported(); err != nil {
		return err
	}
	parent := filepath.Dir(dir)
	if err := ensureOne(parent); err != nil {
		return err
	}
	return ensureOne(dir)
}

func ensureOne(dir string) error {
	err := os.Mkdir(dir, 0o700)
	if err != nil && !errors.Is(err, fs.ErrExist) {
		if errors.Is(err, fs.ErrNotExist) {
			// The root's own parent is missing: create the chain, then
			// check the leaf as usual.
			if err := os.MkdirAll(dir, 0o700); err != nil {
				return fmt.Errorf("shm: create directory: %w", err)
			}
		} else {
			return fmt.Errorf("shm: create directory: %w", err)
		}
	}
	return CheckDir(dir)
}

// CheckDir verifies that dir is a directory (not a symlink: [ErrNotRegular])
// owned by the effective user with no group or other permissions
// ([ErrNotOwner]).
func CheckDir(dir string) error {
	var st unix.Stat_t
	if err := unix.Lstat(dir, &st); err != nil {
		if errors.Is(err, syscall.ENOENT) {
			return fmt.Errorf("%w: directory %s", ErrNotExist, dir)
		}
		return fmt.Errorf("shm: stat %s: %w", dir, err)
	}
	if typ := uint32(st.Mode) & unix.S_IFMT; typ != unix.S_IFDIR {
		return notRegular(dir, true, typ)
	}
	if int(st.Uid) != os.Geteuid() {
		return fmt.Errorf("%w: %s belongs to uid %d", ErrNotOwner, dir, st.Uid)
	}
	if st.Mode&0o077 != 0 {
		return fmt.Errorf("%w: %s has mode %#o, want 0700", ErrNotOwner, dir, st.Mode&0o777)
	}
	return nil
}

// IsTemp reports whether a directory entry is a segment still being created.
func IsTemp(entry string) bool { return strings.HasPrefix(entry, TempPrefix) }
