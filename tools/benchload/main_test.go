package main

import (
	"bytes"
	"encoding/json"
	"fmt"
	"os"
	"testing"
	"time"

	vegeta "github.com/tsenart/vegeta/v12/lib"
)

// TestMain lets the test binary be the stack process too, as the command is.
func TestMain(m *testing.M) {
	if dir := os.Getenv(stackEnv); dir != "" {
		if err := serveStack(dir); err != nil {
			fmt.Fprintln(os.Stderr, "benchload stack:", err)
			os.Exit(1)
		}
		os.Exit(0)
	}
	os.Exit(m.Run())
}

// Every scenario runs for about a second at a low rate, and every count
// comes out right: nothing lost, nothing enqueued or submitted twice.
func TestEveryScenarioCountsRight(t *testing.T) {
	var out bytes.Buffer
	args := []string{"-json", "-duration", "1s", "-rate", "60", "-job-rate", "20",
		"-callback-duration", "1s", "-callback-rate", "100", "-callback-jobs", "4"}
	rep, err := run(t.Context(), args, &out)
	if err != nil {
		t.Fatalf("run(%q) = %v", args, err)
	}
	var decoded Report
	if err := json.Unmarshal(out.Bytes(), &decoded); err != nil {
		t.Fatalf("the -json output does not decode: %v\n%s", err, out.String())
	}
	if len(decoded.Scenario) != 3 {
		t.Fatalf("the report has %d scenarios, want reads, jobs and callbacks", len(decoded.Scenario))
	}
	if !rep.OK {
		t.Errorf("report OK = false, want every correctness check passed:\n%s", out.String())
	}
	for _, sc := range decoded.Scenario {
		if sc.Overall.Requests == 0 || sc.Overall.Success != 1 {
			t.Errorf("%s: %d requests, success %v; want some, all succeeded (%v)", sc.Name, sc.Overall.Requests, sc.Overall.Success, sc.Overall.Errors)
		}
		for _, c := range sc.Checks {
			if c.Kind == "correctness" && !c.OK {
				t.Errorf("%s: %s = %s, want %s", sc.Name, c.Name, c.Got, c.Want)
			}
		}
	}
	want := map[string]map[string]string{
		"jobs": {"jobs the queue accepted more than once": "0", "jobs submitted to RunPod more than once": "0", "messages in the dead-letter queue": "0"},
		"callbacks": {"acknowledged points lost": "0", "jobs whose progress is not the last step sent": "0",
			"jobs no longer running (state regression)": "0"},
	}
	for _, sc := range decoded.Scenario {
		for name, v := range want[sc.Name] {
			if got := check(sc, name); got == nil || got.Got != v {
				t.Errorf("%s: check %q = %+v, want %s", sc.Name, name, got, v)
			}
		}
	}
}

func check(sc Scenario, name string) *Check {
	for _, c := range sc.Checks {
		if c.Name == name {
			return &c
		}
	}
	return nil
}

func TestSummarize(t *testing.T) {
	start := time.Unix(1000, 0)
	var results []*vegeta.Result
	for i := range 100 {
		r := &vegeta.Result{Timestamp: start.Add(time.Duration(i) * 10 * time.Millisecond), Latency: time.Duration(i+1) * time.Millisecond, Code: 200}
		if i == 99 {
			r.Code, r.Error = 500, "500 Internal Server Error"
		}
		results = append(results, r)
	}
	s := summarize("x", results)
	got := fmt.Sprintf("%d %.2f %s %s %s %.1f", s.Requests, s.Success, s.P50, s.P99, s.Max, s.Rate)
	if want := "100 0.99 50.00ms 99.00ms 100.00ms 101.0"; got != want {
		t.Errorf("summarize = %s, want %s", got, want)
	}
}

func TestStoredCheck(t *testing.T) {
	tests := []struct {
		stored, acked, sent int
		ok                  bool
	}{
		{100, 100, 100, true},
		{99, 100, 100, false},  // an acknowledged point lost
		{101, 100, 100, false}, // a point nobody sent
		{99, 98, 100, true},    // a failed request that was applied anyway
		{97, 98, 100, false},
	}
	for _, tt := range tests {
		if got := storedCheck(tt.stored, tt.acked, tt.sent); got.OK != tt.ok {
			t.Errorf("storedCheck(%d, %d, %d).OK = %v, want %v", tt.stored, tt.acked, tt.sent, got.OK, tt.ok)
		}
	}
}

func TestLogMessage(t *testing.T) {
	tests := []struct{ line, want string }{
		{`time=2026-11-25T18:00:00Z level=WARN msg="callback refused" status=401`, `"callback refused"`},
		{`time=2026-11-25T18:00:00Z level=ERROR msg=boom err=x`, `boom`},
		{`level=ERROR`, ``},
	}
	for _, tt := range tests {
		if got := logMessage(tt.line); got != tt.want {
			t.Errorf("logMessage(%q) = %q, want %q", tt.line, got, tt.want)
		}
	}
}
