package proxystore

import (
	"context"
	"crypto/rand"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"fmt"
	"hash/crc32"
	"io"
	"io/fs"
	"log/slog"
	"os"
	"path/filepath"
	"runtime/debug"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/klauspost/compress/s2"
	"github.com/klauspost/compress/zstd"
	"golang.org/x/sys/unix"

	"github.com/shmex/shmex/internal/quietlog"
	"github.com/shmex/shmex/shm"
)

// ErrCorrupt reports a file of a file store that fails validation: a bad
// magic, version, checksum or length, a truncated or tampered file, a
// payload that does not decompress to its recorded length.
var ErrCorrupt = errors.New("proxystore: corrupt store file")

// Compression is the codec a [FileStore] applies to the payloads it writes.
type Compression uint8

// Codecs.
const (
	// CompressNone stores payloads as they are; resolves map them
	// read-only without copying.
	CompressNone Compression = 0
	// CompressZstd compresses with zstd (github.com/klauspost/compress):
	// smaller files, slower writes.
	CompressZstd Compression = 1
	// CompressS2 compresses with S2, a faster Snappy extension.
	CompressS2 Compression = 2
)

// String names the codec.
func (c Compression) String() string {
	switch c {
	case CompressNone:
		return "none"
	case CompressZstd:
		return "zstd"
	case CompressS2:
		return "s2"
	}
	return "Compression(" + strconv.Itoa(int(c)) + ")"
}

// DefaultFileMaxPayload is the default largest payload of a [FileStore]
// ([WithFileMaxPayload]).
const DefaultFileMaxPayload = 4 << 30

// mmapThreshold: uncompressed payloads of at least this many bytes are
// mapped read-only by Resolve; smaller ones are read into a heap buffer,
// which is cheaper than a mapping for them.
const mmapThreshold = 64 << 10

// loanMapThreshold: without compression, Alloc of at least this many bytes
// lends a writable mapping of the file being written rather than a heap
// buffer written at Commit. Both cost the same (BenchmarkFileStore: about
// 1 ms per MiB on ext4, page faults either way), and the mapping takes no
// heap.
const loanMapThreshold = 64 << 10

// FileOption configures [OpenFileStore].
type FileOption func(*fileOptions)

type fileOptions struct {
	codec      Compression
	log        *slog.Logger
	maxPayload uint64
	sync       bool
	loanMapMin int // loanMapThreshold; changed by tests
}

// withLoanMapMin sets the smallest loan backed by a mapping (tests).
func withLoanMapMin(n int) FileOption {
	return func(o *fileOptions) { o.loanMapMin = n }
}

// WithCompression sets the codec for the payloads this FileStore writes
// (default [CompressNone]). A payload that does not shrink is stored as it
// is. Every FileStore reads every codec, whatever its own setting.
func WithCompression(c Compression) FileOption {
	return func(o *fileOptions) { o.codec = c }
}

// WithFileLogger sets the logger. By default (nil) only warnings and
// errors reach [slog.Default]; pass a logger to see the debug records too.
func WithFileLogger(l *slog.Logger) FileOption {
	return func(o *fileOptions) { o.log = l }
}

// WithFileMaxPayload sets the largest payload, in bytes, that the store
// writes or reads (default [DefaultFileMaxPayload]). It bounds the memory
// a resolve of a compressed file allocates, whatever its header says.
func WithFileMaxPayload(n uint64) FileOption {
	return func(o *fileOptions) { o.maxPayload = n }
}

// WithFileSync makes every write fsync the payload file and the directory
// before the proxy is returned, so that payloads survive a machine crash,
// not only the processes (default off).
func WithFileSync(on bool) FileOption {
	return func(o *fileOptions) { o.sync = on }
}

// FileStore is a [Store] of files under a directory: one file per payload,
// optionally compressed, that outlives the processes that wrote it. Every
// process (and every FileStore value) that opens the same directory shares
// the same [StoreID] and resolves the others' proxies. See the package
// documentation for the file layout and the lifetimes.
type FileStore struct {
	dir  string
	id   StoreID
	opts fileOptions
	life *shm.Life

	encOnce sync.Once
	enc     *zstd.Encoder
	encErr  error
	dec     *zstd.Decoder

	// op is held for reading by every operation and for writing by
	// Close, which waits for them before it closes the codecs.
	op sync.RWMutex

	mu     sync.Mutex // guards closed and loans
	closed bool
	loans  map[*fileLoan]struct{}
}

var _ Store = (*FileStore)(nil)

// OpenFileStore opens the file store in dir, creating the directory (mode
// 0700) and the store's id file when missing. The directory must be owned by
// the user and writable by nobody else. Each process opens its own
// FileStore; Close it when done.
func OpenFileStore(dir string, opts ...FileOption) (*FileStore, error) {
	o := fileOptions{maxPayload: DefaultFileMaxPayload, loanMapMin: loanMapThreshold}
	for _, f := range opts {
		if f != nil {
			f(&o)
		}
	}
	o.log = quietlog.Or(o.log)
	if o.codec > CompressS2 {
		return nil, fmt.Errorf("proxystore: unknown compression %v", o.codec)
	}
	if o.maxPayload == 0 || o.maxPayload > 1<<48 {
		return nil, fmt.Errorf("proxystore: file store payload limit %d out of range", o.maxPayload)
	}
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, fmt.Errorf("proxystore: file store directory: %w", err)
	}
	if err := checkStoreDir(dir); err != nil {
		return nil, err
	}
	liveDir := filepath.Join(dir, fileLiveDir)
	if err := os.Mkdir(liveDir, 0o700); err != nil && !errors.Is(err, fs.ErrExist) {
		return nil, fmt.Errorf("proxystore: file store directory: %w", err)
	}
	life, err := shm.HoldLife(liveDir)
	if err != nil {
		return nil, fmt.Errorf("proxystore: file store: %w", err)
	}
	s := &FileStore{dir: dir, opts: o, life: life, loans: map[*fileLoan]struct{}{}}
	if s.id, err = s.loadID(); err != nil {
		life.Close()
		return nil, err
	}
	s.dec, err = zstd.NewReader(nil,
		zstd.WithDecoderConcurrency(1),
		zstd.WithDecoderMaxMemory(o.maxPayload),
		zstd.WithDecodeAllCapLimit(true))
	if err != nil {
		life.Close()
		return nil, fmt.Errorf("proxystore: zstd decoder: %w", err)
	}
	register(s)
	return s, nil
}

// checkStoreDir checks that dir is a directory (not a symbolic link) of the
// user that nobody else can write to: nobody else can plant, replace or
// remove its files.
func checkStoreDir(dir string) error {
	var st unix.Stat_t
	if err := unix.Lstat(dir, &st); err != nil {
		return fmt.Errorf("proxystore: file store directory: %w", err)
	}
	switch {
	case st.Mode&unix.S_IFMT != unix.S_IFDIR:
		return fmt.Errorf("proxystore: file store directory %s: not a directory", dir)
	case int(st.Uid) != os.Geteuid():
		return fmt.Errorf("proxystore: file store directory %s: owned by uid %d", dir, st.Uid)
	case st.Mode&0o022 != 0:
		return fmt.Errorf("proxystore: file store directory %s: mode %#o is writable by others", dir, st.Mode&0o777)
	}
	return nil
}

// loadID reads the store's id, creating it if this is the first open: the
// new id file is written aside and published without replacing, so that
// racing openers agree on whichever came first.
func (s *FileStore) loadID() (StoreID, error) {
	path := filepath.Join(s.dir, fileIDName)
	for attempt := 0; attempt < 2; attempt++ {
		b, err := readSmallFile(path, fileIDSize+1)
		if err == nil {
			id, err := parseStoreID(b)
			if err != nil {
				return id, fmt.Errorf("%s: %w", path, err)
			}
			return id, nil
		}
		if !errors.Is(err, fs.ErrNotExist) {
			return StoreID{}, fmt.Errorf("proxystore: read %s: %w", path, err)
		}
		tmp, err := s.writeTemp(putStoreID(NewStoreID()))
		if err != nil {
			return StoreID{}, err
		}
		err = publishNoReplace(tmp, path)
		os.Remove(tmp)
		if err != nil && !errors.Is(err, fs.ErrExist) {
			return StoreID{}, fmt.Errorf("proxystore: create %s: %w", path, err)
		}
		// Published, or another opener was first: read what is there.
	}
	return StoreID{}, fmt.Errorf("proxystore: %s: cannot create the store id", path)
}

// readSmallFile reads at most limit bytes of the file at path, opened
// through shm.OpenFile (as every file of the store: another process of the
// user may have put a FIFO there, which must fail the open, not block it).
func readSmallFile(path string, limit int64) ([]byte, error) {
	f, err := shm.OpenFile(path, os.O_RDONLY, 0)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	return io.ReadAll(io.LimitReader(f, limit))
}

// ID returns the store's id, the same for every FileStore of the directory.
func (s *FileStore) ID() StoreID { return s.id }

// Dir returns the store's directory.
func (s *FileStore) Dir() string { return s.dir }

// Compression returns the codec this FileStore writes with.
func (s *FileStore) Compression() Compression { return s.opts.codec }

func (s *FileStore) path(segment uint64) string {
	return filepath.Join(s.dir, filePrefix+fmt.Sprintf("%016x", segment))
}

// createTemp creates a new temporary file, named after this store's life so
// that Sweep can remove the leftovers of a process that died mid-write.
func (s *FileStore) createTemp() (string, *os.File, error) {
	for attempt := 0; attempt < 8; attempt++ {
		var r [8]byte
		_, _ = rand.Read(r[:])
		tmp := filepath.Join(s.dir, fmt.Sprintf("%s%016x-%s", fileTempPrefix, s.life.ID(), hex.EncodeToString(r[:])))
		f, err := shm.OpenFile(tmp, os.O_RDWR|os.O_CREATE|os.O_EXCL, 0o600)
		if errors.Is(err, fs.ErrExist) {
			continue
		}
		if err != nil {
			return "", nil, storeFull(fmt.Errorf("proxystore: create temporary file: %w", err))
		}
		return tmp, f, nil
	}
	return "", nil, errors.New("proxystore: cannot create a unique temporary file")
}

// writeTemp writes parts one after the other into a new temporary file,
// synced with [WithFileSync], and returns its name. On an error it leaves
// no file behind.
func (s *FileStore) writeTemp(parts ...[]byte) (string, error) {
	tmp, f, err := s.createTemp()
	if err != nil {
		return "", err
	}
	for _, b := range parts {
		if err == nil {
			_, err = f.Write(b)
		}
	}
	if err == nil && s.opts.sync {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		os.Remove(tmp)
		return "", storeFull(fmt.Errorf("proxystore: write %s: %w", tmp, err))
	}
	return tmp, nil
}

// storeFull wraps ENOSPC and EDQUOT errors with ErrStoreFull.
func storeFull(err error) error {
	if errors.Is(err, syscall.ENOSPC) || errors.Is(err, syscall.EDQUOT) || errors.Is(err, shm.ErrNoSpace) {
		return fmt.Errorf("%w: %w", ErrStoreFull, err)
	}
	return err
}

// publishNoReplace renames tmp to path, failing with fs.ErrExist rather than
// replacing an existing file (shm.Publish, on every system).
func publishNoReplace(tmp, path string) error { return shm.Publish(tmp, path) }

func randomNonZero() uint64 {
	for {
		var b [8]byte
		_, _ = rand.Read(b[:])
		if v := binary.LittleEndian.Uint64(b[:]); v != 0 {
			return v
		}
	}
}

// enter starts an operation: it fails with ErrClosed after Close, and
// otherwise holds off Close until leave.
func (s *FileStore) enter() error {
	s.op.RLock()
	s.mu.Lock()
	closed := s.closed
	s.mu.Unlock()
	if closed {
		s.op.RUnlock()
		return ErrClosed
	}
	return nil
}

func (s *FileStore) leave() { s.op.RUnlock() }

func (s *FileStore) checkSize(n int) error {
	if n < 0 {
		return fmt.Errorf("%w: negative size %d", ErrBadProxy, n)
	}
	if uint64(n) > s.opts.maxPayload {
		return fmt.Errorf("%w: payload of %d bytes over the file store's limit of %d", ErrStoreFull, n, s.opts.maxPayload)
	}
	return nil
}

// newHeader returns the header of a new payload of n bytes.
func (s *FileStore) newHeader(n int, opts []PutOption) (fileHeader, error) {
	o, err := putOptions(opts)
	if err != nil {
		return fileHeader{}, err
	}
	h := fileHeader{
		lifetime:   o.Lifetime,
		store:      s.id,
		segment:    randomNonZero(),
		generation: randomNonZero(),
		rawLen:     uint64(n),
		storedLen:  uint64(n),
	}
	if o.Lifetime == Leased {
		h.deadline = o.Deadline.UnixNano()
		if h.deadline == 0 {
			h.deadline = 1 // 0 means no deadline
		}
	}
	return h, nil
}

func (h *fileHeader) proxy() Proxy {
	return Proxy{Store: h.store, Kind: uint8(KindFile), Segment: h.segment, Length: h.rawLen, Generation: h.generation}
}

// Put copies b into a new file, compressed with the store's codec when that
// makes it smaller, and returns its proxy. The file appears under its name
// complete or not at all.
func (s *FileStore) Put(ctx context.Context, b []byte, opts ...PutOption) (Proxy, error) {
	if err := ctx.Err(); err != nil {
		return Proxy{}, err
	}
	if err := s.enter(); err != nil {
		return Proxy{}, err
	}
	defer s.leave()
	if err := s.checkSize(len(b)); err != nil {
		return Proxy{}, err
	}
	h, err := s.newHeader(len(b), opts)
	if err != nil {
		return Proxy{}, err
	}
	return s.writeFile(&h, b)
}

// compress returns the stored form of b and its codec.
func (s *FileStore) compress(b []byte) ([]byte, Compression, error) {
	switch s.opts.codec {
	case CompressZstd:
		s.encOnce.Do(func() {
			s.enc, s.encErr = zstd.NewWriter(nil, zstd.WithEncoderConcurrency(1))
		})
		if s.encErr != nil {
			return nil, 0, fmt.Errorf("proxystore: zstd encoder: %w", s.encErr)
		}
		c := s.enc.EncodeAll(b, make([]byte, 0, len(b)/2+64))
		if len(c) < len(b) {
			return c, CompressZstd, nil
		}
	case CompressS2:
		if s2.MaxEncodedLen(len(b)) >= 0 { // else too large for an S2 block: keep it raw
			c := s2.Encode(nil, b)
			if len(c) < len(b) {
				return c, CompressS2, nil
			}
		}
	}
	return b, CompressNone, nil
}

// writeFile writes a payload file for h holding raw (compressed here when
// the store compresses) and publishes it.
func (s *FileStore) writeFile(h *fileHeader, raw []byte) (Proxy, error) {
	data := raw
	if s.opts.codec != CompressNone && len(raw) > 0 {
		var err error
		if data, h.codec, err = s.compress(raw); err != nil {
			return Proxy{}, err
		}
	}
	h.storedLen = uint64(len(data))
	h.dataCRC = crc32.Checksum(data, castagnoli)
	var hdr [fileHeaderSize]byte
	h.put(hdr[:])
	tmp, err := s.writeTemp(hdr[:], data)
	if err != nil {
		return Proxy{}, err
	}
	return s.publish(h, tmp)
}

// publish gives the written temporary file tmp its final name, picking a
// new segment on the (astronomically unlikely) clash with an existing one.
func (s *FileStore) publish(h *fileHeader, tmp string) (Proxy, error) {
	for attempt := 0; ; attempt++ {
		err := publishNoReplace(tmp, s.path(h.segment))
		if err == nil {
			break
		}
		if !errors.Is(err, fs.ErrExist) || attempt == 4 {
			os.Remove(tmp)
			return Proxy{}, fmt.Errorf("proxystore: publish payload file: %w", err)
		}
		// The segment is in the header: rewrite it under a new name.
		h.segment = randomNonZero()
		if err := rewriteHeader(tmp, h); err != nil {
			os.Remove(tmp)
			return Proxy{}, err
		}
	}
	if s.opts.sync {
		if d, err := shm.OpenFile(s.dir, os.O_RDONLY|syscall.O_DIRECTORY, 0); err == nil {
			d.Sync()
			d.Close()
		}
	}
	return h.proxy(), nil
}

func rewriteHeader(path string, h *fileHeader) error {
	f, err := shm.OpenFile(path, os.O_RDWR, 0)
	if err != nil {
		return err
	}
	var hdr [fileHeaderSize]byte
	h.put(hdr[:])
	_, err = f.WriteAt(hdr[:], 0)
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	return err
}

// Alloc lends a region of n bytes. Without compression and for n of at least
// 64 KiB it is a writable mapping of the payload file being written, so
// that Commit copies nothing; otherwise it is a heap buffer written (and
// compressed) at Commit.
func (s *FileStore) Alloc(ctx context.Context, n int, opts ...PutOption) (Loan, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	if err := s.checkSize(n); err != nil {
		return nil, err
	}
	h, err := s.newHeader(n, opts)
	if err != nil {
		return nil, err
	}
	l := &fileLoan{s: s, h: h}
	if s.opts.codec == CompressNone && n >= s.opts.loanMapMin {
		if err := l.mapTemp(); err != nil {
			return nil, err
		}
	} else {
		l.buf = make([]byte, n)
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		l.drop()
		return nil, ErrClosed
	}
	s.loans[l] = struct{}{}
	return l, nil
}

// fileLoan is a loan of a FileStore: a heap buffer, or a writable mapping
// of a temporary file (tmp) whose first fileHeaderSize bytes are the header.
type fileLoan struct {
	s    *FileStore
	h    fileHeader
	buf  []byte // heap loan
	tmp  string // mapped loan: the temporary file
	f    *os.File
	mmap []byte
	done bool
}

func (l *fileLoan) mapTemp() error {
	tmp, f, err := l.s.createTemp()
	if err != nil {
		return err
	}
	size := int64(fileHeaderSize) + int64(l.h.rawLen)
	// Reserve the blocks now, so that a full disk is an error here rather
	// than a SIGBUS while the caller writes into the mapping.
	err = shm.Reserve(f, size)
	var m []byte
	if err == nil {
		m, err = unix.Mmap(int(f.Fd()), 0, int(size), unix.PROT_READ|unix.PROT_WRITE, unix.MAP_SHARED)
	}
	if err != nil {
		f.Close()
		os.Remove(tmp)
		return storeFull(fmt.Errorf("proxystore: map payload file: %w", err))
	}
	l.tmp, l.f, l.mmap = tmp, f, m
	return nil
}

// Bytes returns the region to fill.
func (l *fileLoan) Bytes() []byte {
	if l.mmap != nil {
		return l.mmap[fileHeaderSize:]
	}
	return l.buf
}

// forget removes l from its store's outstanding loans and reports whether
// it was still outstanding.
func (l *fileLoan) forget() (outstanding, closed bool) {
	s := l.s
	s.mu.Lock()
	defer s.mu.Unlock()
	if l.done {
		return false, s.closed
	}
	l.done = true
	delete(s.loans, l)
	return true, s.closed
}

// drop releases the loan's resources without publishing.
func (l *fileLoan) drop() {
	if l.mmap != nil {
		unix.Munmap(l.mmap)
		l.mmap = nil
		l.f.Close()
		os.Remove(l.tmp)
	}
	l.buf = nil
}

// Commit writes the payload file and returns its proxy.
func (l *fileLoan) Commit() (Proxy, error) {
	ok, closed := l.forget()
	if !ok {
		return Proxy{}, ErrReleased
	}
	if closed {
		l.drop()
		return Proxy{}, ErrClosed
	}
	if err := l.s.enter(); err != nil {
		l.drop()
		return Proxy{}, err
	}
	defer l.s.leave()
	if l.mmap == nil {
		p, err := l.s.writeFile(&l.h, l.buf)
		l.buf = nil
		return p, err
	}
	l.h.dataCRC = crc32.Checksum(l.mmap[fileHeaderSize:], castagnoli)
	l.h.put(l.mmap[:fileHeaderSize])
	err := unix.Munmap(l.mmap)
	l.mmap = nil
	if err == nil && l.s.opts.sync {
		err = l.f.Sync()
	}
	if cerr := l.f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		os.Remove(l.tmp)
		return Proxy{}, fmt.Errorf("proxystore: write payload file: %w", err)
	}
	return l.s.publish(&l.h, l.tmp)
}

// Abort gives the region back.
func (l *fileLoan) Abort() error {
	if ok, _ := l.forget(); !ok {
		return ErrReleased
	}
	l.drop()
	return nil
}

// open opens the payload file of p after checking p against the store, and
// reads and checks its header.
func (s *FileStore) open(p Proxy) (*os.File, fileHeader, error) {
	var h fileHeader
	switch {
	case StoreID(p.Store) != s.id:
		return nil, h, fmt.Errorf("%w: %v is not from file store %v", ErrForeignProxy, p, s.id)
	case Kind(p.Kind) != KindFile:
		return nil, h, fmt.Errorf("%w: %v: not a file proxy", ErrBadProxy, p)
	case p.Offset != 0 || p.Segment == 0 || p.Generation == 0:
		return nil, h, fmt.Errorf("%w: %v: malformed file proxy", ErrBadProxy, p)
	case p.Length > s.opts.maxPayload:
		return nil, h, fmt.Errorf("%w: %v: over the payload limit of %d", ErrBadProxy, p, s.opts.maxPayload)
	}
	f, err := shm.OpenFile(s.path(p.Segment), os.O_RDONLY, 0)
	if err != nil {
		if errors.Is(err, fs.ErrNotExist) {
			return nil, h, fmt.Errorf("%w: %v: no such payload file", ErrStaleProxy, p)
		}
		if errors.Is(err, shm.ErrNotRegular) {
			return nil, h, fmt.Errorf("%w: %v: %w", ErrCorrupt, p, err)
		}
		return nil, h, fmt.Errorf("proxystore: open payload file: %w", err)
	}
	h, err = checkFile(f, s.id, p.Segment, s.opts.maxPayload)
	if err != nil {
		f.Close()
		return nil, h, fmt.Errorf("%v: %w", p, err)
	}
	switch {
	case h.generation != p.Generation:
		f.Close()
		return nil, h, fmt.Errorf("%w: %v: the file holds generation %d", ErrStaleProxy, p, h.generation)
	case h.rawLen != p.Length:
		f.Close()
		return nil, h, fmt.Errorf("%w: %v: the file holds %d bytes", ErrBadProxy, p, h.rawLen)
	}
	return f, h, nil
}

// checkFile reads and checks the header of an open payload file: a regular
// file of the user, whose header is valid, names this store and segment,
// and whose size matches the stored length.
func checkFile(f *os.File, id StoreID, segment, maxRaw uint64) (fileHeader, error) {
	var h fileHeader
	var st unix.Stat_t
	if err := unix.Fstat(int(f.Fd()), &st); err != nil {
		return h, fmt.Errorf("proxystore: stat payload file: %w", err)
	}
	if st.Mode&unix.S_IFMT != unix.S_IFREG || int(st.Uid) != os.Geteuid() {
		return h, fmt.Errorf("%w: not a regular file of this user", ErrCorrupt)
	}
	var hdr [fileHeaderSize]byte
	if n, err := f.ReadAt(hdr[:], 0); n < fileHeaderSize {
		return h, fmt.Errorf("%w: truncated header (%d bytes): %v", ErrCorrupt, n, err)
	}
	h, err := parseFileHeader(hdr[:], maxRaw)
	if err != nil {
		return h, err
	}
	switch {
	case h.store != id:
		return h, fmt.Errorf("%w: written by store %v", ErrCorrupt, h.store)
	case h.segment != segment:
		return h, fmt.Errorf("%w: header names segment %016x", ErrCorrupt, h.segment)
	case uint64(st.Size) != fileHeaderSize+h.storedLen:
		return h, fmt.Errorf("%w: file of %d bytes, header says %d", ErrCorrupt, st.Size, fileHeaderSize+h.storedLen)
	}
	return h, nil
}

// Resolve checks p and its file (header, size, checksum, lease) and returns
// a view of the payload. An uncompressed payload of 64 KiB or more is
// mapped read-only (no copy); a smaller or compressed one is read (and
// decompressed) into a buffer of the length the header records, bounded by
// the store's payload limit. The stored bytes' checksum is verified in
// every case (a fault while reading a mapped file is an error, not a
// crash). Caveat: the store never truncates a published file, but if
// another process of the user truncates one while a view maps it, reading
// the view faults (SIGBUS). Errors: [ErrForeignProxy], [ErrBadProxy], [ErrStaleProxy]
// (file gone or replaced), [ErrExpired], [ErrCorrupt], [ErrClosed].
func (s *FileStore) Resolve(ctx context.Context, p Proxy) (View, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	if err := s.enter(); err != nil {
		return nil, err
	}
	defer s.leave()
	f, h, err := s.open(p)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	if h.lifetime == Leased && time.Now().After(h.deadlineTime()) {
		os.Remove(s.path(p.Segment))
		return nil, fmt.Errorf("%w: %v: lease ended at %v", ErrExpired, p, h.deadlineTime().Format(time.RFC3339Nano))
	}
	v := &fileView{p: p}
	if h.lifetime == SingleUse {
		v.evict = s.path(p.Segment)
	}
	if h.codec == CompressNone && h.storedLen >= mmapThreshold {
		m, err := unix.Mmap(int(f.Fd()), 0, int(fileHeaderSize+h.storedLen), unix.PROT_READ, unix.MAP_SHARED)
		if err != nil {
			return nil, fmt.Errorf("proxystore: map payload file: %w", err)
		}
		if err := checkCRC(m[fileHeaderSize:], h.dataCRC); err != nil {
			unix.Munmap(m)
			return nil, fmt.Errorf("%v: %w", p, err)
		}
		v.mmap = m
		v.b = m[fileHeaderSize:len(m):len(m)]
		return v, nil
	}
	stored := make([]byte, h.storedLen) // bounded: storedLen <= rawLen <= maxPayload
	if n, err := f.ReadAt(stored, fileHeaderSize); n != len(stored) {
		return nil, fmt.Errorf("%w: %v: short read (%d of %d bytes): %v", ErrCorrupt, p, n, len(stored), err)
	}
	if err := checkCRC(stored, h.dataCRC); err != nil {
		return nil, fmt.Errorf("%v: %w", p, err)
	}
	if v.b, err = s.decompress(h, stored); err != nil {
		return nil, fmt.Errorf("%v: %w", p, err)
	}
	return v, nil
}

// checkCRC verifies the checksum of stored bytes, which may be a mapping: a
// fault while reading it (the file truncated under the mapping) is turned
// into an error rather than a crash.
func checkCRC(b []byte, want uint32) (err error) {
	defer debug.SetPanicOnFault(debug.SetPanicOnFault(true))
	defer func() {
		if r := recover(); r != nil {
			err = fmt.Errorf("%w: fault while reading the file: %v", ErrCorrupt, r)
		}
	}()
	if got := crc32.Checksum(b, castagnoli); got != want {
		return fmt.Errorf("%w: data checksum %08x, want %08x", ErrCorrupt, got, want)
	}
	return nil
}

// decompress returns the payload of a file from its stored bytes, which
// the caller has checked.
func (s *FileStore) decompress(h fileHeader, stored []byte) ([]byte, error) {
	var out []byte
	var err error
	switch h.codec {
	case CompressNone:
		return stored[:len(stored):len(stored)], nil
	case CompressZstd:
		out, err = s.dec.DecodeAll(stored, make([]byte, 0, h.rawLen))
	case CompressS2:
		var n int
		if n, err = s2.DecodedLen(stored); err == nil {
			if uint64(n) != h.rawLen {
				return nil, fmt.Errorf("%w: s2 block of %d bytes, header says %d", ErrCorrupt, n, h.rawLen)
			}
			out, err = s2.Decode(make([]byte, n), stored)
		}
	}
	if err != nil {
		return nil, fmt.Errorf("%w: %v: %v", ErrCorrupt, h.codec, err)
	}
	if uint64(len(out)) != h.rawLen {
		return nil, fmt.Errorf("%w: decompressed to %d bytes, header says %d", ErrCorrupt, len(out), h.rawLen)
	}
	return out[:len(out):len(out)], nil
}

// fileView is a resolved payload: a read-only mapping or a buffer.
type fileView struct {
	p        Proxy
	b        []byte
	mmap     []byte
	evict    string // SingleUse: the file to remove at release
	released atomic.Bool
}

func (v *fileView) Bytes() []byte   { return v.b }
func (v *fileView) Proxy() Proxy    { return v.p }
func (v *fileView) singleUse() bool { return v.evict != "" }

// Release unmaps the view and, for a SingleUse payload, removes its file.
func (v *fileView) Release() error {
	if v.released.Swap(true) {
		return ErrReleased
	}
	if v.mmap != nil {
		unix.Munmap(v.mmap)
		v.mmap = nil
	}
	v.b = nil
	if v.evict != "" {
		if err := os.Remove(v.evict); err != nil && !errors.Is(err, fs.ErrNotExist) {
			return fmt.Errorf("proxystore: evict single-use payload: %w", err)
		}
	}
	return nil
}

// Free removes the payload file of p: later resolves fail with
// [ErrStaleProxy]; views already resolved stay valid until released. Any
// process using the store may free a payload (files have no owner).
func (s *FileStore) Free(ctx context.Context, p Proxy) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	if err := s.enter(); err != nil {
		return err
	}
	defer s.leave()
	f, _, err := s.open(p)
	if err != nil {
		if errors.Is(err, ErrCorrupt) {
			// A corrupt file is removed all the same.
			return os.Remove(s.path(p.Segment))
		}
		return err
	}
	f.Close()
	if err := os.Remove(s.path(p.Segment)); err != nil {
		if errors.Is(err, fs.ErrNotExist) {
			return fmt.Errorf("%w: %v: already removed", ErrStaleProxy, p)
		}
		return fmt.Errorf("proxystore: free: %w", err)
	}
	return nil
}

// Sweep removes what no live process will ever use: the temporary files of
// writers that died mid-write and the files of expired leases (it returns
// how many), and the liveness lock files of dead stores. Payload files it
// cannot read are logged and left. Single-use payloads whose receiver died
// before releasing them are not found: they look like any other.
func (s *FileStore) Sweep(ctx context.Context) (int, error) {
	if err := s.enter(); err != nil {
		return 0, err
	}
	defer s.leave()
	entries, err := shm.ReadDir(s.dir)
	if err != nil {
		return 0, fmt.Errorf("proxystore: sweep: %w", err)
	}
	removed := 0
	now := time.Now()
	for _, e := range entries {
		if err := ctx.Err(); err != nil {
			return removed, err
		}
		name := e.Name()
		path := filepath.Join(s.dir, name)
		switch {
		case strings.HasPrefix(name, fileTempPrefix):
			life, ok := tempLife(name)
			if !ok || life == s.life.ID() {
				continue
			}
			if alive, err := shm.Alive(filepath.Join(s.dir, fileLiveDir), life); err != nil || alive {
				continue
			}
			if os.Remove(path) == nil {
				removed++
			}
		case strings.HasPrefix(name, filePrefix):
			seg, ok := payloadSegment(name)
			if !ok {
				continue
			}
			f, err := shm.OpenFile(path, os.O_RDONLY, 0)
			if err != nil {
				if !errors.Is(err, fs.ErrNotExist) {
					s.opts.log.Warn("proxystore: file store sweep: unreadable payload file", "file", path, "err", err)
				}
				continue
			}
			h, err := checkFile(f, s.id, seg, s.opts.maxPayload)
			f.Close()
			if err != nil {
				s.opts.log.Warn("proxystore: file store sweep: unreadable payload file", "file", path, "err", err)
				continue
			}
			if h.lifetime == Leased && now.After(h.deadlineTime()) && os.Remove(path) == nil {
				removed++
			}
		}
	}
	// The lock files of dead stores.
	liveDir := filepath.Join(s.dir, fileLiveDir)
	lives, _ := shm.ReadDir(liveDir)
	for _, e := range lives {
		id, ok := shm.ParseLifeName(e.Name())
		if !ok || id == s.life.ID() {
			continue
		}
		if alive, err := shm.Alive(liveDir, id); err == nil && !alive {
			os.Remove(filepath.Join(liveDir, e.Name()))
		}
	}
	return removed, nil
}

// tempLife returns the life id in a temporary file's name.
func tempLife(name string) (uint64, bool) {
	rest, ok := strings.CutPrefix(name, fileTempPrefix)
	if !ok || len(rest) < 17 || rest[16] != '-' {
		return 0, false
	}
	return parseID16(rest[:16])
}

// Close closes the store: later calls return [ErrClosed]; the temporary
// files of outstanding loans are removed (their Commit returns ErrClosed).
// Views stay valid until released, and payload files stay: they outlive
// the store by design.
func (s *FileStore) Close() error {
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		return nil
	}
	s.closed = true
	unregister(s)
	for l := range s.loans {
		if l.tmp != "" {
			os.Remove(l.tmp) // the mapping stays valid for a writer still at it
		}
	}
	s.mu.Unlock()
	s.op.Lock() // wait for the operations in progress
	defer s.op.Unlock()
	s.dec.Close()
	s.encOnce.Do(func() {})
	if s.enc != nil {
		s.enc.Close()
	}
	return s.life.Close()
}
