package localstack_test

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"os"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/brightrun/brightrun/shared/localstack"
	"github.com/brightrun/brightrun/shared/pipeline"
	"github.com/brightrun/brightrun/shared/reconcile"
	"github.com/brightrun/brightrun/shared/runpodemu"
)

// startWith starts a stack whose emulator runs at speed steps/s with faults.
func startWith(t *testing.T, speed float64, faults map[string]runpodemu.Fault) *localstack.Stack {
	t.Helper()
	cfg := localstack.Config{
		Addr: "127.0.0.1:0", DataDir: t.TempDir(), DevTokens: "dev:dev-token",
		Log:                slog.New(slog.NewTextHandler(io.Discard, nil)),
		Emulator:           runpodemu.Config{StepsPerSecond: speed, WebhookRetryInterval: 100 * time.Millisecond},
		DispatchVisibility: time.Second, ReconcileEvery: 200 * time.Millisecond,
	}
	if faults != nil {
		cfg.Emulator.Faults = runpodemu.FaultsByJobID(faults)
	}
	s, err := localstack.Open(cfg)
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close(context.Background()) })
	return s
}

// readyDataset uploads the sample dataset and waits until it is ready.
func readyDataset(t *testing.T, s *localstack.Stack) string {
	t.Helper()
	return readyDatasetAs(t, s, "dev-token")
}

// readyDatasetAs uploads the sample dataset as the token's owner and
// waits until it is ready.
func readyDatasetAs(t *testing.T, s *localstack.Stack, token string) string {
	t.Helper()
	sample, err := os.ReadFile("../../testdata/datasets/sample.jsonl")
	if err != nil {
		t.Fatal(err)
	}
	id, status := uploadAs(t, s, token, "sample", sample)
	if status != "ready" {
		t.Fatalf("the sample dataset ended %s, want ready", status)
	}
	return id
}

// uploadAs uploads content as a dataset of the token's owner with the
// presigned request the API hands out, and waits until it is validated;
// it returns the dataset's id and status (ready or invalid).
func uploadAs(t *testing.T, s *localstack.Stack, token, name string, content []byte) (string, string) {
	t.Helper()
	var created struct {
		Dataset struct{ ID string }
		Upload  struct {
			Request struct {
				URL     string
				Headers map[string]string
			}
		}
	}
	if status := callAs(t, token, "POST", s.URL()+"/v1/datasets", fmt.Sprintf(`{"name":%q,"size_bytes":%d}`, name, len(content)), &created); status != 201 {
		t.Fatalf("POST /v1/datasets = %d", status)
	}
	req, _ := http.NewRequest("PUT", created.Upload.Request.URL, bytes.NewReader(content))
	for k, v := range created.Upload.Request.Headers {
		if !strings.EqualFold(k, "Content-Length") {
			req.Header.Set(k, v) // the signed headers a client must send
		}
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	var d struct{ Status string }
	waitFor(t, 30*time.Second, func() bool {
		callAs(t, token, "GET", s.URL()+"/v1/datasets/"+created.Dataset.ID, "", &d)
		return d.Status == "ready" || d.Status == "invalid"
	}, "the dataset validated")
	return created.Dataset.ID, d.Status
}

func waitFor(t *testing.T, limit time.Duration, ok func() bool, what string) {
	t.Helper()
	deadline := time.Now().Add(limit)
	for !ok() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %s waiting for %s", limit, what)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

type job struct {
	ID       string
	Status   string
	Attempt  int
	Progress *struct {
		Step       int
		TotalSteps int `json:"total_steps"`
	}
	Cost *struct {
		BilledSeconds float64 `json:"billed_seconds"`
		USD           float64
		EstimatedUSD  float64 `json:"estimated_usd"`
	}
	Error *struct{ Code, Message, Advice string }
}

func createJob(t *testing.T, s *localstack.Stack, dataset, body string) job {
	t.Helper()
	var j job
	if status := call(t, "POST", s.URL()+"/v1/jobs", fmt.Sprintf(`{"dataset_id":%q%s}`, dataset, body), &j); status != 201 {
		t.Fatalf("POST /v1/jobs = %d", status)
	}
	return j
}

func getJob(t *testing.T, s *localstack.Stack, id string) job {
	t.Helper()
	var j job
	call(t, "GET", s.URL()+"/v1/jobs/"+id, "", &j)
	return j
}

func TestAJobRunsToAnAdapter(t *testing.T) {
	s := startWith(t, 200, nil)
	ds := readyDataset(t, s)
	j := createJob(t, s, ds, `,"preset":"fast","hyperparameters":{"batch_size":1,"gradient_accumulation":1}`)
	waitFor(t, 30*time.Second, func() bool { j = getJob(t, s, j.ID); return j.Status == "completed" || j.Status == "failed" }, "the job to end")
	if j.Status != "completed" || j.Cost == nil || j.Cost.EstimatedUSD <= 0 || j.Progress == nil || j.Progress.Step != j.Progress.TotalSteps {
		t.Fatalf("job = %+v (progress %+v, cost %+v, error %+v), want completed with a cost beside its estimate and progress at the last step", j, j.Progress, j.Cost, j.Error)
	}
	var metrics struct{ Metrics []struct{ Step int } }
	call(t, "GET", s.URL()+"/v1/jobs/"+j.ID+"/metrics?limit=100", "", &metrics)
	var events struct{ Events []struct{ Type string } }
	call(t, "GET", s.URL()+"/v1/jobs/"+j.ID+"/events?limit=100", "", &events)
	var notes struct {
		Notifications []struct{ Type, JobID string }
	}
	// The job's status is written before its notification: wait for it.
	waitFor(t, 10*time.Second, func() bool {
		call(t, "GET", s.URL()+"/v1/notifications", "", &notes)
		return len(notes.Notifications) > 0
	}, "the completion notice")
	if len(metrics.Metrics) == 0 || len(events.Events) < 5 || len(notes.Notifications) != 1 || notes.Notifications[0].Type != "job_completed" {
		t.Errorf("%d metric points, %d events, notifications %+v; want points, the event log and one job_completed", len(metrics.Metrics), len(events.Events), notes.Notifications)
	}
	var arts struct {
		Artifacts []struct {
			Name      string
			SizeBytes int64 `json:"size_bytes"`
			SHA256    string
			Download  struct{ URL string }
		}
	}
	call(t, "GET", s.URL()+"/v1/jobs/"+j.ID+"/artifacts", "", &arts)
	if len(arts.Artifacts) != 2 {
		t.Fatalf("artifacts = %+v, want adapter_config.json and adapter_model.safetensors", arts.Artifacts)
	}
	for _, a := range arts.Artifacts {
		resp, err := http.Get(a.Download.URL)
		if err != nil {
			t.Fatal(err)
		}
		data, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		sum := sha256.Sum256(data)
		if resp.StatusCode != 200 || int64(len(data)) != a.SizeBytes || hex.EncodeToString(sum[:]) != a.SHA256 {
			t.Errorf("download of %s = %d, %d bytes, sha256 %x; want 200, %d bytes, %s", a.Name, resp.StatusCode, len(data), sum, a.SizeBytes, a.SHA256)
		}
		if a.Name == "adapter_model.safetensors" {
			if _, _, err := runpodemu.ParseSafetensors(data); err != nil {
				t.Errorf("the adapter is not a safetensors file: %v", err)
			}
		}
	}
}

func TestAJobCancelledMidRunStops(t *testing.T) {
	s := startWith(t, 5, nil)
	ds := readyDataset(t, s)
	j := createJob(t, s, ds, `,"preset":"quality","hyperparameters":{"batch_size":1,"gradient_accumulation":1}`)
	waitFor(t, 20*time.Second, func() bool { j = getJob(t, s, j.ID); return j.Progress != nil && j.Progress.Step > 0 }, "training to start")
	if status := call(t, "POST", s.URL()+"/v1/jobs/"+j.ID+"/cancel", "", &j); status != 200 || j.Status != "cancel_requested" {
		t.Fatalf("cancel = %d %s, want cancel_requested", status, j.Status)
	}
	waitFor(t, 15*time.Second, func() bool { j = getJob(t, s, j.ID); return j.Status == "cancelled" }, "the job to be cancelled")
	step := j.Progress.Step
	time.Sleep(time.Second)
	if j = getJob(t, s, j.ID); j.Progress.Step != step || j.Status != "cancelled" {
		t.Errorf("after cancelled the job moved on to step %d (%s), want it stopped at %d", j.Progress.Step, j.Status, step)
	}
}

// createKeyed creates a job with an Idempotency-Key, so that its id is
// known before the request (faults are injected by job id).
func createKeyed(t *testing.T, s *localstack.Stack, key, dataset, body string) job {
	t.Helper()
	req, _ := http.NewRequest("POST", s.URL()+"/v1/jobs", strings.NewReader(fmt.Sprintf(`{"dataset_id":%q%s}`, dataset, body)))
	req.Header.Set("Authorization", "Bearer dev-token")
	req.Header.Set("Idempotency-Key", key)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var j job
	if err := json.NewDecoder(resp.Body).Decode(&j); err != nil || resp.StatusCode != 201 {
		t.Fatalf("POST /v1/jobs = %d (%v)", resp.StatusCode, err)
	}
	return j
}

// The fault matrix: each fault the GPU side can throw ends in the right
// state, and the table of outcomes is printed.
func TestFaultMatrix(t *testing.T) {
	id := func(key string) string { return pipeline.IdempotentJobID("dev", key) }
	faults := map[string]runpodemu.Fault{
		id("oom"):        {FailAtStep: 3, FailCode: "oom"},
		id("nan"):        {NaNAtStep: 2},
		id("crash-once"): {CrashAtStep: 2, Crashes: 1},
		id("crash-loop"): {CrashAtStep: 2, Crashes: 1000},
		id("upload"):     {FailUpload: true},
		id("no-webhook"): {DropWebhook: true},
		// Two epochs of 10 steps: a checkpoint at step 10 (the first
		// epoch's end) comes before the crash at step 14.
		id("crash-resume"): {CrashAtStep: 14, Crashes: 1},
		id("expired-urls"): {ExpireURLs: true},
		id("runpod-retry"): {CrashAtStep: 14, Crashes: 2},
	}
	s := startWithReconcile(t, 100, faults)
	ds := readyDataset(t, s)
	cases := []faultCase{
		{key: "oom", fault: "worker out of memory at step 3", status: "failed", code: "oom"},
		{key: "nan", fault: "NaN loss at step 2", status: "failed", code: "nan_loss"},
		{key: "crash-once", fault: "worker crash at step 2, RunPod re-runs it once", status: "completed"},
		{key: "crash-loop", fault: "worker crashes at every run (crash loop)", status: "failed", code: "crash_loop"},
		{key: "upload", fault: "artifact uploads fail", status: "failed", code: "upload"},
		{key: "no-webhook", fault: "RunPod's completion webhook dropped", status: "completed"},
		{key: "rate-limited", fault: "RunPod answers 429 to the next 3 calls", status: "completed", before: func() { s.Emulator.RateLimit(3) }},
		{key: "outage", fault: "RunPod answers 503 to the next 4 calls", status: "completed", before: func() { s.Emulator.InjectAPIErrors(4, 503, 0) }},
		{key: "crash-resume", fault: "worker crash at step 14, resumed from its checkpoint", status: "completed", epochs: 2,
			check: func(t *testing.T, j job) string { return resumedRun(t, s, j, 10, 2) }},
		{key: "expired-urls", fault: "upload URL expired mid-run", status: "completed",
			check: func(t *testing.T, j job) string { return storedCheckpoints(t, s, j) }},
		{key: "runpod-retry", fault: "RunPod retry of the same run", status: "completed", epochs: 2,
			check: func(t *testing.T, j job) string { return resumedRun(t, s, j, 10, 3) }},
	}
	for i, c := range cases {
		if i >= len(faultNames) || faultNames[i] != c.fault || len(cases) != len(faultNames) {
			t.Fatalf("faultNames and the matrix's cases differ at %d (%q): keep them together", i, c.fault)
		}
	}
	var table strings.Builder
	fmt.Fprintf(&table, "%-52s | %-34s | %s\n", "fault", "what happened", "result")
	for _, c := range cases {
		t.Run(c.fault, func(t *testing.T) {
			if c.before != nil {
				c.before()
			}
			epochs := ""
			if c.epochs > 0 {
				epochs = fmt.Sprintf(`,"epochs":%d`, c.epochs)
			}
			j := createKeyed(t, s, c.key, ds, `,"preset":"fast","hyperparameters":{"batch_size":1,"gradient_accumulation":4`+epochs+`}`)
			waitFor(t, 40*time.Second, func() bool {
				j = getJob(t, s, j.ID)
				return j.Status == "completed" || j.Status == "failed" || j.Status == "cancelled"
			}, c.fault+": the job to end")
			got := j.Status
			if j.Error != nil {
				got += " (" + j.Error.Code + ")"
			}
			pass := j.Status == c.status && (c.code == "" || j.Error != nil && j.Error.Code == c.code && j.Error.Advice != "")
			verdict := "pass"
			switch {
			case !pass:
				verdict = "FAIL"
				var evs struct {
					Events []struct{ Type, Message string }
				}
				call(t, "GET", s.URL()+"/v1/jobs/"+j.ID+"/events?limit=100", "", &evs)
				t.Errorf("%s: job ended %s %+v, want %s %s with advice; events %+v", c.fault, j.Status, j.Error, c.status, c.code, evs.Events)
			case c.check != nil:
				if problem := c.check(t, j); problem != "" {
					verdict = "FAIL"
					t.Errorf("%s: %s", c.fault, problem)
				}
			}
			fmt.Fprintf(&table, "%-52s | %-34s | %s\n", c.fault, got, verdict)
		})
	}
	t.Logf("fault matrix:\n%s", table.String())
}

type faultCase struct {
	key, fault, status, code string
	before                   func()
	epochs                   int // the fast preset's 1 unless set
	// check looks further at a job that ended as it should; it returns
	// what is wrong, or "".
	check func(t *testing.T, j job) string
}

// faultNames are the matrix's faults, for TestReliabilityPageIsCurrent.
var faultNames = []string{
	"worker out of memory at step 3", "NaN loss at step 2", "worker crash at step 2, RunPod re-runs it once",
	"worker crashes at every run (crash loop)", "artifact uploads fail", "RunPod's completion webhook dropped",
	"RunPod answers 429 to the next 3 calls", "RunPod answers 503 to the next 4 calls",
	"worker crash at step 14, resumed from its checkpoint", "upload URL expired mid-run", "RunPod retry of the same run",
}

// jobEvent is one event of a job's log.
type jobEvent struct {
	Type    string
	Attempt int
	Data    json.RawMessage
	Time    time.Time
}

// completedEvents waits for a completed job's completed event (the job's
// status is written before its event log) and returns the log.
func completedEvents(t *testing.T, s *localstack.Stack, j job) []jobEvent {
	t.Helper()
	var evs struct{ Events []jobEvent }
	waitFor(t, 10*time.Second, func() bool {
		call(t, "GET", s.URL()+"/v1/jobs/"+j.ID+"/events?limit=100", "", &evs)
		return slices.ContainsFunc(evs.Events, func(e jobEvent) bool { return e.Type == "completed" })
	}, "the completed event")
	return evs.Events
}

// resumedRun checks a job whose worker crashed and was run again by RunPod
// (runs runs of one attempt): the last run resumed from the checkpoint of
// step from, so the metric series never went back: no point at or before
// that step was sent again by the resumed run; and the job lists its
// checkpoints.
func resumedRun(t *testing.T, s *localstack.Stack, j job, from int64, runs int) string {
	t.Helper()
	if j.Attempt != 1 {
		return fmt.Sprintf("attempt %d, want 1: RunPod re-runs the same attempt", j.Attempt)
	}
	evs := completedEvents(t, s, j)
	var starts []time.Time
	var done struct {
		Steps   int64
		Metrics struct {
			ResumedFromStep int64  `json:"resumed_from_step"`
			ResumeSkipped   string `json:"resume_skipped"`
		}
	}
	for _, e := range evs {
		switch e.Type {
		case "started":
			starts = append(starts, e.Time)
		case "completed":
			_ = json.Unmarshal(e.Data, &done)
		}
	}
	if len(starts) != runs || done.Metrics.ResumedFromStep != from {
		return fmt.Sprintf("%d runs, the last resumed from step %d (%s); want %d runs, resumed from step %d",
			len(starts), done.Metrics.ResumedFromStep, done.Metrics.ResumeSkipped, runs, from)
	}
	var metrics struct {
		Metrics []struct {
			Attempt, Step int
			Time          time.Time
		}
	}
	call(t, "GET", s.URL()+"/v1/jobs/"+j.ID+"/metrics?limit=100", "", &metrics)
	last, resumedAt := 0, starts[len(starts)-1]
	for _, m := range metrics.Metrics {
		switch {
		case m.Attempt != 1:
			return fmt.Sprintf("a metric point of attempt %d, want only attempt 1", m.Attempt)
		case m.Step <= last:
			return fmt.Sprintf("the metric series goes back from step %d to %d", last, m.Step)
		case int64(m.Step) <= from && !m.Time.Before(resumedAt):
			return fmt.Sprintf("step %d was reported again by the resumed run (at %s, it started at %s): it restarted from step 1",
				m.Step, m.Time.Format(time.RFC3339Nano), resumedAt.Format(time.RFC3339Nano))
		}
		last = m.Step
	}
	if int64(last) != done.Steps {
		return fmt.Sprintf("the metric series ends at step %d, the run at %d", last, done.Steps)
	}
	return storedCheckpoints(t, s, j)
}

// storedCheckpoints checks that the job lists a stored checkpoint.
func storedCheckpoints(t *testing.T, s *localstack.Stack, j job) string {
	t.Helper()
	var arts struct {
		Checkpoints []struct {
			Step  int64
			Files []struct{ Name string }
		}
	}
	call(t, "GET", s.URL()+"/v1/jobs/"+j.ID+"/artifacts", "", &arts)
	if len(arts.Checkpoints) == 0 || len(arts.Checkpoints[0].Files) != 4 {
		return fmt.Sprintf("checkpoints %+v, want at least one of 4 files", arts.Checkpoints)
	}
	return ""
}

// docs/reliability.md is generated (tools/reliability.sh) from real runs:
// it must show every fault the matrix tests.
func TestReliabilityPageIsCurrent(t *testing.T) {
	page, err := os.ReadFile("../../docs/reliability.md")
	if err != nil {
		t.Fatalf("%v: generate it with tools/reliability.sh", err)
	}
	for _, name := range faultNames {
		if !strings.Contains(string(page), name) {
			t.Errorf("docs/reliability.md lacks the fault %q: regenerate it with tools/reliability.sh", name)
		}
	}
}

func startWithReconcile(t *testing.T, speed float64, faults map[string]runpodemu.Fault) *localstack.Stack {
	t.Helper()
	cfg := localstack.Config{
		Addr: "127.0.0.1:0", DataDir: t.TempDir(), DevTokens: "dev:dev-token",
		Log: slog.New(slog.NewTextHandler(io.Discard, nil)),
		Emulator: runpodemu.Config{StepsPerSecond: speed, WebhookRetryInterval: 100 * time.Millisecond,
			Faults: runpodemu.FaultsByJobID(faults), CallbackRetryDelay: 50 * time.Millisecond},
		DispatchVisibility: 500 * time.Millisecond, ReconcileEvery: 200 * time.Millisecond,
		Reconcile: reconcile.Reconciler{StaleAfter: time.Second, CheckEvery: 300 * time.Millisecond},
	}
	s, err := localstack.Open(cfg)
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close(context.Background()) })
	return s
}
