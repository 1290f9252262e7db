package schemathesis_test

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/brightrun/brightrun/infra"
	"github.com/brightrun/brightrun/shared/httpapi"
	"github.com/brightrun/brightrun/shared/localstack"
)

// defaultSeed is Schemathesis's seed (BRIGHTRUN_SCHEMATHESIS_SEED tries
// another); the budget is in schemathesis.toml.
const defaultSeed = "20261206"

// TestTheDocumentIsTheAPI runs Schemathesis against the local stack and
// fails on any failure it reports.
func TestTheDocumentIsTheAPI(t *testing.T) {
	bin := schemathesis(t)
	token := "st-" + randomHex(t)
	s, err := localstack.Open(localstack.Config{
		Addr: "127.0.0.1:0", DataDir: t.TempDir(), DevTokens: "dev:" + token,
		Log: slog.New(slog.NewTextHandler(io.Discard, nil)),
		// Datasets from 1 MiB are multipart (hooks.py uploads the parts of
		// those up to 12 MiB), so that the stateful links complete uploads.
		API: httpapi.Config{MultipartThreshold: 1 << 20, PartSize: 5 << 20},
	})
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Start(); err != nil {
		t.Fatal(err)
	}
	defer s.Close(context.Background())
	dataset := readyDataset(t, s.URL(), token)

	seed := defaultSeed
	if v := os.Getenv("BRIGHTRUN_SCHEMATHESIS_SEED"); v != "" {
		seed = v
	}
	dir := t.TempDir()
	here, _ := filepath.Abs(".")
	report, events, dropped := filepath.Join(dir, "report.json"), filepath.Join(dir, "events.ndjson"), filepath.Join(dir, "dropped.txt")
	args := []string{"--config-file", filepath.Join(here, "schemathesis.toml"), "run", s.URL() + "/openapi.json",
		"--checks", "all", "--seed", seed,
		"--no-color", "--output-truncate", "true", "--report", "json,ndjson", "--report-json-path", report, "--report-ndjson-path", events}
	ctx, cancel := context.WithTimeout(t.Context(), 8*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, bin, args...)
	cmd.Dir = dir // whatever it writes lands in the test's folder
	cmd.Env = append(environ(), "BRIGHTRUN_TOKEN="+token, "BRIGHTRUN_DATASET_ID="+dataset,
		"SCHEMATHESIS_HOOKS="+filepath.Join(here, "hooks.py"), "BRIGHTRUN_SCHEMATHESIS_DROPPED="+dropped)
	start := time.Now()
	out, runErr := cmd.CombinedOutput()
	took := time.Since(start)
	t.Logf("%s %s", filepath.Base(bin), strings.Join(args, " "))

	var r struct {
		Version    string  `json:"schemathesis_version"`
		Running    float64 `json:"running_time"`
		ExitCode   int     `json:"exit_code"`
		Complete   bool    `json:"complete"`
		Operations struct {
			Total, Tested, Errored int
		}
		TestCases struct {
			Generated      int `json:"generated"`
			WithFailures   int `json:"with_failures"`
			UniqueFailures int `json:"unique_failures"`
			Errored        int `json:"errored"`
		} `json:"test_cases"`
		Failures []struct {
			Code, Title string
			Count       int
			Operations  []string
		}
		Errors   []any
		Filtered int
	}
	data, err := os.ReadFile(report)
	if err == nil {
		err = json.Unmarshal(data, &r)
	}
	if err != nil {
		t.Fatalf("no report from schemathesis (%v): %v\n%s", runErr, err, out)
	}
	t.Logf("schemathesis %s: %d cases on %d of %d operations in %.1fs (%s with the process), seed %s; %d failures, %d errors; %s",
		r.Version, r.TestCases.Generated, r.Operations.Tested, r.Operations.Total, r.Running, took.Round(100*time.Millisecond),
		seed, r.TestCases.UniqueFailures, len(r.Errors), droppedSummary(dropped, r.Filtered))
	if runErr != nil || r.ExitCode != 0 || !r.Complete || len(r.Failures) > 0 || len(r.Errors) > 0 || r.TestCases.Errored > 0 {
		for _, f := range r.Failures {
			t.Errorf("%s %s ×%d: %v", f.Code, f.Title, f.Count, f.Operations)
		}
		t.Errorf("schemathesis: exit %v, complete %v, %d errors; its report follows\n%s", runErr, r.Complete, len(r.Errors), failuresOf(out))
	}
	if r.Operations.Tested != r.Operations.Total || r.TestCases.Generated < 1000 {
		t.Errorf("schemathesis tested %d of %d operations with %d cases, want all and at least 1000", r.Operations.Tested, r.Operations.Total, r.TestCases.Generated)
	}

	// The stateful phase followed the links of a dataset's and a job's
	// life, each from a successful answer.
	followed := transitions(t, events)
	for _, link := range []string{
		"POST /v1/datasets -> [201] CompleteDatasetUpload -> POST /v1/datasets/{id}/complete",
		"POST /v1/datasets/{id}/complete -> [200] GetDataset -> GET /v1/datasets/{id}",
		"POST /v1/jobs -> [201] GetJob -> GET /v1/jobs/{id}",
		"GET /v1/jobs/{id} -> [200] CancelJob -> POST /v1/jobs/{id}/cancel",
		"POST /v1/jobs -> [201] CancelJob -> POST /v1/jobs/{id}/cancel",
		"POST /v1/jobs/{id}/cancel -> [200] GetJob -> GET /v1/jobs/{id}",
	} {
		if followed[link] == 0 {
			t.Errorf("the stateful phase never followed %s", link)
		}
	}
	t.Logf("stateful links followed: %d of them, %d times", len(followed), sum(followed))
}

// transitions counts the links the stateful phase followed, from the
// ndjson report's ScenarioFinished events.
func transitions(t *testing.T, path string) map[string]int {
	t.Helper()
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("the ndjson report: %v", err)
	}
	out := map[string]int{}
	var walk func(v any)
	walk = func(v any) {
		switch v := v.(type) {
		case map[string]any:
			if tr, ok := v["transition"].(map[string]any); ok {
				if id, ok := tr["id"].(string); ok {
					out[id]++
				}
			}
			for _, e := range v {
				walk(e)
			}
		case []any:
			for _, e := range v {
				walk(e)
			}
		}
	}
	for _, line := range bytes.Split(data, []byte("\n")) {
		var ev map[string]any
		if json.Unmarshal(line, &ev) == nil {
			if _, ok := ev["ScenarioFinished"]; ok {
				walk(ev)
			}
		}
	}
	return out
}

func sum(m map[string]int) int {
	n := 0
	for _, v := range m {
		n += v
	}
	return n
}

// schemathesis finds the pinned Schemathesis: on PATH (the Make targets put
// .cache/bin first), else in this checkout's .cache/bin. It skips the test
// when there is none (fails it with BRIGHTRUN_REQUIRE_TOOLS=1).
func schemathesis(t *testing.T) string {
	t.Helper()
	want := pinned(t)
	var found []string
	candidates := []string{filepath.Join("..", "..", ".cache", "bin", "schemathesis")}
	if p, err := exec.LookPath("schemathesis"); err == nil {
		candidates = append([]string{p}, candidates...)
	}
	for _, p := range candidates {
		out, err := exec.Command(p, "--version").Output()
		if err != nil {
			continue
		}
		if strings.TrimSpace(string(out)) == "schemathesis, version "+want {
			abs, _ := filepath.Abs(p)
			return abs
		}
		found = append(found, fmt.Sprintf("%s is %s", p, strings.TrimSpace(string(out))))
	}
	msg := fmt.Sprintf("schemathesis %s is not installed (make setup, or tools/setup.sh schemathesis)", want)
	if len(found) > 0 {
		msg += "; found " + strings.Join(found, ", ")
	}
	if os.Getenv(infra.RequireToolsEnv) == "1" {
		t.Fatalf("%s; %s=1, so this is a failure", msg, infra.RequireToolsEnv)
	}
	t.Skipf("%s; skipping (%s=1 makes this a failure)", msg, infra.RequireToolsEnv)
	return ""
}

// pinned returns the version requirements.txt pins.
func pinned(t *testing.T) string {
	t.Helper()
	data, err := os.ReadFile("requirements.txt")
	if err != nil {
		t.Fatal(err)
	}
	for _, line := range strings.Split(string(data), "\n") {
		if v, ok := strings.CutPrefix(strings.TrimSpace(line), "schemathesis=="); ok {
			return v
		}
	}
	t.Fatal("requirements.txt pins no schemathesis")
	return ""
}

// environ is the test's environment without proxies (every request goes
// to 127.0.0.1) and without the variables by which Hypothesis detects a CI
// machine and changes its settings: CI runs the same cases as a laptop.
func environ() []string {
	ci := map[string]bool{"CI": true, "__TOX_ENVIRONMENT_VARIABLE_ORIGINAL_CI": true, "TF_BUILD": true, "bamboo.buildKey": true,
		"BUILDKITE": true, "CIRCLECI": true, "CIRRUS_CI": true, "CODEBUILD_BUILD_ID": true, "GITHUB_ACTIONS": true,
		"GITLAB_CI": true, "HEROKU_TEST_RUN_ID": true, "TEAMCITY_VERSION": true}
	var env []string
	for _, kv := range os.Environ() {
		name, _, _ := strings.Cut(kv, "=")
		if !ci[name] && !strings.HasSuffix(strings.ToUpper(name), "_PROXY") && !strings.HasPrefix(name, "SCHEMATHESIS_") {
			env = append(env, kv)
		}
	}
	return env
}

// readyDataset uploads the sample dataset and waits until it is ready.
func readyDataset(t *testing.T, base, token string) string {
	t.Helper()
	sample, err := os.ReadFile(filepath.Join("..", "..", "testdata", "datasets", "sample.jsonl"))
	if err != nil {
		t.Fatal(err)
	}
	var created struct {
		Dataset struct{ ID string }
		Upload  struct {
			Request struct {
				Method, URL string
				Headers     map[string]string
			}
		}
	}
	call(t, base, token, "POST", "/v1/datasets", fmt.Sprintf(`{"name":"sample","size_bytes":%d}`, len(sample)), 201, &created)
	req, _ := http.NewRequest(created.Upload.Request.Method, created.Upload.Request.URL, bytes.NewReader(sample))
	for k, v := range created.Upload.Request.Headers {
		req.Header.Set(k, v)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != 200 {
		t.Fatalf("upload the sample: %s %s = %d", req.Method, req.URL, resp.StatusCode)
	}
	var d struct{ Status string }
	for deadline := time.Now().Add(time.Minute); d.Status != "ready"; time.Sleep(50 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("the sample dataset is %q after a minute, want ready", d.Status)
		}
		call(t, base, token, "GET", "/v1/datasets/"+created.Dataset.ID, "", 200, &d)
	}
	return created.Dataset.ID
}

func call(t *testing.T, base, token, method, path, body string, want int, out any) {
	t.Helper()
	req, _ := http.NewRequest(method, base+path, strings.NewReader(body))
	req.Header.Set("Authorization", "Bearer "+token)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	data, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != want {
		t.Fatalf("%s %s = %d %s, want %d", method, path, resp.StatusCode, data, want)
	}
	if err := json.Unmarshal(data, out); err != nil {
		t.Fatalf("%s %s: %v", method, path, err)
	}
}

func randomHex(t *testing.T) string {
	b := make([]byte, 16)
	if _, err := rand.Read(b); err != nil {
		t.Fatal(err)
	}
	return hex.EncodeToString(b)
}

// droppedSummary says how many failures hooks.py dropped, by rule.
func droppedSummary(path string, filtered int) string {
	data, _ := os.ReadFile(path)
	counts := map[string]int{}
	for _, line := range strings.Split(strings.TrimSpace(string(data)), "\n") {
		if rule, _, ok := strings.Cut(line, " "); ok {
			counts[rule]++
		}
	}
	var parts []string
	for rule, n := range counts {
		parts = append(parts, fmt.Sprintf("%s %d", rule, n))
	}
	sort.Strings(parts)
	return fmt.Sprintf("%d refusals explained by the document's prose rules (hooks.py: %s)", filtered, strings.Join(parts, ", "))
}

// failuresOf is Schemathesis's output from its failures on.
func failuresOf(out []byte) string {
	s := string(out)
	if i := strings.Index(s, "FAILURES"); i >= 0 {
		s = s[max(0, strings.LastIndex(s[:i], "\n")):]
	}
	const limit = 30000
	if len(s) > limit {
		s = s[:limit] + "\n… (cut)"
	}
	return s
}
