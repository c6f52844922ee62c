package shm

import (
	"crypto/rand"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"fmt"
	"hash/crc32"
	"io/fs"
	"os"
	"path/filepath"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/edsrzf/mmap-go"
	"golang.org/x/sys/unix"
)

var castagnoli = crc32.MakeTable(crc32.Castagnoli)

// Info is the decoded, validated segment header.
type Info struct {
	Kind    Kind      // what the body holds
	Size    int64     // total size of the file, header included
	UID     uint32    // effective uid of the creating process
	PID     uint32    // pid of the creating process (informational only)
	Created time.Time // creation time
}

// Segment is a mapped shmex segment. Its methods are safe for concurrent use;
// the memory it maps is shared with other processes and is accessed through
// the structures built on it.
type Segment struct {
	path     string
	info     Info
	readOnly bool
	dev, ino uint64 // the file mapped (see SameFile)

	mu   sync.Mutex
	data mmap.MMap // nil once closed
}

// Option configures Open and Create.
type Option func(*options)

type options struct {
	readOnly bool
	populate bool
}

// ReadOnly maps the segment without write permission. Writes to its memory
// fault. Only Open accepts it.
func ReadOnly() Option { return func(o *options) { o.readOnly = true } }

// Populate makes the whole mapping ready when it is made, so that the
// first pass through the memory pays nothing per page: the page tables are
// filled in (MADV_POPULATE_WRITE, or _READ for a read-only mapping), and one
// byte of every page is read. On the virtual machines measured, the first
// access to each page of a new mapping costs about 5 µs even when its
// page-table entry exists (no fault is counted), so that a 64 KiB message
// written into a fresh mailbox took 30 times as long as the same message a
// lap later. It suits memory that will all be touched soon, such as a
// ring, and costs time in proportion to the size at mapping (on those
// machines, about 1.3 ms per MiB). Open and Create accept it. Best effort:
// on a kernel without the advice (before Linux 5.14) the reads map the
// pages.
func Populate() Option { return func(o *options) { o.populate = true } }

// Create makes a new segment of the given kind and total size (header
// included) at path, whose directory must exist (see EnsureDir). init, when
// not nil, fills the body before any other process can open the segment. The
// pages are reserved up front: a full file system is ErrNoSpace here, never a
// SIGBUS later. Create fails with ErrExist when path exists.
func Create(path string, kind Kind, size int64, init func(body []byte) error, opts ...Option) (*Segment, error) {
	if err := Supported(); err != nil {
		return nil, err
	}
	var o options
	for _, opt := range opts {
		opt(&o)
	}
	if size < HeaderSize || size > maxSegmentSize {
		return nil, fmt.Errorf("%w: %d bytes", ErrBadSize, size)
	}
	if int64(int(size)) != size {
		return nil, fmt.Errorf("%w: %d bytes does not fit this platform", ErrBadSize, size)
	}
	dir, base := filepath.Split(path)
	if err := ValidName(base); err != nil {
		return nil, err
	}
	if err := CheckDir(filepath.Clean(dir)); err != nil {
		return nil, err
	}
	f, tmp, err := createTemp(dir, base) // locked until published: see temp.go
	if err != nil {
		return nil, fmt.Errorf("shm: create %s: %w", path, err)
	}
	published := false
	var m mmap.MMap
	defer func() {
		if !published {
			if m != nil {
				m.Unmap()
			}
			os.Remove(tmp)
		}
		// Unlocked explicitly: the mapping keeps the open file description
		// (and so its flock) alive after the descriptor is closed, and
		// the registry is a segment whose writers flock it.
		unlock(f)
		f.Close()
	}()
	var st unix.Stat_t
	if err := unix.Fstat(int(f.Fd()), &st); err != nil {
		return nil, fmt.Errorf("shm: stat %s: %w", tmp, err)
	}
	if err := Reserve(f, size); err != nil {
		return nil, fmt.Errorf("shm: reserve %d bytes for %s: %w", size, path, err)
	}
	m, err = mmap.MapRegion(f, int(size), mmap.RDWR, 0, 0)
	if err != nil {
		return nil, fmt.Errorf("shm: map %s: %w", path, err)
	}
	if o.populate {
		populate(m, false)
	}
	info := Info{Kind: kind, Size: size, UID: uint32(os.Geteuid()), PID: uint32(os.Getpid()), Created: time.Now()}
	putHeader(m[:HeaderSize], info)
	if init != nil {
		if err := init(m[HeaderSize:]); err != nil {
			return nil, err
		}
	}
	if err := Publish(tmp, path); err != nil {
		return nil, err
	}
	published = true
	return &Segment{path: path, info: info, data: m, dev: uint64(st.Dev), ino: uint64(st.Ino)}, nil
}

// Reserve sizes the open file f to size bytes and allocates its pages
// (fallocate), so that touching a mapping of it cannot fault for want of
// space: a full file system is [ErrNoSpace] here instead of a SIGBUS later.
// On a file system (or a system) without fallocate it only sizes the file,
// and that guarantee is lost.
func Reserve(f *os.File, size int64) error {
	err := fallocate(f, size)
	switch {
	case err == nil:
		return nil
	case errors.Is(err, unix.ENOSPC):
		return ErrNoSpace
	case errors.Is(err, unix.EFBIG):
		return ErrBadSize
	case errors.Is(err, unix.EOPNOTSUPP), errors.Is(err, unix.ENOSYS):
		// A file system without fallocate: size the file; the
		// guarantee against SIGBUS is lost, not correctness otherwise.
		return f.Truncate(size)
	}
	return err
}

// Publish renames the file tmp to path, atomically, and fails with an
// error matching both [ErrExist] and [fs.ErrExist] rather than replace a
// file at path. It is how a file created under a temporary name (see
// [TempPrefix]) and filled appears under its final name, whole, to other
// processes.
func Publish(tmp, path string) error {
	err := renameNoReplace(tmp, path)
	if err == nil {
		return nil
	}
	if errors.Is(err, unix.EEXIST) {
		return fmt.Errorf("%w: %s (%w)", ErrExist, path, fs.ErrExist)
	}
	if errors.Is(err, unix.EINVAL) || errors.Is(err, unix.ENOSYS) {
		// No RENAME_NOREPLACE here: link is exclusive too.
		if err := os.Link(tmp, path); err != nil {
			if errors.Is(err, os.ErrExist) {
				return fmt.Errorf("%w: %s (%w)", ErrExist, path, fs.ErrExist)
			}
			return fmt.Errorf("shm: publish %s: %w", path, err)
		}
		os.Remove(tmp)
		return nil
	}
	return fmt.Errorf("shm: publish %s: %w", path, err)
}

// Open maps an existing segment after validating its header: it must be a
// regular file owned by the effective user with mode 0600 or stricter, start
// with the shmex magic, have this package's layout version, a good checksum,
// the wanted kind and the size it claims.
func Open(path string, kind Kind, opts ...Option) (*Segment, error) {
	if err := Supported(); err != nil {
		return nil, err
	}
	var o options
	for _, opt := range opts {
		opt(&o)
	}
	flag := os.O_RDWR
	prot := mmap.RDWR
	if o.readOnly {
		flag, prot = os.O_RDONLY, mmap.RDONLY
	}
	f, st, err := openFile(path, flag, 0)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	if int(st.Uid) != os.Geteuid() || st.Mode&0o077 != 0 {
		return nil, fmt.Errorf("%w: %s (uid %d, mode %#o)", ErrNotOwner, path, st.Uid, st.Mode&0o777)
	}
	var hdr [HeaderSize]byte
	if st.Size < HeaderSize {
		return nil, fmt.Errorf("%w: %s has %d bytes", ErrTruncated, path, st.Size)
	}
	if _, err := f.ReadAt(hdr[:], 0); err != nil {
		return nil, fmt.Errorf("shm: read header of %s: %w", path, err)
	}
	info, err := ParseHeader(hdr[:])
	if err != nil {
		return nil, fmt.Errorf("%w (%s)", err, path)
	}
	if info.Kind != kind {
		return nil, fmt.Errorf("%w: %s is a %v segment, want %v", ErrWrongKind, path, info.Kind, kind)
	}
	if info.UID != uint32(os.Geteuid()) {
		return nil, fmt.Errorf("%w: %s was created by uid %d", ErrNotOwner, path, info.UID)
	}
	if st.Size < info.Size {
		return nil, fmt.Errorf("%w: %s has %d bytes, header says %d", ErrTruncated, path, st.Size, info.Size)
	}
	if st.Size != info.Size {
		return nil, fmt.Errorf("%w: %s has %d bytes, header says %d", ErrBadSize, path, st.Size, info.Size)
	}
	m, err := mmap.MapRegion(f, int(info.Size), prot, 0, 0)
	if err != nil {
		return nil, fmt.Errorf("shm: map %s: %w", path, err)
	}
	if o.populate {
		populate(m, o.readOnly)
	}
	return &Segment{path: path, info: info, readOnly: o.readOnly, data: m, dev: uint64(st.Dev), ino: uint64(st.Ino)}, nil
}

// populate makes every page of m ready now (see Populate). The pages are
// reserved (fallocate) and the mapping is the file's size, so touching them
// cannot fault beyond the minor fault taken here.
func populate(m []byte, readOnly bool) {
	AdvisePopulate(m, readOnly) // best effort: the reads below map the pages too
	var sink byte
	for i := 0; i < len(m); i += pageSize {
		sink |= m[i]
	}
	populateSink.Store(uint32(sink))
}

var (
	pageSize     = os.Getpagesize()
	populateSink atomic.Uint32 // keeps populate's loads
)

// ParseHeader validates a segment header held in b and decodes it. It checks,
// in this order, length, magic, version, checksum and the size field.
func ParseHeader(b []byte) (Info, error) {
	if len(b) < HeaderSize {
		return Info{}, ErrTruncated
	}
	if [8]byte(b[offMagic:offMagic+8]) != magic {
		return Info{}, ErrBadMagic
	}
	le := binary.LittleEndian
	if v := le.Uint32(b[offVersion:]); v != LayoutVersion {
		return Info{}, fmt.Errorf("%w: version %d, want %d", ErrVersion, v, LayoutVersion)
	}
	if got, want := le.Uint32(b[offChecksum:]), crc32.Checksum(b[:checksummed], castagnoli); got != want {
		return Info{}, ErrChecksum
	}
	info := Info{
		Kind:    Kind(le.Uint32(b[offKind:])),
		Size:    int64(le.Uint64(b[offSize:])),
		UID:     le.Uint32(b[offUID:]),
		PID:     le.Uint32(b[offPID:]),
		Created: time.Unix(0, int64(le.Uint64(b[offCreated:]))),
	}
	if info.Size < HeaderSize || info.Size > maxSegmentSize {
		return Info{}, fmt.Errorf("%w: header size %d", ErrBadSize, info.Size)
	}
	return info, nil
}

// putHeader encodes info into b, checksum included.
func putHeader(b []byte, info Info) {
	clear(b[:HeaderSize])
	le := binary.LittleEndian
	copy(b[offMagic:], magic[:])
	le.PutUint32(b[offVersion:], LayoutVersion)
	le.PutUint32(b[offKind:], uint32(info.Kind))
	le.PutUint64(b[offSize:], uint64(info.Size))
	le.PutUint32(b[offUID:], info.UID)
	le.PutUint32(b[offPID:], info.PID)
	le.PutUint64(b[offCreated:], uint64(info.Created.UnixNano()))
	le.PutUint32(b[offChecksum:], crc32.Checksum(b[:checksummed], castagnoli))
}

// Path returns the file the segment was opened or created at.
func (s *Segment) Path() string { return s.path }

// Info returns the segment's validated header.
func (s *Segment) Info() Info { return s.info }

// SameFile reports whether fi (from os.Lstat, os.Stat or File.Stat)
// describes the file this segment maps: the same device and inode. A
// caller that opens the segment's path again (to lock it, say), or removes
// it, checks with SameFile that the path still names the segment's file,
// which another process may have replaced meanwhile.
func (s *Segment) SameFile(fi os.FileInfo) bool {
	st, ok := fi.Sys().(*syscall.Stat_t)
	return ok && s.ino != 0 && uint64(st.Ino) == s.ino && uint64(st.Dev) == s.dev
}

// ReadOnly reports whether the segment is mapped without write permission.
func (s *Segment) ReadOnly() bool { return s.readOnly }

// Bytes returns the whole mapping, header included; nil after Close. The
// slice aliases shared memory and is valid until Close.
func (s *Segment) Bytes() []byte {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.data
}

// Body returns the mapping after the header; nil after Close. The slice
// aliases shared memory and is valid until Close. It starts on a 128-byte
// boundary.
func (s *Segment) Body() []byte {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.data == nil {
		return nil
	}
	return s.data[HeaderSize:]
}

// Close unmaps the segment. Slices obtained from it must not be used
// afterwards. Close is idempotent; it does not remove the file.
func (s *Segment) Close() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.data == nil {
		return nil
	}
	err := s.data.Unmap()
	s.data = nil
	return err
}

// Remove unlinks the segment's file. Processes that map it keep a valid view
// until they close it; no new process can open it.
func (s *Segment) Remove() error { return Remove(s.path) }

// Remove unlinks the segment file at path. A missing file is not an error.
func Remove(path string) error {
	err := os.Remove(path)
	if err != nil && !errors.Is(err, os.ErrNotExist) {
		return fmt.Errorf("shm: remove %s: %w", path, err)
	}
	return nil
}

func randomHex(n int) string {
	b := make([]byte, n)
	_, _ = rand.Read(b) // crypto/rand.Read never returns an error
	return hex.EncodeToString(b)
}
