package main

import (
	"fmt"
	"io"
	"math"
	"os"
	"strconv"
	"strings"
	"sync"
	"text/tabwriter"
	"time"
)

// isTerminal reports whether w is an interactive terminal (not a file, a
// pipe, /dev/null or a dumb terminal).
func isTerminal(w io.Writer) bool {
	f, ok := w.(*os.File)
	if !ok || os.Getenv("TERM") == "dumb" {
		return false
	}
	fi, err := f.Stat()
	if err != nil || fi.Mode()&os.ModeCharDevice == 0 {
		return false
	}
	if null, err := os.Stat(os.DevNull); err == nil && os.SameFile(fi, null) {
		return false
	}
	return true
}

// formatBytes writes n in binary units: 512 B, 1.5 KiB, 11.0 MiB.
func formatBytes(n int64) string {
	if n < 1024 && n > -1024 {
		return fmt.Sprintf("%d B", n)
	}
	v := float64(n)
	for _, unit := range []string{"KiB", "MiB", "GiB", "TiB"} {
		v /= 1024
		if math.Abs(v) < 1024 || unit == "TiB" {
			if math.Abs(v) < 10 {
				return fmt.Sprintf("%.2f %s", v, unit)
			}
			return fmt.Sprintf("%.1f %s", v, unit)
		}
	}
	return "" // unreachable
}

// formatDuration writes d compactly: 45s, 12m30s, 1h02m, 3d04h.
func formatDuration(d time.Duration) string {
	if d < 0 {
		d = 0
	}
	s := int64(d.Round(time.Second) / time.Second)
	switch {
	case s < 60:
		return fmt.Sprintf("%ds", s)
	case s < 3600:
		return fmt.Sprintf("%dm%02ds", s/60, s%60)
	case s < 86400:
		return fmt.Sprintf("%dh%02dm", s/3600, (s%3600)/60)
	}
	return fmt.Sprintf("%dd%02dh", s/86400, (s%86400)/3600)
}

// formatSeconds is formatDuration for a count of seconds.
func formatSeconds[T int64 | float64](s T) string {
	return formatDuration(time.Duration(float64(s) * float64(time.Second)))
}

// formatCount writes n with thousands separators: 1,234,567.
func formatCount(n int64) string {
	s := strconv.FormatInt(n, 10)
	neg := strings.HasPrefix(s, "-")
	if neg {
		s = s[1:]
	}
	var b strings.Builder
	for i, c := range s {
		if i > 0 && (len(s)-i)%3 == 0 {
			b.WriteByte(',')
		}
		b.WriteRune(c)
	}
	if neg {
		return "-" + b.String()
	}
	return b.String()
}

// formatUSD writes dollars with cents, or with more precision below a cent.
func formatUSD(v float64) string {
	if v != 0 && math.Abs(v) < 0.01 {
		return fmt.Sprintf("$%.4f", v)
	}
	return fmt.Sprintf("$%.2f", v)
}

// bar draws a bar of width cells filled to frac (clamped to 0..1), with
// eighth-cell precision.
func bar(frac float64, width int) string {
	if width <= 0 {
		return ""
	}
	if !(frac >= 0) { // NaN too
		frac = 0
	}
	frac = min(frac, 1)
	eighths := int(math.Round(frac * float64(width*8)))
	full, part := eighths/8, eighths%8
	var b strings.Builder
	b.WriteString(strings.Repeat("█", full))
	cells := full
	if part > 0 && cells < width {
		b.WriteRune([]rune("▏▎▍▌▋▊▉")[part-1])
		cells++
	}
	b.WriteString(strings.Repeat("░", width-cells))
	return b.String()
}

// transferLine is one line of a byte progress bar: label, bar, percent,
// bytes done of total, rate and ETA. rate is bytes per second (0:
// unknown yet).
func transferLine(label string, done, total int64, rate float64, width int) string {
	frac := 1.0
	if total > 0 {
		frac = float64(done) / float64(total)
	}
	line := fmt.Sprintf("%s %s %3.0f%%  %s / %s", label, bar(frac, width), math.Floor(frac*100), formatBytes(done), formatBytes(total))
	switch {
	case done >= total:
		if rate > 0 {
			line += fmt.Sprintf("  %s/s", formatBytes(int64(rate)))
		}
	case rate > 0:
		eta := time.Duration(float64(total-done) / rate * float64(time.Second))
		line += fmt.Sprintf("  %s/s  ETA %s", formatBytes(int64(rate)), formatDuration(eta))
	default:
		line += "  ETA --"
	}
	return line
}

// progress is a byte progress bar on a terminal, redrawn in place at most
// ten times a second; on anything else it draws nothing. It is safe for
// concurrent use.
type progress struct {
	w     io.Writer
	on    bool
	label string
	total int64
	now   func() time.Time

	mu       sync.Mutex
	done     int64
	base     int64 // bytes done before this run (a resumed upload)
	start    time.Time
	lastDraw time.Time
	finished bool
}

// newProgress starts a bar of total bytes, of which done are already done.
func newProgress(w io.Writer, on bool, label string, total, done int64) *progress {
	p := &progress{w: w, on: on, label: label, total: total, done: done, base: done, now: time.Now}
	p.start = p.now()
	p.draw(true)
	return p
}

// Add counts n more bytes (negative: bytes of a failed attempt).
func (p *progress) Add(n int64) {
	if p == nil {
		return
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	p.done += n
	p.draw(false)
}

// rate is the bytes per second of this run.
func (p *progress) rate() float64 {
	el := p.now().Sub(p.start).Seconds()
	if el < 0.2 {
		return 0
	}
	return float64(p.done-p.base) / el
}

func (p *progress) draw(force bool) {
	if !p.on || p.finished {
		return
	}
	now := p.now()
	if !force && now.Sub(p.lastDraw) < 100*time.Millisecond {
		return
	}
	p.lastDraw = now
	fmt.Fprintf(p.w, "\r%s\x1b[K", transferLine(p.label, p.done, p.total, p.rate(), 24))
}

// Finish draws the final state and ends the line.
func (p *progress) Finish() {
	if p == nil {
		return
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	if !p.on || p.finished {
		return
	}
	p.draw(true)
	p.finished = true
	fmt.Fprintln(p.w)
}

// Rate is the average bytes per second of this run so far.
func (p *progress) Rate() float64 {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.rate()
}

// countingReader reports what it reads to a progress bar.
type countingReader struct {
	r io.Reader
	p *progress
	n int64
}

func (c *countingReader) Read(b []byte) (int, error) {
	n, err := c.r.Read(b)
	c.n += int64(n)
	c.p.Add(int64(n))
	return n, err
}

// sparkline draws vals in at most width cells, each the mean of its share
// of the values, scaled from the lowest to the highest. NaN and infinite
// values are skipped; a flat series is drawn at mid height.
func sparkline(vals []float64, width int) string {
	const ticks = "▁▂▃▄▅▆▇█"
	levels := []rune(ticks)
	clean := make([]float64, 0, len(vals))
	for _, v := range vals {
		if !math.IsNaN(v) && !math.IsInf(v, 0) {
			clean = append(clean, v)
		}
	}
	if len(clean) == 0 || width <= 0 {
		return ""
	}
	cells := clean
	if len(clean) > width {
		cells = make([]float64, width)
		for i := range cells {
			lo, hi := i*len(clean)/width, (i+1)*len(clean)/width
			var sum float64
			for _, v := range clean[lo:hi] {
				sum += v
			}
			cells[i] = sum / float64(hi-lo)
		}
	}
	lo, hi := cells[0], cells[0]
	for _, v := range cells {
		lo, hi = min(lo, v), max(hi, v)
	}
	var b strings.Builder
	for _, v := range cells {
		i := len(levels) / 2
		if hi > lo {
			i = int(math.Round((v - lo) / (hi - lo) * float64(len(levels)-1)))
		}
		b.WriteRune(levels[i])
	}
	return b.String()
}

// table aligns tab-separated columns like text/tabwriter, without the
// trailing spaces that an empty last column leaves.
type table struct {
	w   io.Writer
	buf strings.Builder
	tw  *tabwriter.Writer
}

func newTable(w io.Writer) *table {
	t := &table{w: w}
	t.tw = tabwriter.NewWriter(&t.buf, 0, 0, 2, ' ', 0)
	return t
}

func (t *table) Write(p []byte) (int, error) { return t.tw.Write(p) }

// Flush writes the aligned rows.
func (t *table) Flush() error {
	if err := t.tw.Flush(); err != nil {
		return err
	}
	lines := strings.SplitAfter(t.buf.String(), "\n")
	for i, l := range lines {
		lines[i] = strings.TrimRight(strings.TrimSuffix(l, "\n"), " ")
		if strings.HasSuffix(l, "\n") {
			lines[i] += "\n"
		}
	}
	t.buf.Reset()
	_, err := io.WriteString(t.w, strings.Join(lines, ""))
	return err
}
