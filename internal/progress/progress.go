// Package progress shows a one-line status: redrawn in place with '\r' on a terminal, and as
// plain lines at a calm rate when the output is a file or a pipe (where '\r' would make one
// endless line).
package progress

import (
	"fmt"
	"io"
	"os"
	"strings"
	"sync"
	"time"
	"unicode/utf8"
)

// DefaultEvery is how often a plain (non-terminal) progress line is written at most.
const DefaultEvery = 10 * time.Second

// Line is a status line. Its methods are safe for concurrent use.
type Line struct {
	mu       sync.Mutex
	w        io.Writer
	tty      bool
	every    time.Duration
	now      func() time.Time
	width    int // runes drawn on the terminal line
	lastAt   time.Time
	lastText string
}

// New returns a Line writing to w: in place when w is a terminal, else as plain lines at
// most once per every (DefaultEvery when 0; negative: never, only Final lines).
func New(w io.Writer, every time.Duration) *Line {
	if every == 0 {
		every = DefaultEvery
	}
	tty := false
	if f, ok := w.(*os.File); ok {
		tty = isTerminal(f.Fd())
	}
	return &Line{w: w, tty: tty, every: every, now: time.Now}
}

// NewFixed is New with the terminal decision and the clock given: for tests.
func NewFixed(w io.Writer, tty bool, every time.Duration, now func() time.Time) *Line {
	return &Line{w: w, tty: tty, every: every, now: now}
}

// Terminal reports whether the line is drawn in place.
func (l *Line) Terminal() bool { return l.tty }

// Show replaces the status with s.
func (l *Line) Show(s string) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.tty {
		n := utf8.RuneCountInString(s)
		pad := ""
		if l.width > n {
			pad = strings.Repeat(" ", l.width-n)
		}
		fmt.Fprintf(l.w, "\r%s%s", s, pad)
		l.width = max(l.width, n) // what the terminal line holds now, padding included
		return
	}
	if l.every < 0 || s == l.lastText {
		return
	}
	t := l.now()
	if !l.lastAt.IsZero() && t.Sub(l.lastAt) < l.every {
		return
	}
	l.lastAt, l.lastText = t, s
	fmt.Fprintln(l.w, s)
}

// Clear erases the status from a terminal (nothing to do elsewhere).
func (l *Line) Clear() {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.tty && l.width > 0 {
		fmt.Fprintf(l.w, "\r%s\r", strings.Repeat(" ", l.width))
		l.width = 0
	}
}
