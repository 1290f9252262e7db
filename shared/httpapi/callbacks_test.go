package httpapi_test

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"testing"
	"time"

	"github.com/brightrun/brightrun/shared/api"

	"github.com/brightrun/brightrun/shared/contract"
	"github.com/brightrun/brightrun/shared/httpapi"
	"github.com/brightrun/brightrun/shared/pipeline"
)

var master = []byte("master-secret-for-tests")

// submittedJob stores a job of alice's on attempt 2, as dispatch leaves it.
func (a *testAPI) submittedJob(id string) {
	a.Helper()
	a.api.CallbackSecret = master
	now := time.Now().UTC()
	j := &pipeline.Job{ID: id, Owner: "alice", DatasetID: "ds_1", Status: pipeline.JobSubmitted, Attempt: 2, RunPodID: "rp-1",
		CreatedAt: now, Estimate: &pipeline.JobEstimate{PriceUSDPerSecond: 0.001, CostUSD: pipeline.Range{Expected: 1}}}
	if err := a.store.CreateJob(context.Background(), j); err != nil {
		a.Fatal(err)
	}
}

// callback signs and posts one callback of job at attempt with seq; it
// returns the status and the answer.
func (a *testAPI) callback(owner, job string, attempt int, seq int64, typ contract.CallbackType, data string, sign func(body []byte) http.Header) (int, api.CallbackAnswer) {
	a.Helper()
	body := []byte(fmt.Sprintf(`{"version":1,"type":%q,"job_id":%q,"attempt":%d,"seq":%d,"sent_at":%q,"data":%s}`,
		typ, job, attempt, seq, sentAt(seq), data))
	var h http.Header
	if sign != nil {
		h = sign(body)
	} else {
		h = contract.SignedHeaders(contract.DeriveSecret(master, job), contract.WebhookID(job, attempt, seq), time.Now(), body)
	}
	return a.postCallback(pipeline.WorkerCallbackURL(a.srv.URL, owner), h, body)
}

func (a *testAPI) postCallback(url string, h http.Header, body []byte) (int, api.CallbackAnswer) {
	a.Helper()
	req, _ := http.NewRequest("POST", url, bytes.NewReader(body))
	for k, v := range h {
		req.Header[k] = v
	}
	resp, err := a.srv.Client().Do(req)
	if err != nil {
		a.Fatal(err)
	}
	defer resp.Body.Close()
	var ans api.CallbackAnswer
	_ = json.NewDecoder(resp.Body).Decode(&ans)
	return resp.StatusCode, ans
}

func (a *testAPI) job(id string) *pipeline.Job {
	a.Helper()
	j, err := a.store.GetJob(context.Background(), "alice", id)
	if err != nil {
		a.Fatal(err)
	}
	return j
}

// sentAt is a message's send time: a retry of a message (same seq)
// repeats its body byte for byte.
func sentAt(seq int64) string {
	return time.Date(2026, 11, 25, 12, 0, 0, 0, time.UTC).Add(time.Duration(seq) * time.Second).Format(time.RFC3339Nano)
}

const progress = `{"step":%d,"total_steps":100,"epoch":0.5,"loss":%g,"learning_rate":0.0001,"tokens_per_second":900,"gpu_memory_bytes":1000}`

func TestCallbacksDriveTheJobForward(t *testing.T) {
	a := newTestAPI(t, httpapi.Config{})
	a.submittedJob("job_cb")
	steps := []struct {
		typ    contract.CallbackType
		data   string
		status pipeline.JobStatus
	}{
		{contract.TypeStarted, `{"worker_id":"w1","runpod_job_id":"rp-1","worker_version":"1","gpu":null}`, pipeline.JobRunning},
		{contract.TypeStage, `{"stage":"train"}`, pipeline.JobRunning},
		{contract.TypeProgress, fmt.Sprintf(progress, 10, 2.0), pipeline.JobRunning},
		{contract.TypeProgress, fmt.Sprintf(progress, 20, 1.5), pipeline.JobRunning},
		{contract.TypeStage, `{"stage":"upload"}`, pipeline.JobUploading},
		{contract.TypeCompleted, `{"final_loss":1.2,"steps":100,"train_seconds":50,"tokens_trained":1000,"metrics":{}}`, pipeline.JobCompleted},
	}
	for i, s := range steps {
		status, ans := a.callback("alice", "job_cb", 2, int64(i+1), s.typ, s.data, nil)
		if status != 200 || ans.Action != "continue" {
			t.Fatalf("callback %d (%s) = %d %+v, want 200 continue", i+1, s.typ, status, ans)
		}
		if got := a.job("job_cb").Status; got != s.status {
			t.Fatalf("after callback %d (%s) the job is %s, want %s", i+1, s.typ, got, s.status)
		}
	}
	j := a.job("job_cb")
	if j.Progress == nil || j.Progress.Step != 20 || j.Cost == nil || j.FinishedAt == nil || j.StartedAt == nil {
		t.Errorf("completed job = %+v, want progress at step 20, a cost and start/finish times", j)
	}
	pts, _, _ := a.store.ListMetrics(context.Background(), "alice", "job_cb", pipeline.Page{})
	notes, _, _ := a.store.ListNotifications(context.Background(), "alice", pipeline.Page{})
	if len(pts) != 2 || len(notes) != 1 || notes[0].Type != "job_completed" {
		t.Errorf("metrics %d, notifications %+v; want 2 points and one job_completed", len(pts), notes)
	}
}

func TestBadCallbacksAreRefusedAndChangeNothing(t *testing.T) {
	a := newTestAPI(t, httpapi.Config{})
	a.submittedJob("job_a")
	a.submittedJob("job_b")
	started := `{"worker_id":"w1","runpod_job_id":"rp-1","worker_version":"1","gpu":null}`
	otherSecret := func(body []byte) http.Header {
		return contract.SignedHeaders(contract.DeriveSecret(master, "job_b"), contract.WebhookID("job_a", 2, 1), time.Now(), body)
	}
	tests := []struct {
		name    string
		owner   string
		attempt int
		sign    func([]byte) http.Header
		status  int
		action  string
	}{
		{"unsigned", "alice", 2, func([]byte) http.Header { return http.Header{} }, 401, ""},
		{"forged with another master secret", "alice", 2, func(b []byte) http.Header {
			return contract.SignedHeaders(contract.DeriveSecret([]byte("guess"), "job_a"), contract.WebhookID("job_a", 2, 1), time.Now(), b)
		}, 401, ""},
		{"signed with another job's secret", "alice", 2, otherSecret, 401, ""},
		{"too old to be fresh (a replay)", "alice", 2, func(b []byte) http.Header {
			return contract.SignedHeaders(contract.DeriveSecret(master, "job_a"), contract.WebhookID("job_a", 2, 1), time.Now().Add(-10*time.Minute), b)
		}, 401, ""},
		{"a webhook-id that is not the body's", "alice", 2, func(b []byte) http.Header {
			return contract.SignedHeaders(contract.DeriveSecret(master, "job_a"), contract.WebhookID("job_a", 2, 7), time.Now(), b)
		}, 400, ""},
		{"from a superseded attempt", "alice", 1, nil, 409, "stop"},
		{"for another owner's URL", "bob", 2, nil, 410, "stop"},
	}
	for _, tt := range tests {
		t.Run("refuses a callback "+tt.name, func(t *testing.T) {
			status, ans := a.callback(tt.owner, "job_a", tt.attempt, 1, contract.TypeStarted, started, tt.sign)
			if status != tt.status || ans.Action != tt.action {
				t.Errorf("callback %s = %d %+v, want %d action %q", tt.name, status, ans, tt.status, tt.action)
			}
			if j := a.job("job_a"); j.Status != pipeline.JobSubmitted || j.StartedAt != nil {
				t.Errorf("after a refused callback the job is %s (started %v), want unchanged", j.Status, j.StartedAt)
			}
		})
	}
	evs, _, _ := a.store.ListEvents(context.Background(), "alice", "job_a", pipeline.Page{})
	if len(evs) != 0 {
		t.Errorf("refused callbacks left %d events, want 0", len(evs))
	}
}

func TestRepeatedAndLateCallbacksNeverGoBack(t *testing.T) {
	a := newTestAPI(t, httpapi.Config{})
	a.submittedJob("job_c")
	a.callback("alice", "job_c", 2, 1, contract.TypeStarted, `{"worker_id":"w","runpod_job_id":"rp-1","worker_version":"1","gpu":null}`, nil)
	a.callback("alice", "job_c", 2, 3, contract.TypeProgress, fmt.Sprintf(progress, 30, 1.0), nil)
	// A delayed older progress, then the same message again.
	for range 2 {
		if status, _ := a.callback("alice", "job_c", 2, 2, contract.TypeProgress, fmt.Sprintf(progress, 20, 1.4), nil); status != 200 {
			t.Fatalf("late progress = %d, want 200", status)
		}
	}
	if j := a.job("job_c"); j.Progress.Step != 30 {
		t.Errorf("after a late step 20 the progress is step %d, want 30 (never backwards)", j.Progress.Step)
	}
	// A repeated stage message is logged once (progress is kept as metric
	// points, not events).
	for range 2 {
		a.callback("alice", "job_c", 2, 4, contract.TypeStage, `{"stage":"train"}`, nil)
	}
	evs, _, _ := a.store.ListEvents(context.Background(), "alice", "job_c", pipeline.Page{})
	if len(evs) != 2 {
		t.Errorf("events = %d, want 2: started, and the repeated stage once", len(evs))
	}
	a.callback("alice", "job_c", 2, 6, contract.TypeFailed, `{"code":"oom","message":"out of memory","advice":"lower batch_size"}`, nil)
	status, ans := a.callback("alice", "job_c", 2, 7, contract.TypeStarted, `{"worker_id":"w","runpod_job_id":"rp-1","worker_version":"1","gpu":null}`, nil)
	j := a.job("job_c")
	if status != 200 || ans.Action != "stop" || j.Status != pipeline.JobFailed || j.Error == nil || j.Error.Code != "oom" {
		t.Errorf("a started after failed = %d %+v, job %s %+v; want stop and the job still failed with oom", status, ans, j.Status, j.Error)
	}
}

func TestACancelledJobTellsItsWorkerToStop(t *testing.T) {
	a := newTestAPI(t, httpapi.Config{})
	a.submittedJob("job_d")
	a.callback("alice", "job_d", 2, 1, contract.TypeStarted, `{"worker_id":"w","runpod_job_id":"rp-1","worker_version":"1","gpu":null}`, nil)
	var v api.JobView
	if status := a.call("POST", "/v1/jobs/job_d/cancel", "alice-token", "", &v); status != 200 || v.Status != pipeline.JobCancelRequested {
		t.Fatalf("cancel = %d %s, want cancel_requested", status, v.Status)
	}
	if _, ans := a.callback("alice", "job_d", 2, 2, contract.TypeProgress, fmt.Sprintf(progress, 10, 1.0), nil); ans.Action != "stop" {
		t.Errorf("progress after cancel answered %+v, want stop", ans)
	}
	a.callback("alice", "job_d", 2, 3, contract.TypeFailed, `{"code":"cancelled","message":"stopped","advice":"nothing to do"}`, nil)
	if j := a.job("job_d"); j.Status != pipeline.JobCancelled {
		t.Errorf("after the worker confirms, the job is %s, want cancelled", j.Status)
	}
}

func TestRunPodWebhookTokenIsRequired(t *testing.T) {
	a := newTestAPI(t, httpapi.Config{})
	a.submittedJob("job_e")
	good := pipeline.WebhookToken(master, "alice", "job_e", 2)
	for name, token := range map[string]string{
		"garbage":               "nope",
		"a flipped signature":   good[:len(good)-2] + "AA",
		"another master secret": pipeline.WebhookToken([]byte("other"), "alice", "job_e", 2),
	} {
		status, _ := a.postCallback(a.srv.URL+"/v1/callbacks/runpod/"+token, nil, []byte(`{"id":"rp-1","status":"COMPLETED"}`))
		if status != 401 {
			t.Errorf("RunPod webhook with %s token = %d, want 401", name, status)
		}
	}
	if status, _ := a.postCallback(a.srv.URL+"/v1/callbacks/runpod/"+good, nil, []byte(`{"id":"rp-1","status":"COMPLETED"}`)); status != 200 {
		t.Errorf("RunPod webhook with a good token = %d, want 200", status)
	}
	if j := a.job("job_e"); j.Status != pipeline.JobSubmitted {
		t.Errorf("the webhook body alone moved the job to %s; it must be confirmed with RunPod", j.Status)
	}
}

// RunPod re-runs a crashed worker with the same attempt: its seq starts
// again, so its webhook-ids repeat the crashed run's with other bodies.
func TestARerunAfterACrashIsNotTakenForARepeat(t *testing.T) {
	a := newTestAPI(t, httpapi.Config{})
	a.submittedJob("job_f")
	a.callback("alice", "job_f", 2, 1, contract.TypeStarted, `{"worker_id":"w1","runpod_job_id":"rp-1","worker_version":"1","gpu":null}`, nil)
	a.callback("alice", "job_f", 2, 2, contract.TypeProgress, fmt.Sprintf(progress, 30, 1.0), nil)
	// The re-run, on another worker.
	a.callback("alice", "job_f", 2, 1, contract.TypeStarted, `{"worker_id":"w2","runpod_job_id":"rp-1","worker_version":"1","gpu":null}`, nil)
	a.callback("alice", "job_f", 2, 2, contract.TypeProgress, fmt.Sprintf(progress, 10, 2.0), nil)
	if j := a.job("job_f"); j.Progress == nil || j.Progress.Step != 10 {
		t.Errorf("after the re-run's first progress the job shows %+v, want step 10 of the new run", j.Progress)
	}
}
