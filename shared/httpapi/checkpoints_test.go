package httpapi_test

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/brightrun/brightrun/shared/api"
	"github.com/brightrun/brightrun/shared/contract"
	"github.com/brightrun/brightrun/shared/httpapi"
	"github.com/brightrun/brightrun/shared/pipeline"
)

// urls signs and posts a urls callback; it returns the status and the
// answer's body decoded as a urls answer.
func (a *testAPI) urls(job string, attempt int, seq int64, data string) (int, contract.URLAnswer) {
	a.Helper()
	body := []byte(fmt.Sprintf(`{"version":1,"type":"urls","job_id":%q,"attempt":%d,"seq":%d,"sent_at":%q,"data":%s}`,
		job, attempt, seq, sentAt(seq), data))
	h := contract.SignedHeaders(contract.DeriveSecret(master, job), contract.WebhookID(job, attempt, seq), time.Now(), body)
	req, _ := http.NewRequest("POST", pipeline.WorkerCallbackURL(a.srv.URL, "alice"), bytes.NewReader(body))
	for k, v := range h {
		req.Header[k] = v
	}
	resp, err := a.srv.Client().Do(req)
	if err != nil {
		a.Fatal(err)
	}
	defer resp.Body.Close()
	var ans contract.URLAnswer
	_ = json.NewDecoder(resp.Body).Decode(&ans)
	return resp.StatusCode, ans
}

// handsOutURLs makes the API's lifecycle sign URLs with the local blobs.
func (a *testAPI) handsOutURLs() { a.api.Jobs.URLs = a.blobs }

func fileJSON(name string, content []byte) string {
	sum := sha256.Sum256(content)
	return fmt.Sprintf(`{"name":%q,"size_bytes":%d,"sha256":%q}`, name, len(content), hex.EncodeToString(sum[:]))
}

func TestAURLsCallbackIsAnsweredWithURLsOfTheCurrentAttemptOnly(t *testing.T) {
	a := newTestAPI(t, httpapi.Config{})
	a.handsOutURLs()
	a.submittedJob("job_u")
	a.readyDataset("alice", "ds_1", pipeline.DatasetReady)
	cfg := []byte(`{"r":16}`)
	tests := []struct {
		name      string
		attempt   int
		data      string
		status    int
		wantFiles map[string]string // file -> method
		wantKey   string            // a key every URL names
	}{
		{"the dataset is a GET of the job's dataset", 2, `{"purpose":"dataset","files":[{"name":"dataset.jsonl"}]}`, 200,
			map[string]string{"dataset.jsonl": "GET"}, pipeline.DatasetKey("alice", "ds_1")},
		{"a checkpoint's files are PUTs under the attempt's key", 2, `{"purpose":"checkpoint","step":5,"files":[` + fileJSON("adapter_config.json", cfg) + `]}`, 200,
			map[string]string{"adapter_config.json": "PUT"}, pipeline.CheckpointKey("alice", "job_u", 2, 5, "adapter_config.json")},
		{"the final adapter is a PUT at the artifact key", 2, `{"purpose":"artifact","files":[` + fileJSON("adapter_config.json", cfg) + `]}`, 200,
			map[string]string{"adapter_config.json": "PUT"}, pipeline.ArtifactKey("alice", "job_u", 2, "adapter_config.json")},
		{"a job without checkpoints has none to download", 2, `{"purpose":"checkpoint_download"}`, 200, map[string]string{}, ""},
		{"a superseded attempt is told to stop", 1, `{"purpose":"dataset"}`, 409, nil, ""},
		{"a checkpoint upload without its step is refused", 2, `{"purpose":"checkpoint","files":[` + fileJSON("a.json", cfg) + `]}`, 422, nil, ""},
		{"an artifact of another name is refused", 2, `{"purpose":"artifact","files":[` + fileJSON("model.bin", cfg) + `]}`, 422, nil, ""},
		{"an upload without sizes is refused", 2, `{"purpose":"artifact","files":[{"name":"adapter_config.json"}]}`, 422, nil, ""},
		{"an upload of too many files is refused", 2, `{"purpose":"checkpoint","step":5,"files":[` + strings.Repeat(fileJSON("a.json", cfg)+",", 16) + fileJSON("a.json", cfg) + `]}`, 422, nil, ""},
		{"a dataset file the job has not is refused", 2, `{"purpose":"dataset","files":[{"name":"other.jsonl"}]}`, 422, nil, ""},
	}
	for i, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			status, ans := a.urls("job_u", tt.attempt, int64(i+1), tt.data)
			if status != tt.status {
				t.Fatalf("urls %s = %d, want %d", tt.data, status, tt.status)
			}
			if tt.wantFiles == nil {
				return
			}
			if ans.Action != "continue" || len(ans.URLs) != len(tt.wantFiles) || ans.ExpiresAt.Before(time.Now()) || ans.ExpiresAt.After(time.Now().Add(time.Hour)) {
				t.Errorf("answer = %+v, want continue, %d URLs, expiring within the hour", ans, len(tt.wantFiles))
			}
			for name, method := range tt.wantFiles {
				u := ans.URLs[name]
				if u.Method != method || !strings.Contains(u.URL, tt.wantKey) {
					t.Errorf("urls[%s] = %+v, want a %s naming %s", name, u, method, tt.wantKey)
				}
			}
		})
	}
	if j := a.job("job_u"); j.Status != pipeline.JobSubmitted || len(j.Checkpoints) != 0 {
		t.Errorf("job after urls = %s with %d checkpoints, want it unchanged (submitted, none)", j.Status, len(j.Checkpoints))
	}
}

func TestAServerThatHandsOutNoURLsRefusesTheRequest(t *testing.T) {
	a := newTestAPI(t, httpapi.Config{})
	a.submittedJob("job_n")
	if status, _ := a.urls("job_n", 2, 1, `{"purpose":"dataset"}`); status != 400 {
		t.Errorf("urls without a signer = %d, want 400 (the worker then uses its spec's URLs)", status)
	}
}

// storeCheckpoint asks for URLs, uploads the files of step and sends its
// checkpoint callback; it returns the callback's status.
func (a *testAPI) storeCheckpoint(job string, attempt int, seq *int64, step int64, upload bool) int {
	a.Helper()
	files := map[string][]byte{
		contract.ArtifactAdapterConfig: []byte(fmt.Sprintf(`{"step":%d}`, step)),
		contract.ArtifactAdapterModel:  bytes.Repeat([]byte{byte(step)}, 64),
		"trainer_state.json":           []byte(fmt.Sprintf(`{"global_step":%d}`, step)),
	}
	var refs []string
	for _, name := range []string{contract.ArtifactAdapterConfig, contract.ArtifactAdapterModel, "trainer_state.json"} {
		refs = append(refs, fileJSON(name, files[name]))
	}
	list := "[" + strings.Join(refs, ",") + "]"
	*seq++
	status, ans := a.urls(job, attempt, *seq, fmt.Sprintf(`{"purpose":"checkpoint","step":%d,"files":%s}`, step, list))
	if status != 200 {
		a.Fatalf("urls for checkpoint %d = %d", step, status)
	}
	if upload {
		for name, u := range ans.URLs {
			if code, _ := a.put(pipeline.SignedRequest{Method: u.Method, URL: u.URL, Headers: u.Headers}, files[name]); code != 200 {
				a.Fatalf("PUT %s of step %d = %d", name, step, code)
			}
		}
	}
	*seq++
	data := fmt.Sprintf(`{"step":%d,"total_steps":100,"epoch":%g,"position":{"epoch":0,"step_in_epoch":%d},"reason":"interval","partial":true,"files":%s,"train_seconds":%d,"loss":1.5}`,
		step, float64(step)/100, step, list, step)
	status, _ = a.callback("alice", job, attempt, *seq, contract.TypeCheckpoint, data, nil)
	return status
}

func TestCheckpointsAreStoredPrunedAndServed(t *testing.T) {
	a := newTestAPI(t, httpapi.Config{})
	a.handsOutURLs()
	a.submittedJob("job_c")
	ctx := context.Background()
	seq := int64(1)
	a.callback("alice", "job_c", 2, seq, contract.TypeStarted, `{"worker_id":"w1","runpod_job_id":"rp-1","worker_version":"1","gpu":null}`, nil)

	if status := a.storeCheckpoint("job_c", 2, &seq, 5, false); status != 400 {
		t.Errorf("a checkpoint whose files were not uploaded = %d, want 400", status)
	}
	for _, step := range []int64{10, 20, 30, 40} {
		if status := a.storeCheckpoint("job_c", 2, &seq, step, true); status != 200 {
			t.Fatalf("checkpoint %d = %d, want 200", step, status)
		}
	}
	// A repeat of the last one changes nothing.
	seq -= 2
	if status := a.storeCheckpoint("job_c", 2, &seq, 40, false); status != 200 {
		t.Errorf("a repeated checkpoint callback = %d, want 200", status)
	}
	j := a.job("job_c")
	var steps []int64
	for _, c := range j.Checkpoints {
		steps = append(steps, c.Step)
	}
	if j.Status != pipeline.JobRunning || fmt.Sprint(steps) != "[20 30 40]" {
		t.Fatalf("job = %s with checkpoints %v, want running with the last three: [20 30 40]", j.Status, steps)
	}
	if _, err := a.blobs.Stat(ctx, pipeline.CheckpointKey("alice", "job_c", 2, 10, contract.ArtifactAdapterModel)); pipeline.ErrorCode(err) != pipeline.ENotFound {
		t.Errorf("Stat(pruned checkpoint's file) = %v, want not found", err)
	}
	if _, err := a.blobs.Stat(ctx, pipeline.CheckpointKey("alice", "job_c", 2, 20, contract.ArtifactAdapterModel)); err != nil {
		t.Errorf("Stat(kept checkpoint's file) = %v", err)
	}

	// The latest is the one a resumed run downloads, with its manifest.
	seq++
	status, ans := a.urls("job_c", 2, seq, `{"purpose":"checkpoint_download"}`)
	if status != 200 || ans.Checkpoint == nil || ans.Checkpoint.Step != 40 || ans.Checkpoint.Attempt != 2 || len(ans.URLs) != 3 {
		t.Fatalf("checkpoint_download = %d %+v, want step 40 of attempt 2 with 3 URLs", status, ans)
	}
	resp, err := a.srv.Client().Get(ans.URLs[contract.ArtifactAdapterConfig].URL)
	if err != nil {
		t.Fatal(err)
	}
	got, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if string(got) != `{"step":40}` {
		t.Errorf("downloaded adapter_config.json = %q, want step 40's", got)
	}
	seq++
	if status, ans := a.urls("job_c", 2, seq, `{"purpose":"checkpoint_download","step":30}`); status != 200 || ans.Checkpoint == nil || ans.Checkpoint.Step != 30 {
		t.Errorf("checkpoint_download of step 30 = %d %+v", status, ans.Checkpoint)
	}

	// Cancelled before its adapter: the artifacts are step 40's, partial.
	if status := a.call("POST", "/v1/jobs/job_c/cancel", "alice-token", "", nil); status != 200 && status != 202 {
		t.Fatalf("cancel = %d", status)
	}
	seq++
	a.callback("alice", "job_c", 2, seq, contract.TypeFailed, `{"code":"cancelled","message":"Cancelled.","advice":"None."}`, nil)
	var list api.ArtifactList
	if status := a.call("GET", "/v1/jobs/job_c/artifacts", "alice-token", "", &list); status != 200 {
		t.Fatalf("artifacts = %d", status)
	}
	if list.Status != pipeline.JobCancelled || !list.Partial || list.PartialStep != 40 || len(list.Artifacts) != 2 || len(list.Checkpoints) != 3 {
		t.Fatalf("artifacts = %+v, want a cancelled job showing step 40's adapter as partial and 3 checkpoints", list)
	}
	if c := list.Checkpoints[2]; c.Step != 40 || len(c.Files) != 3 || c.Files[0].Download.URL == "" {
		t.Errorf("last checkpoint = %+v, want step 40 with 3 downloadable files", c)
	}
	if status := a.call("GET", "/v1/jobs/job_c/artifacts", "bob-token", "", nil); status != 404 {
		t.Errorf("another owner's artifacts = %d, want 404", status)
	}
}

func TestACheckpointOfASupersededAttemptIsRefused(t *testing.T) {
	a := newTestAPI(t, httpapi.Config{})
	a.handsOutURLs()
	a.submittedJob("job_s")
	seq := int64(0)
	// Attempt 1 cannot even get URLs.
	if status, _ := a.urls("job_s", 1, 1, `{"purpose":"checkpoint","step":3,"files":[`+fileJSON("a.json", []byte("x"))+`]}`); status != 409 {
		t.Errorf("urls of attempt 1 = %d, want 409", status)
	}
	if status := a.storeCheckpoint("job_s", 2, &seq, 3, true); status != 200 {
		t.Fatalf("checkpoint of attempt 2 = %d", status)
	}
	if n := len(a.job("job_s").Checkpoints); n != 1 {
		t.Errorf("checkpoints = %d, want 1", n)
	}
}
