package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
)

// fakeJobAPI is RunPod's job API for one endpoint (api.runpod.ai/v2), as
// RUNPOD.md and shared/runpod document it: POST /v2/{endpoint}/run with
// {input, policy} → {id, status: IN_QUEUE}; GET /v2/{endpoint}/status/{id}
// → {id, status, delayTime, executionTime, output, error}; POST
// /v2/{endpoint}/cancel/{id} → {id, status: CANCELLED}; Bearer
// authentication. Each /status answers the next entry of script (the last
// one repeats); onStatus sees the call's number.
type fakeJobAPI struct {
	t        *testing.T
	srv      *httptest.Server
	script   []map[string]any
	onStatus func(n int)

	mu       sync.Mutex
	runBody  map[string]any
	statuses int
	cancels  []string
	unknown  bool // /status answers 404
}

const testEndpoint = "ep123abc"

func newFakeJobAPI(t *testing.T, script ...map[string]any) *fakeJobAPI {
	t.Helper()
	f := &fakeJobAPI{t: t, script: script}
	f.srv = httptest.NewServer(http.HandlerFunc(f.serve))
	t.Cleanup(f.srv.Close)
	return f
}

func (f *fakeJobAPI) serve(w http.ResponseWriter, r *http.Request) {
	if r.Header.Get("Authorization") != "Bearer "+testKey {
		w.WriteHeader(http.StatusUnauthorized)
		return
	}
	reply := func(status int, v any) {
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(status)
		_ = json.NewEncoder(w).Encode(v)
	}
	prefix := "/v2/" + testEndpoint
	path, ok := strings.CutPrefix(r.URL.Path, prefix)
	if !ok {
		f.t.Errorf("%s %s: not this endpoint's job API", r.Method, r.URL.Path)
		reply(http.StatusNotFound, map[string]string{"error": "not found"})
		return
	}
	f.mu.Lock()
	switch {
	case r.Method == http.MethodPost && path == "/run":
		var body map[string]any
		if err := json.NewDecoder(r.Body).Decode(&body); err != nil {
			f.mu.Unlock()
			reply(http.StatusBadRequest, map[string]string{"error": err.Error()})
			return
		}
		f.runBody = body
		f.mu.Unlock()
		reply(http.StatusOK, map[string]any{"id": "job-1", "status": "IN_QUEUE"})
	case r.Method == http.MethodGet && path == "/status/job-1":
		f.statuses++
		n, unknown := f.statuses, f.unknown
		st := f.script[min(n, len(f.script))-1]
		f.mu.Unlock()
		if f.onStatus != nil {
			f.onStatus(n)
		}
		if unknown {
			reply(http.StatusNotFound, map[string]string{"error": "request does not exist"})
			return
		}
		body := map[string]any{"id": "job-1", "delayTime": 2100, "executionTime": 0}
		for k, v := range st {
			body[k] = v
		}
		reply(http.StatusOK, body)
	case r.Method == http.MethodPost && path == "/cancel/job-1":
		f.cancels = append(f.cancels, "job-1")
		f.mu.Unlock()
		reply(http.StatusOK, map[string]any{"id": "job-1", "status": "CANCELLED"})
	default:
		f.mu.Unlock()
		f.t.Errorf("prepare-model called %s %s, which it has no reason to", r.Method, r.URL.Path)
		reply(http.StatusNotFound, map[string]string{"error": "not found"})
	}
}

func prepareModel(ctx context.Context, f *fakeJobAPI, env map[string]string, args ...string) (stdout, stderr string, err error) {
	var out, errOut bytes.Buffer
	base := []string{"prepare-model", "--job-api-url", f.srv.URL + "/v2", "--endpoint", testEndpoint,
		"--poll-interval", "1ms", "--max-poll-interval", "5ms"}
	err = run(ctx, append(base, args...), func(k string) string { return env[k] }, &out, &errOut)
	return out.String(), errOut.String(), err
}

func status(s string, output any, extra ...any) map[string]any {
	m := map[string]any{"status": s}
	if output != nil {
		m["output"] = output
	}
	for i := 0; i+1 < len(extra); i += 2 {
		m[extra[i].(string)] = extra[i+1]
	}
	return m
}

func TestPrepareModelSubmitsThePrepareJobAndWaitsForItsEnd(t *testing.T) {
	progress := func(stage string, files, total int, done, all int64) map[string]any {
		return map[string]any{"stage": stage, "files_done": files, "files_total": total, "bytes_done": done, "bytes_total": all, "elapsed_seconds": 12.5}
	}
	summary := map[string]any{"status": "prepared", "message": "Prepared /runpod-volume/models/Qwen/Qwen3-Next-80B-A3B-Instruct-bnb-nf4: 10 files, 45.20 GB.",
		"out": "/runpod-volume/models/Qwen/Qwen3-Next-80B-A3B-Instruct-bnb-nf4", "files": 10, "bytes": 45_200_000_000, "created_at": "2026-12-06T01:02:03+00:00"}
	workerErr := "model_load: The source checkpoint /runpod-volume/models/Qwen/Qwen3-Next-80B-A3B-Instruct does not exist."
	advice := `Download the checkpoint to that directory first (docs/deploy.md, "2. The network volume and the base model"), then run the preparation again.`

	tests := []struct {
		name        string
		script      []map[string]any
		cancelAt    int // cancel the context at this /status call (0: never)
		unknown     bool
		wantErr     []string // substrings of the error; none: success
		wantCancels int
		wantStdout  []string
		wantStderr  []string
		errIs       error
	}{
		{
			name: "a job that completes prints its progress and the worker's summary",
			script: []map[string]any{
				status("IN_QUEUE", nil),
				status("IN_PROGRESS", progress("quantize", 3, 41, 12_000_000_000, 163_000_000_000)),
				status("IN_PROGRESS", progress("save", 0, 0, 0, 0)),
				status("IN_PROGRESS", progress("hash_output", 10, 10, 45_200_000_000, 45_200_000_000)),
				status("COMPLETED", summary, "executionTime", 1_800_000),
			},
			wantStdout: []string{"Prepared /runpod-volume/models/Qwen/Qwen3-Next-80B-A3B-Instruct-bnb-nf4: 10 files, 45.20 GB.", "10 files, 45.2 GB, created 2026-12-06T01:02:03+00:00"},
			wantStderr: []string{"submitted RunPod job job-1", "IN_QUEUE: waiting for a worker", "IN_PROGRESS quantize: 3/41 files, 12.0/163.0 GB",
				"IN_PROGRESS save", "IN_PROGRESS hash_output: 10/10 files, 45.2/45.2 GB", "COMPLETED in 30m0s of execution"},
		},
		{
			name:       "a copy that was already there completes as a no-op",
			script:     []map[string]any{status("COMPLETED", map[string]any{"status": "exists", "message": "… is already prepared (found complete, created 2026-12-01T00:00:00+00:00): nothing to do.", "out": "/x", "files": 10, "bytes": 1})},
			wantStdout: []string{"already prepared", "nothing to do"},
		},
		{
			name:       "a job that fails returns the worker's error and advice",
			script:     []map[string]any{status("IN_PROGRESS", progress("check", 0, 0, 0, 0)), status("FAILED", map[string]any{"code": "model_load", "advice": advice}, "error", workerErr)},
			wantErr:    []string{"RunPod job job-1 FAILED", workerErr, advice},
			wantStderr: []string{"IN_PROGRESS check"},
		},
		{
			name:    "a job that runs past its execution timeout says which flag to raise",
			script:  []map[string]any{status("IN_PROGRESS", progress("quantize", 1, 41, 1, 163)), status("TIMED_OUT", nil)},
			wantErr: []string{"TIMED_OUT", "execution timeout of 3h0m0s", "--execution-timeout"},
		},
		{
			name:    "a job cancelled on RunPod is an error",
			script:  []map[string]any{status("CANCELLED", nil)},
			wantErr: []string{"CANCELLED", "cancelled on RunPod"},
		},
		{
			name:        "an interrupt cancels the RunPod job",
			script:      []map[string]any{status("IN_PROGRESS", progress("quantize", 1, 41, 1, 163))},
			cancelAt:    3,
			wantErr:     []string{"interrupted", "job-1"},
			errIs:       context.Canceled,
			wantCancels: 1,
			wantStderr:  []string{"cancelled RunPod job job-1"},
		},
		{
			name:    "a job RunPod no longer knows is reported, not waited for forever",
			script:  []map[string]any{status("IN_QUEUE", nil)},
			unknown: true,
			wantErr: []string{"RunPod no longer knows job job-1", "run the command again"},
		},
		{
			name:    "a completed job whose output is no summary points at an old worker image",
			script:  []map[string]any{status("COMPLETED", map[string]any{"status": "completed", "job_id": "job_x"})},
			wantErr: []string{"unexpected output", "worker image"},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f := newFakeJobAPI(t, tt.script...)
			f.unknown = tt.unknown
			ctx, cancel := context.WithCancel(context.Background())
			defer cancel()
			if tt.cancelAt > 0 {
				f.onStatus = func(n int) {
					if n == tt.cancelAt {
						cancel()
					}
				}
			}
			stdout, stderr, err := prepareModel(ctx, f, withKey)

			if len(tt.wantErr) == 0 && err != nil {
				t.Fatalf("prepare-model = %v, want success\nstderr:\n%s", err, stderr)
			}
			if len(tt.wantErr) > 0 {
				if err == nil {
					t.Fatalf("prepare-model succeeded, want an error containing %q\nstdout:\n%s", tt.wantErr, stdout)
				}
				for _, w := range tt.wantErr {
					if !strings.Contains(err.Error(), w) {
						t.Errorf("error = %q, want it to contain %q", err, w)
					}
				}
			}
			if tt.errIs != nil && !errors.Is(err, tt.errIs) {
				t.Errorf("errors.Is(%v, %v) = false", err, tt.errIs)
			}
			for _, w := range tt.wantStdout {
				if !strings.Contains(stdout, w) {
					t.Errorf("stdout lacks %q:\n%s", w, stdout)
				}
			}
			for _, w := range tt.wantStderr {
				if !strings.Contains(stderr, w) {
					t.Errorf("stderr lacks %q:\n%s", w, stderr)
				}
			}
			f.mu.Lock()
			defer f.mu.Unlock()
			if len(f.cancels) != tt.wantCancels {
				t.Errorf("sent %d /cancel requests, want %d", len(f.cancels), tt.wantCancels)
			}
			input, _ := f.runBody["input"].(map[string]any)
			want := map[string]any{"action": "prepare_model", "hub_id": "Qwen/Qwen3-Next-80B-A3B-Instruct",
				"source": "/runpod-volume/models/Qwen/Qwen3-Next-80B-A3B-Instruct",
				"out":    "/runpod-volume/models/Qwen/Qwen3-Next-80B-A3B-Instruct-bnb-nf4"}
			if got, _ := json.Marshal(input); string(got) != mustJSON(t, want) {
				t.Errorf("/run input = %s, want %s", got, mustJSON(t, want))
			}
			policy, _ := f.runBody["policy"].(map[string]any)
			if policy["executionTimeout"] != float64(3*60*60*1000) || policy["ttl"] != float64(24*60*60*1000) {
				t.Errorf("/run policy = %v, want executionTimeout 3 h and ttl 24 h in ms", policy)
			}
		})
	}
}

func mustJSON(t *testing.T, v any) string {
	t.Helper()
	b, err := json.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

func TestPrepareModelFlags(t *testing.T) {
	done := status("COMPLETED", map[string]any{"status": "prepared", "message": "ok", "out": "/x"})

	t.Run("force, paths and the execution timeout reach the job", func(t *testing.T) {
		f := newFakeJobAPI(t, done)
		_, stderr, err := prepareModel(context.Background(), f, withKey, "--force", "--execution-timeout", "30h",
			"--source", "/runpod-volume/models/mine/bf16", "--out", "/runpod-volume/models/mine/bf16-bnb-nf4")
		if err != nil {
			t.Fatalf("%v\n%s", err, stderr)
		}
		in, policy := f.runBody["input"].(map[string]any), f.runBody["policy"].(map[string]any)
		if in["force"] != true || in["source"] != "/runpod-volume/models/mine/bf16" || in["out"] != "/runpod-volume/models/mine/bf16-bnb-nf4" {
			t.Errorf("input = %v", in)
		}
		if policy["executionTimeout"] != float64(30*60*60*1000) || policy["ttl"] != float64(31*60*60*1000) {
			t.Errorf("policy = %v, want a ttl that covers the execution timeout", policy)
		}
	})

	for _, tc := range []struct {
		name string
		args []string
		env  map[string]string
		want string
	}{
		{"no endpoint", []string{"--endpoint", ""}, withKey, "--endpoint is required"},
		{"an unknown model", []string{"--model", "acme/none"}, withKey, `unknown base model "acme/none"`},
		{"a model without a 4-bit copy in the catalog", []string{"--model", "Qwen/Qwen3-30B-A3B-Instruct-2507"}, withKey, "no pre-quantized copy"},
		{"the same source and copy", []string{"--source", "/runpod-volume/models/a", "--out", "/runpod-volume/models/a"}, withKey, "both"},
		{"an execution timeout RunPod refuses", []string{"--execution-timeout", "200h"}, withKey, "--execution-timeout"},
		{"no API key", nil, nil, "RUNPOD_API_KEY is not set"},
		{"a stray argument", []string{"now"}, withKey, "unexpected arguments"},
	} {
		t.Run(tc.name+" is refused before anything is sent", func(t *testing.T) {
			f := newFakeJobAPI(t, done)
			_, _, err := prepareModel(context.Background(), f, tc.env, tc.args...)
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Errorf("prepare-model %q = %v, want an error containing %q", tc.args, err, tc.want)
			}
			if f.runBody != nil {
				t.Errorf("a job was submitted: %v", f.runBody)
			}
		})
	}
}
