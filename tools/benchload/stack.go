package main

import (
	"bufio"
	"context"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/pprof"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/brightrun/brightrun/shared/localstack"
	"github.com/brightrun/brightrun/shared/pipeline"
	"github.com/brightrun/brightrun/shared/runpodemu"
)

// The stack under load runs in a child process: this binary, started again
// with stackEnv naming its data folder. It prints one stackInfo line on
// stdout when it serves and stops when its stdin closes, so that it never
// outlives the load generator.
const (
	stackEnv   = "BENCHLOAD_STACK_DIR"
	profileEnv = "BENCHLOAD_STACK_PROFILE" // "1": also record block and mutex profiles
	owner      = "dev"
	token      = "dev-token"
)

// stackInfo is the child's ready line.
type stackInfo struct {
	URL            string `json:"url"`
	Control        string `json:"control"`
	CallbackSecret string `json:"callback_secret"` // hex
}

// counts is what the child counts beside the stack (GET /counts on its
// control listener).
type counts struct {
	// Sends is, per job id, how many messages the jobs queue accepted
	// (from the API, and from reconciliation if it re-enqueued a job).
	Sends map[string]int `json:"sends"`
	// Submissions is, per job id, how many runs the dispatcher submitted
	// to the RunPod emulator.
	Submissions map[string]int `json:"submissions"`
	// Enqueued is the stored job's Enqueued flag; Status its status.
	Enqueued map[string]bool   `json:"enqueued"`
	Status   map[string]string `json:"status"`
	// DeadLetters is how many messages reached the dead-letter queue.
	DeadLetters int `json:"dead_letters"`
}

// counter counts queue sends and RunPod submissions per job id.
type counter struct {
	mu          sync.Mutex
	sends       map[string]int
	submissions map[string]int
}

// submitted is the emulator's fault hook, called once per submitted run.
// Every run starts a day late: the emulator's simulated worker never calls
// back during a benchmark, so the only callbacks are the benchmark's.
func (c *counter) submitted(info runpodemu.JobInfo) runpodemu.Fault {
	if info.Spec != nil {
		c.mu.Lock()
		c.submissions[info.Spec.JobID]++
		c.mu.Unlock()
	}
	return runpodemu.Fault{StartDelay: 24 * time.Hour}
}

// countingQueue is the stack's queue, counting the messages it accepts.
type countingQueue struct {
	pipeline.Queue
	c *counter
}

func (q countingQueue) Send(ctx context.Context, m pipeline.Message) (string, error) {
	id, err := q.Queue.Send(ctx, m)
	if err == nil {
		q.c.mu.Lock()
		q.c.sends[m.Attributes["job_id"]]++
		q.c.mu.Unlock()
	}
	return id, err
}

// serveStack is the child: a local stack as `make run` starts it (the
// embedded store, queue, blobs and RunPod emulator, default timings, info
// logs, here to a file), plus a control listener with the counts and pprof.
func serveStack(dir string) error {
	if os.Getenv(profileEnv) == "1" {
		runtime.SetBlockProfileRate(int(10 * time.Microsecond))
		runtime.SetMutexProfileFraction(10)
	}
	logFile, err := os.Create(filepath.Join(dir, "stack.log"))
	if err != nil {
		return err
	}
	defer logFile.Close()
	log := slog.New(slog.NewTextHandler(logFile, &slog.HandlerOptions{Level: slog.LevelInfo}))
	c := &counter{sends: map[string]int{}, submissions: map[string]int{}}
	s, err := localstack.Open(localstack.Config{
		Addr: "127.0.0.1:0", DataDir: filepath.Join(dir, "state"), DevTokens: owner + ":" + token, Log: log,
		Emulator: runpodemu.Config{Faults: c.submitted},
	})
	if err != nil {
		return err
	}
	q := countingQueue{Queue: s.Queue, c: c}
	s.Queue = q // before Start, which builds the services over it
	if err := s.Start(); err != nil {
		s.Close(context.Background())
		return err
	}
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		s.Close(context.Background())
		return err
	}
	mux := http.NewServeMux()
	mux.HandleFunc("GET /counts", func(w http.ResponseWriter, r *http.Request) {
		out, err := countStack(r.Context(), s, c)
		if err != nil {
			http.Error(w, err.Error(), http.StatusInternalServerError)
			return
		}
		w.Header().Set("Content-Type", "application/json")
		json.NewEncoder(w).Encode(out)
	})
	mux.HandleFunc("/debug/pprof/", pprof.Index)
	mux.HandleFunc("/debug/pprof/profile", pprof.Profile)
	mux.HandleFunc("/debug/pprof/trace", pprof.Trace)
	ctl := &http.Server{Handler: mux}
	go ctl.Serve(l)

	ready, _ := json.Marshal(stackInfo{URL: s.URL(), Control: "http://" + l.Addr().String(),
		CallbackSecret: hex.EncodeToString(s.API.CallbackSecret)})
	fmt.Println(string(ready))

	_, _ = io.Copy(io.Discard, os.Stdin) // until the load generator closes it (or dies)
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	ctl.Shutdown(ctx)
	return s.Close(ctx)
}

// countStack reads the counters and every job of the owner from the store.
func countStack(ctx context.Context, s *localstack.Stack, c *counter) (*counts, error) {
	out := &counts{Enqueued: map[string]bool{}, Status: map[string]string{}}
	c.mu.Lock()
	out.Sends = cloneCounts(c.sends)
	out.Submissions = cloneCounts(c.submissions)
	c.mu.Unlock()
	cursor := ""
	for {
		jobs, next, err := s.Store.ListJobs(ctx, owner, pipeline.JobFilter{}, pipeline.Page{Cursor: cursor, Limit: pipeline.MaxPageSize})
		if err != nil {
			return nil, err
		}
		for _, j := range jobs {
			out.Enqueued[j.ID], out.Status[j.ID] = j.Enqueued, string(j.Status)
		}
		if next == "" {
			break
		}
		cursor = next
	}
	dead, err := s.Queue.DeadLetters(ctx, 1000)
	if err != nil {
		return nil, err
	}
	out.DeadLetters = len(dead)
	return out, nil
}

func cloneCounts(m map[string]int) map[string]int {
	out := make(map[string]int, len(m))
	for k, v := range m {
		out[k] = v
	}
	return out
}

// stack is a running child stack, seen from the load generator.
type stack struct {
	stackInfo
	secret []byte
	dir    string
	cmd    *exec.Cmd
	stdin  io.WriteCloser
	done   chan error
}

// startStack starts a fresh stack in a child process over a new temporary
// data folder.
func startStack(ctx context.Context, profile bool) (*stack, error) {
	exe, err := os.Executable()
	if err != nil {
		return nil, err
	}
	dir, err := os.MkdirTemp("", "benchload-")
	if err != nil {
		return nil, err
	}
	cmd := exec.Command(exe)
	cmd.Env = append(os.Environ(), stackEnv+"="+dir)
	if profile {
		cmd.Env = append(cmd.Env, profileEnv+"=1")
	}
	cmd.Stderr = os.Stderr
	stdin, err := cmd.StdinPipe()
	if err != nil {
		os.RemoveAll(dir)
		return nil, err
	}
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		os.RemoveAll(dir)
		return nil, err
	}
	if err := cmd.Start(); err != nil {
		os.RemoveAll(dir)
		return nil, fmt.Errorf("start the stack process: %w", err)
	}
	st := &stack{dir: dir, cmd: cmd, stdin: stdin, done: make(chan error, 1)}
	line := make(chan string, 1)
	go func() {
		sc := bufio.NewScanner(stdout)
		if sc.Scan() {
			line <- sc.Text()
		}
		close(line)
		_, _ = io.Copy(io.Discard, stdout)
		st.done <- cmd.Wait()
	}()
	select {
	case l, ok := <-line:
		if ok && json.Unmarshal([]byte(l), &st.stackInfo) == nil && st.URL != "" {
			st.secret, err = hex.DecodeString(st.CallbackSecret)
			if err == nil {
				return st, nil
			}
		}
		st.close()
		return nil, fmt.Errorf("the stack process did not start (its first line: %q)", l)
	case <-time.After(2 * time.Minute):
		st.close()
		return nil, errors.New("the stack process did not start within 2 minutes")
	case <-ctx.Done():
		st.close()
		return nil, ctx.Err()
	}
}

// logSummary counts the stack log's warnings and errors, with a few of
// their messages.
type logSummary struct {
	Warnings int      `json:"warnings"`
	Errors   int      `json:"errors"`
	Samples  []string `json:"samples,omitempty"`
}

// close stops the child (closing its stdin), waits for it, summarizes its
// log and removes its data folder.
func (st *stack) close() (logSummary, error) {
	st.stdin.Close()
	var err error
	select {
	case err = <-st.done:
	case <-time.After(30 * time.Second):
		st.cmd.Process.Kill()
		err = fmt.Errorf("the stack process did not stop within 30 s: killed (%v)", <-st.done)
	}
	sum := summarizeLog(filepath.Join(st.dir, "stack.log"))
	os.RemoveAll(st.dir)
	return sum, err
}

func summarizeLog(path string) logSummary {
	var sum logSummary
	f, err := os.Open(path)
	if err != nil {
		return sum
	}
	defer f.Close()
	seen := map[string]bool{}
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	for sc.Scan() {
		l := sc.Text()
		switch {
		case strings.Contains(l, "level=WARN"):
			sum.Warnings++
		case strings.Contains(l, "level=ERROR"):
			sum.Errors++
		default:
			continue
		}
		msg := logMessage(l)
		if !seen[msg] && len(sum.Samples) < 5 {
			seen[msg] = true
			sum.Samples = append(sum.Samples, msg)
		}
	}
	return sum
}

// logMessage is the msg of a text log line ("" when it has none).
func logMessage(line string) string {
	_, msg, ok := strings.Cut(line, " msg=")
	if !ok {
		return ""
	}
	if rest, quoted := strings.CutPrefix(msg, `"`); quoted {
		if v, err := strconv.QuotedPrefix(msg); err == nil {
			return v
		}
		return rest
	}
	v, _, _ := strings.Cut(msg, " ")
	return v
}
