// Command benchvalidate measures dataset validation with exact token
// counting on one core: it generates a large synthetic chat JSONL file,
// validates it, and prints MB/s and the process's peak RSS; then it times
// the JavaScript reference tokenizer (@huggingface/tokenizers) on a sample
// of the same data and prints the ratio. `make bench` runs it.
//
// With -parallel 1,2 it then validates the same file with
// dataset.ValidateAt on 1, then 2 cores (GOMAXPROCS), and prints each
// run's MB/s, MB/s per core, and the speed-up over the first.
//
//	go run ./tools/benchvalidate [-mb 500] [-sample-mb 2] [-errors 0] [-parallel 1,2] [-runs 1]
package main

import (
	"bufio"
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"runtime"
	"strconv"
	"strings"
	"time"

	"github.com/brightrun/brightrun/shared/chat"
	"github.com/brightrun/brightrun/shared/dataset"
)

func main() {
	if err := run(os.Args[1:], os.Stdout); err != nil {
		fmt.Fprintln(os.Stderr, "benchvalidate:", err)
		os.Exit(1)
	}
}

func run(args []string, out io.Writer) error {
	fs := flag.NewFlagSet("benchvalidate", flag.ContinueOnError)
	mb := fs.Int("mb", 500, "size of the generated dataset in MB")
	sampleMB := fs.Int("sample-mb", 2, "size of the sample the JS reference counts, in MB")
	errorEvery := fs.Int("errors", 0, "put an error on every N-th line (0: none)")
	keep := fs.String("file", "", "write the dataset here instead of a temporary file")
	parallel := fs.String("parallel", "", "also time dataset.ValidateAt on these core counts, comma-separated (e.g. 1,2)")
	runs := fs.Int("runs", 1, "with -parallel: time each core count this many times, alternating, and keep the best")
	if err := fs.Parse(args); err != nil {
		return err
	}
	runtime.GOMAXPROCS(1)

	path := *keep
	if path == "" {
		dir, err := os.MkdirTemp("", "benchvalidate")
		if err != nil {
			return err
		}
		defer os.RemoveAll(dir)
		path = filepath.Join(dir, "dataset.jsonl")
	}
	if err := generate(path, int64(*mb)*1e6, *errorEvery); err != nil {
		return err
	}
	counter, err := chat.Qwen3Counter()
	if err != nil {
		return err
	}
	f, err := os.Open(path)
	if err != nil {
		return err
	}
	defer f.Close()
	start := time.Now()
	rep, err := dataset.Validate(context.Background(), bufio.NewReaderSize(f, 1<<20), counter, dataset.Options{})
	if err != nil {
		return err
	}
	secs := time.Since(start).Seconds()
	goMBps := float64(rep.Bytes) / 1e6 / secs
	fmt.Fprintf(out, "validate+count (Go, 1 core): %d MB, %d lines, %d examples, %d tokens (%d trained) in %.2f s: %.1f MB/s\n",
		rep.Bytes/1e6, rep.Lines, rep.Examples, rep.Tokens.Total, rep.Tokens.Trained, secs, goMBps)
	fmt.Fprintf(out, "peak RSS: %s\n", peakRSS())
	if *parallel != "" {
		if err := timeParallel(out, f, *parallel, *runs, counter); err != nil {
			return err
		}
	}

	jsMBps, err := jsReference(path, int64(*sampleMB)*1e6)
	if err != nil {
		fmt.Fprintf(out, "JS reference: not run (%v)\n", err)
		return nil
	}
	fmt.Fprintf(out, "JS reference (@huggingface/tokenizers, count only, %d MB sample): %.2f MB/s\n", *sampleMB, jsMBps)
	fmt.Fprintf(out, "ratio Go validate+count / JS count: %.0f×\n", goMBps/jsMBps)
	return nil
}

func generate(path string, size int64, errorEvery int) error {
	f, err := os.Create(path)
	if err != nil {
		return err
	}
	w := bufio.NewWriterSize(f, 1<<20)
	if err := dataset.WriteSynthetic(w, size, 1, errorEvery); err != nil {
		f.Close()
		return err
	}
	if err := w.Flush(); err != nil {
		f.Close()
		return err
	}
	return f.Close()
}

// peakRSS reads the process's high-water resident set size.
func peakRSS() string {
	data, err := os.ReadFile("/proc/self/status")
	if err != nil {
		return "unknown (no /proc)"
	}
	for _, line := range strings.Split(string(data), "\n") {
		if strings.HasPrefix(line, "VmHWM:") {
			return strings.TrimSpace(strings.TrimPrefix(line, "VmHWM:"))
		}
	}
	return "unknown"
}

var mbps = regexp.MustCompile(`([0-9.]+) MB/s`)

// jsReference copies the first size bytes of whole valid lines of path
// into a sample and times the JS reference on it.
func jsReference(path string, size int64) (float64, error) {
	if _, err := os.Stat("tools/tokref/node_modules"); err != nil {
		return 0, fmt.Errorf("install it with: npm ci --prefix tools/tokref")
	}
	in, err := os.Open(path)
	if err != nil {
		return 0, err
	}
	defer in.Close()
	sample := path + ".sample"
	out, err := os.Create(sample)
	if err != nil {
		return 0, err
	}
	defer os.Remove(sample)
	sc := bufio.NewScanner(in)
	sc.Buffer(make([]byte, 1<<20), 16<<20)
	var n int64
	for sc.Scan() && n < size {
		line := sc.Bytes()
		// The reference counts valid examples only: skip the bad lines.
		var ex struct {
			Messages []struct{ Role, Content string }
		}
		if json.Unmarshal(line, &ex) != nil || len(ex.Messages) == 0 {
			continue
		}
		out.Write(line)
		out.Write([]byte{'\n'})
		n += int64(len(line)) + 1
	}
	out.Close()
	if n == 0 {
		return 0, fmt.Errorf("no valid example in the data to time it on")
	}
	cmd := exec.Command("node", "tools/tokref/bench.mjs", sample)
	cmd.Stderr = os.Stderr
	res, err := cmd.Output()
	if err != nil {
		return 0, fmt.Errorf("node tools/tokref/bench.mjs: %w", err)
	}
	m := mbps.FindSubmatch(res)
	if m == nil {
		return 0, fmt.Errorf("unexpected output %q", res)
	}
	return strconv.ParseFloat(string(m[1]), 64)
}

// timeParallel validates f with dataset.ValidateAt on each core count of
// list, runs times in turn (so that a noisy neighbour slows every count
// alike), and prints the best run of each and its speed-up over the
// first count's.
func timeParallel(out io.Writer, f *os.File, list string, runs int, counter chat.Counter) error {
	info, err := f.Stat()
	if err != nil {
		return err
	}
	var cores []int
	for _, s := range strings.Split(list, ",") {
		n, err := strconv.Atoi(strings.TrimSpace(s))
		if err != nil || n < 1 {
			return fmt.Errorf("-parallel %q: want core counts such as 1,2", list)
		}
		cores = append(cores, n)
	}
	best := make([]float64, len(cores))
	for range max(runs, 1) {
		for i, n := range cores {
			prev := runtime.GOMAXPROCS(n)
			start := time.Now()
			rep, err := dataset.ValidateAt(context.Background(), f, info.Size(), counter, dataset.Options{}, n)
			secs := time.Since(start).Seconds()
			runtime.GOMAXPROCS(prev)
			if err != nil {
				return err
			}
			best[i] = max(best[i], float64(rep.Bytes)/1e6/secs)
		}
	}
	defer fmt.Fprintf(out, "peak RSS (after ValidateAt): %s\n", peakRSS())
	for i, n := range cores {
		fmt.Fprintf(out, "ValidateAt+count (Go, %d cores, best of %d): %.1f MB/s, %.1f MB/s per core, %.2f× the %d-core figure\n",
			n, max(runs, 1), best[i], best[i]/float64(n), best[i]/best[0], cores[0])
	}
	return nil
}
