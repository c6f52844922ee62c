//go:build linux || darwin

package plant

import "golang.org/x/sys/unix"

// mknodNull makes a character device node at path with the numbers of
// Linux's null device (the tests that plant one run on Linux).
func mknodNull(path string) error {
	return unix.Mknod(path, unix.S_IFCHR|0o600, int(unix.Mkdev(1, 3)))
}
