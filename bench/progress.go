//go:build linux

package bench

import (
	"fmt"
	"io"
	"os"
	"sync"
	"time"

	"golang.org/x/sys/unix"
)

// IsTerminal reports whether f is a terminal.
func IsTerminal(f *os.File) bool {
	_, err := unix.IoctlGetTermios(int(f.Fd()), unix.TCGETS)
	return err == nil
}

// progressAfter is how long a run goes before it shows progress on a
// terminal.
const progressAfter = 2 * time.Second

// progress tells how far a run is. On a terminal it keeps one status line up
// to date while a run lasts longer than progressAfter: "[3/9] uds 1.2s
// (total 5.4s)", drawn from its own goroutine, so scenarios never call it.
// Anywhere else (a pipe, a file, a CI log) it writes one line per scenario
// as it starts: "shmbench: [3/9] uds (5.4s so far)".
type progress struct {
	w     io.Writer
	lines bool // one line per scenario instead of a redrawn status line

	mu      sync.Mutex
	total   int
	index   int
	name    string
	since   time.Time
	started time.Time
	drawn   bool
	quit    chan struct{}
	wg      sync.WaitGroup
}

// newProgress returns the progress of a run on w: a redrawn line when w is
// a terminal, a line per scenario otherwise, nothing when w is nil.
func newProgress(w io.Writer) *progress {
	f, ok := w.(*os.File)
	return &progress{w: w, lines: !ok || !IsTerminal(f)}
}

func (p *progress) start(total int) {
	if p.w == nil {
		return
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.quit != nil {
		return
	}
	p.total, p.started, p.quit = total, time.Now(), make(chan struct{})
	if p.lines {
		return
	}
	p.wg.Add(1)
	go p.loop(p.quit)
}

func (p *progress) begin(i int, name string) {
	if p.w == nil {
		return
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	p.index, p.name, p.since = i, name, time.Now()
	if p.lines && p.quit != nil {
		fmt.Fprintf(p.w, "shmbench: [%d/%d] %s (%.1fs so far)\n", i+1, p.total, name, time.Since(p.started).Seconds())
	}
}

func (p *progress) loop(quit chan struct{}) {
	defer p.wg.Done()
	t := time.NewTicker(200 * time.Millisecond)
	defer t.Stop()
	for {
		select {
		case <-quit:
			return
		case <-t.C:
			p.mu.Lock()
			if time.Since(p.started) >= progressAfter {
				fmt.Fprintf(p.w, "\r\x1b[K[%d/%d] %s %.1fs (total %.1fs)", p.index+1, p.total, p.name,
					time.Since(p.since).Seconds(), time.Since(p.started).Seconds())
				p.drawn = true
			}
			p.mu.Unlock()
		}
	}
}

// stop ends the drawing and clears the line. It is idempotent.
func (p *progress) stop() {
	if p == nil || p.w == nil {
		return
	}
	p.mu.Lock()
	quit := p.quit
	p.quit = nil
	p.mu.Unlock()
	if quit == nil {
		return
	}
	close(quit)
	p.wg.Wait()
	if p.drawn {
		fmt.Fprint(p.w, "\r\x1b[K")
		p.drawn = false
	}
}
