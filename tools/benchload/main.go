// Command benchload puts the local stack under load and checks what it
// stored. Each scenario runs against a fresh local stack (the embedded
// store, queue, blobs and RunPod emulator) in a separate process — this
// binary started again — while the load comes from vegeta's library
// attacker in this process; both share this machine's CPUs.
//
//  1. reads: GET /v1/datasets/{id}, GET /v1/datasets and GET /v1/jobs in
//     turn at -rate (default 1,000 req/s) for -duration (default 10 s).
//     Target: p99 under 5 ms, 100 % success.
//  2. jobs: POST /v1/jobs with distinct Idempotency-Keys at -job-rate
//     (default 100 req/s) for -duration; then every job must be listed by
//     the API, accepted by the jobs queue exactly once (the child counts
//     the queue's sends, so the dispatcher consuming the queue does not
//     race the count), flagged enqueued in the store, and submitted to the
//     RunPod emulator exactly once with no dead letter.
//  3. callbacks: -callback-jobs (default 50) running jobs each send signed
//     progress callbacks in order, all together at -callback-rate (default
//     2,000/s) for -callback-duration (default 60 s); then every
//     acknowledged metric point must be stored, each job's progress must
//     be the last step sent, and each job must still be running.
//
// A missed performance target is reported; a failed correctness check also
// makes the exit status 1. -profile DIR saves the stack's CPU, block and
// mutex profiles of each scenario's load window.
//
//	go run ./tools/benchload [-duration 10s] [-rate 1000] [-job-rate 100]
//	    [-callback-duration 60s] [-callback-rate 2000] [-callback-jobs 50]
//	    [-only reads,jobs,callbacks] [-profile DIR] [-json]
package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/signal"
	"path/filepath"
	"runtime"
	"strings"
	"time"

	vegeta "github.com/tsenart/vegeta/v12/lib"
)

func main() {
	if dir := os.Getenv(stackEnv); dir != "" {
		if err := serveStack(dir); err != nil {
			fmt.Fprintln(os.Stderr, "benchload stack:", err)
			os.Exit(1)
		}
		return
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt)
	defer stop()
	rep, err := run(ctx, os.Args[1:], os.Stdout)
	if err != nil {
		fmt.Fprintln(os.Stderr, "benchload:", err)
		os.Exit(1)
	}
	if !rep.OK {
		os.Exit(1)
	}
}

// options are the command's flags.
type options struct {
	duration         time.Duration
	rate, jobRate    float64
	callbackDuration time.Duration
	callbackRate     float64
	callbackJobs     int
	only             string
	profile          string
	json             bool
	sample           string
}

func parseFlags(args []string) (options, error) {
	var o options
	fs := flag.NewFlagSet("benchload", flag.ContinueOnError)
	fs.DurationVar(&o.duration, "duration", 10*time.Second, "how long the read and the job creation scenarios last")
	fs.Float64Var(&o.rate, "rate", 1000, "read requests per second")
	fs.Float64Var(&o.jobRate, "job-rate", 100, "job creations per second")
	fs.DurationVar(&o.callbackDuration, "callback-duration", 60*time.Second, "how long the callback scenario lasts")
	fs.Float64Var(&o.callbackRate, "callback-rate", 2000, "worker callbacks per second, all jobs together")
	fs.IntVar(&o.callbackJobs, "callback-jobs", 50, "running jobs sending callbacks concurrently")
	fs.StringVar(&o.only, "only", "reads,jobs,callbacks", "the scenarios to run, comma-separated")
	fs.StringVar(&o.profile, "profile", "", "save the stack's CPU, block and mutex profiles of each scenario in this folder")
	fs.BoolVar(&o.json, "json", false, "print the results as JSON")
	fs.StringVar(&o.sample, "sample", "", "the dataset to upload (default: testdata/datasets/sample.jsonl, found from the working directory up)")
	if err := fs.Parse(args); err != nil {
		return o, err
	}
	if fs.NArg() > 0 {
		return o, fmt.Errorf("unexpected arguments %q", fs.Args())
	}
	if o.duration <= 0 || o.callbackDuration <= 0 || o.rate <= 0 || o.jobRate <= 0 || o.callbackRate <= 0 || o.callbackJobs <= 0 {
		return o, errors.New("durations, rates and -callback-jobs must be positive")
	}
	return o, nil
}

// scenario runs one scenario against a fresh stack.
type scenario func(ctx context.Context, st *stack, o options, sample []byte) (Scenario, error)

var scenarios = map[string]scenario{"reads": readsScenario, "jobs": jobsScenario, "callbacks": callbacksScenario}

func run(ctx context.Context, args []string, out io.Writer) (*Report, error) {
	o, err := parseFlags(args)
	if err != nil {
		return nil, err
	}
	if o.sample == "" {
		if o.sample, err = findSample(); err != nil {
			return nil, err
		}
	}
	sample, err := os.ReadFile(o.sample)
	if err != nil {
		return nil, err
	}
	if o.profile != "" {
		if err := os.MkdirAll(o.profile, 0o755); err != nil {
			return nil, err
		}
	}
	rep := &Report{
		Started: time.Now().UTC(),
		Setup:   "load from vegeta v12.13.0's library attacker in this process, the stack in a separate process (this binary re-executed)",
		CPUs:    runtime.NumCPU(), Go: runtime.Version(), OK: true,
	}
	for _, name := range strings.Split(o.only, ",") {
		name = strings.TrimSpace(name)
		sc, ok := scenarios[name]
		if !ok {
			return nil, fmt.Errorf("-only: no scenario %q (reads, jobs, callbacks)", name)
		}
		st, err := startStack(ctx, o.profile != "")
		if err != nil {
			return nil, err
		}
		res, err := sc(ctx, st, o, sample)
		logSum, cerr := st.close()
		if err = errors.Join(err, cerr); err != nil {
			return nil, fmt.Errorf("%s: %w", name, err)
		}
		res.Name, res.StackLog = name, logSum
		for _, c := range res.Checks {
			if !c.OK && c.Kind == "correctness" {
				rep.OK = false
			}
		}
		rep.Scenario = append(rep.Scenario, res)
	}
	if o.json {
		enc := json.NewEncoder(out)
		enc.SetIndent("", "  ")
		return rep, enc.Encode(rep)
	}
	printReport(out, rep)
	return rep, nil
}

// attack runs one vegeta attack to its end (or ctx's) and returns every result.
func attack(ctx context.Context, atk *vegeta.Attacker, tr vegeta.Targeter, p vegeta.Pacer, d time.Duration, name string) []*vegeta.Result {
	stop := context.AfterFunc(ctx, func() { atk.Stop() })
	defer stop()
	var out []*vegeta.Result
	for r := range atk.Attack(tr, p, d, name) {
		out = append(out, r)
	}
	return out
}

// perSecond is a pacer of rate requests per second (fractional rates too).
func perSecond(rate float64) vegeta.Pacer {
	return vegeta.ConstantPacer{Freq: 1, Per: time.Duration(float64(time.Second) / rate)}
}

// profile starts recording the stack's profiles for d; the returned
// function waits for them and returns the files written.
func (st *stack) profile(ctx context.Context, dir, name string, d time.Duration) func() []string {
	if dir == "" {
		return func() []string { return nil }
	}
	secs := max(1, int(d.Round(time.Second)/time.Second))
	kinds := []string{"profile", "block", "mutex", "trace"}
	done := make(chan string, len(kinds))
	for _, kind := range kinds {
		go func() {
			file, s := kind+".pprof", secs
			switch kind {
			case "profile":
				file = "cpu.pprof"
			case "trace": // a few seconds of execution trace: go tool trace -pprof=syscall|sync
				file, s = "trace.out", min(secs, 5)
			}
			path := filepath.Join(dir, name+"."+file)
			if err := st.fetch(ctx, fmt.Sprintf("/debug/pprof/%s?seconds=%d", kind, s), path); err != nil {
				fmt.Fprintf(os.Stderr, "benchload: %s profile: %v\n", kind, err)
				path = ""
			}
			done <- path
		}()
	}
	return func() []string {
		var paths []string
		for range kinds {
			if p := <-done; p != "" {
				paths = append(paths, p)
			}
		}
		return paths
	}
}

// fetch saves one file from the child's control listener.
func (st *stack) fetch(ctx context.Context, path, file string) error {
	req, err := http.NewRequestWithContext(ctx, "GET", st.Control+path, nil)
	if err != nil {
		return err
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	if resp.StatusCode != 200 {
		return fmt.Errorf("GET %s = %d", path, resp.StatusCode)
	}
	f, err := os.Create(file)
	if err != nil {
		return err
	}
	if _, err := io.Copy(f, resp.Body); err != nil {
		f.Close()
		return err
	}
	return f.Close()
}
