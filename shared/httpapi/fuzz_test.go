package httpapi_test

import (
	"bytes"
	"context"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/brightrun/brightrun/shared/api"

	"github.com/brightrun/brightrun/shared/catalog"
	"github.com/brightrun/brightrun/shared/contract"
	"github.com/brightrun/brightrun/shared/httpapi"
	"github.com/brightrun/brightrun/shared/local"
	"github.com/brightrun/brightrun/shared/pipeline"
)

// The fuzz targets drive the real handler in-process, through httptest
// recorders, over the real local adapters. Every write to the store, the
// job log, the queue and the blobs goes through writeLog, so that each
// target holds every answer to: never a 5xx (a panic is a 500 from the
// recoverer), the error shape on every 4xx, and nothing stored changed by
// a request that was refused.

// writeLog records the successful writes of the adapters it wraps.
type writeLog struct {
	mu  sync.Mutex
	ops []string
}

func (l *writeLog) add(err error, format string, args ...any) {
	if err != nil {
		return
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	l.ops = append(l.ops, fmt.Sprintf(format, args...))
}

// take returns the writes since the last take and forgets them.
func (l *writeLog) take() []string {
	l.mu.Lock()
	defer l.mu.Unlock()
	ops := l.ops
	l.ops = nil
	return ops
}

type loggedStore struct {
	pipeline.Store
	log *writeLog
}

func (s loggedStore) CreateDataset(ctx context.Context, d *pipeline.Dataset) error {
	err := s.Store.CreateDataset(ctx, d)
	s.log.add(err, "CreateDataset %s/%s", d.Owner, d.ID)
	return err
}

func (s loggedStore) UpdateDataset(ctx context.Context, d *pipeline.Dataset) error {
	err := s.Store.UpdateDataset(ctx, d)
	s.log.add(err, "UpdateDataset %s/%s", d.Owner, d.ID)
	return err
}

func (s loggedStore) DeleteDataset(ctx context.Context, owner, id string) error {
	err := s.Store.DeleteDataset(ctx, owner, id)
	s.log.add(err, "DeleteDataset %s/%s", owner, id)
	return err
}

func (s loggedStore) CreateJob(ctx context.Context, j *pipeline.Job) error {
	err := s.Store.CreateJob(ctx, j)
	s.log.add(err, "CreateJob %s/%s", j.Owner, j.ID)
	return err
}

func (s loggedStore) UpdateJob(ctx context.Context, j *pipeline.Job) error {
	err := s.Store.UpdateJob(ctx, j)
	s.log.add(err, "UpdateJob %s/%s", j.Owner, j.ID)
	return err
}

type loggedJobLog struct {
	pipeline.JobLog
	log *writeLog
}

func (l loggedJobLog) AppendEvent(ctx context.Context, e *pipeline.Event) (bool, error) {
	created, err := l.JobLog.AppendEvent(ctx, e)
	if created {
		l.log.add(err, "AppendEvent %s/%s %s", e.Owner, e.JobID, e.Type)
	}
	return created, err
}

func (l loggedJobLog) PutMetrics(ctx context.Context, owner, jobID string, pts []pipeline.MetricPoint) error {
	err := l.JobLog.PutMetrics(ctx, owner, jobID, pts)
	l.log.add(err, "PutMetrics %s/%s", owner, jobID)
	return err
}

func (l loggedJobLog) CreateNotification(ctx context.Context, n *pipeline.Notification) error {
	err := l.JobLog.CreateNotification(ctx, n)
	l.log.add(err, "CreateNotification %s/%s", n.Owner, n.JobID)
	return err
}

type loggedQueue struct {
	pipeline.Queue
	log *writeLog
}

func (q loggedQueue) Send(ctx context.Context, m pipeline.Message) (string, error) {
	id, err := q.Queue.Send(ctx, m)
	q.log.add(err, "Send %s", m.Body)
	return id, err
}

type loggedBlobs struct {
	pipeline.Blobs
	log *writeLog
}

func (b loggedBlobs) CreateMultipart(ctx context.Context, key string) (string, error) {
	id, err := b.Blobs.CreateMultipart(ctx, key)
	b.log.add(err, "CreateMultipart %s", key)
	return id, err
}

func (b loggedBlobs) CompleteMultipart(ctx context.Context, key, uploadID string, parts []pipeline.CompletedPart) (pipeline.ObjectInfo, error) {
	info, err := b.Blobs.CompleteMultipart(ctx, key, uploadID, parts)
	b.log.add(err, "CompleteMultipart %s", key)
	return info, err
}

func (b loggedBlobs) AbortMultipart(ctx context.Context, key, uploadID string) error {
	err := b.Blobs.AbortMultipart(ctx, key, uploadID)
	b.log.add(err, "AbortMultipart %s", key)
	return err
}

func (b loggedBlobs) Delete(ctx context.Context, key string) error {
	err := b.Blobs.Delete(ctx, key)
	b.log.add(err, "Delete %s", key)
	return err
}

// checkedRuns is a RunChecker that records whom it was asked about.
type checkedRuns struct {
	mu    sync.Mutex
	calls []string
}

func (c *checkedRuns) CheckJob(ctx context.Context, owner, jobID string) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.calls = append(c.calls, owner+"/"+jobID)
	return nil
}

func (c *checkedRuns) take() []string {
	c.mu.Lock()
	defer c.mu.Unlock()
	calls := c.calls
	c.calls = nil
	return calls
}

// fuzzAPI is the API a fuzz target drives: one per fuzzing process,
// shared by its inputs.
type fuzzAPI struct {
	tb     testing.TB
	api    *httpapi.Server
	h      http.Handler
	store  *local.Store
	blobs  *local.Blobs
	writes *writeLog
	runs   *checkedRuns
}

func newFuzzAPI(tb testing.TB, cfg httpapi.Config) *fuzzAPI {
	tb.Helper()
	dir := tb.TempDir()
	db, err := local.OpenDB(dir)
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() { db.Close() })
	store, err := local.NewStore(db)
	if err != nil {
		tb.Fatal(err)
	}
	blobs, err := local.NewBlobs(local.BlobsOptions{Dir: filepath.Join(dir, "blobs"), BaseURL: "http://api.test", Secret: bytes.Repeat([]byte("k"), 32)})
	if err != nil {
		tb.Fatal(err)
	}
	queue, err := local.NewQueue(db, "jobs", local.QueueOptions{})
	if err != nil {
		tb.Fatal(err)
	}
	tokens, err := httpapi.ParseDevTokens("alice:alice-token,bob:bob-token")
	if err != nil {
		tb.Fatal(err)
	}
	w, runs := &writeLog{}, &checkedRuns{}
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	jobs := &pipeline.Lifecycle{Store: loggedStore{store, w}, JobLog: loggedJobLog{store, w}, Queue: loggedQueue{queue, w}, Objects: loggedBlobs{blobs, w}, Log: log}
	api := &httpapi.Server{Store: loggedStore{store, w}, Blobs: loggedBlobs{blobs, w}, Auth: tokens, JobLog: loggedJobLog{store, w},
		Jobs: jobs, Catalog: catalog.Default(), CallbackSecret: master, Runs: runs, Config: cfg, Log: log}
	return &fuzzAPI{tb: tb, api: api, h: api.Handler(), store: store, blobs: blobs, writes: w, runs: runs}
}

// request builds a request to path (already escaped) with a raw query.
func fuzzRequest(method, path, rawQuery string, header http.Header, body []byte) *http.Request {
	req := httptest.NewRequest(method, "http://api.test"+path, bytes.NewReader(body))
	req.URL.RawQuery = rawQuery
	for k, v := range header {
		req.Header[k] = v
	}
	return req
}

func authHeader(token string) http.Header {
	return http.Header{"Authorization": {"Bearer " + token}}
}

// serve answers req and checks what every answer must be; it returns the
// answer and the writes req made.
func (a *fuzzAPI) serve(t *testing.T, req *http.Request) (*httptest.ResponseRecorder, []string) {
	t.Helper()
	a.writes.take()
	rec := httptest.NewRecorder()
	a.h.ServeHTTP(rec, req)
	writes := a.writes.take()
	what := req.Method + " " + shorten(req.URL.RequestURI())
	if rec.Code >= 500 {
		t.Fatalf("%s = %d %s, want no 5xx", what, rec.Code, shorten(rec.Body.String()))
	}
	if rec.Code >= 400 {
		var e api.ErrorBody
		if err := json.Unmarshal(rec.Body.Bytes(), &e); err != nil || e.Error.Code == "" || e.Error.Message == "" {
			t.Fatalf("%s = %d with body %s, want the error shape", what, rec.Code, shorten(rec.Body.String()))
		}
	}
	if (rec.Code < 200 || rec.Code > 299) && len(writes) > 0 {
		t.Fatalf("%s = %d %s, yet it wrote %v: a refused request must change nothing", what, rec.Code, shorten(rec.Body.String()), writes)
	}
	return rec, writes
}

func shorten(s string) string {
	if len(s) > 300 {
		return fmt.Sprintf("%q…", s[:300])
	}
	return fmt.Sprintf("%q", s)
}

// storeDataset stores a dataset of owner's directly (not logged).
func (a *fuzzAPI) storeDataset(owner, id string, status pipeline.DatasetStatus) {
	a.tb.Helper()
	now := time.Now().UTC()
	d := &pipeline.Dataset{ID: id, Owner: owner, Name: id, Status: status, SizeBytes: 5 << 20,
		ObjectKey: pipeline.DatasetKey(owner, id), CreatedAt: now, UpdatedAt: now,
		Validation: &pipeline.ValidationSummary{Valid: true, Lines: 1000, Examples: 1000, Tokens: pipeline.TokenCounts{Total: 1_200_000, Trained: 600_000},
			Stats: pipeline.ExampleStats{TokensPerExample: pipeline.Distribution{Min: 200, Mean: 1200, P50: 1100, P95: 2400, Max: 3900}, MaxSeqLength: 2048}}}
	if err := a.store.CreateDataset(context.Background(), d); err != nil {
		a.tb.Fatal(err)
	}
}

// storeJob stores a submitted job of owner's on attempt 2, as dispatch
// leaves it, with both artifacts of that attempt uploaded.
func (a *fuzzAPI) storeJob(owner, id string) {
	a.tb.Helper()
	ctx := context.Background()
	now := time.Now().UTC()
	j := &pipeline.Job{ID: id, Owner: owner, DatasetID: "ds_ready", Status: pipeline.JobSubmitted, Attempt: 2, RunPodID: "rp-1",
		CreatedAt: now, UpdatedAt: now, Estimate: &pipeline.JobEstimate{PriceUSDPerSecond: 0.001, CostUSD: pipeline.Range{Expected: 1}}}
	if err := a.store.CreateJob(ctx, j); err != nil {
		a.tb.Fatal(err)
	}
	for name, content := range map[string]string{contract.ArtifactAdapterConfig: "{}", contract.ArtifactAdapterModel: "0123456789abcdef"} {
		if _, err := a.blobs.Put(ctx, pipeline.ArtifactKey(owner, id, 2, name), strings.NewReader(content), int64(len(content))); err != nil {
			a.tb.Fatal(err)
		}
	}
}

// resetJob puts a job that reached an end back to submitted, so that the
// next inputs drive a live job again.
func (a *fuzzAPI) resetJob(t *testing.T, owner, id string) {
	t.Helper()
	j, err := a.store.GetJob(context.Background(), owner, id)
	if err != nil {
		t.Fatal(err)
	}
	if !j.Status.Terminal() && j.Status != pipeline.JobCancelRequested {
		return
	}
	j.Status, j.Progress, j.Stage, j.Error, j.Cost, j.StartedAt, j.FinishedAt, j.Artifacts = pipeline.JobSubmitted, nil, "", nil, nil, nil, nil, nil
	if err := a.store.UpdateJob(context.Background(), j); err != nil {
		t.Fatal(err)
	}
}

// FuzzCreateDataset: POST /v1/datasets with any body and Authorization.
func FuzzCreateDataset(f *testing.F) {
	for _, body := range []string{
		`{"name":"support chats","size_bytes":1234}`,
		`{"name":"with sum","size_bytes":10,"sha256":"` + strings.Repeat("AB", 32) + `"}`,
		`{"name":"multipart","size_bytes":12582929}`,
		`{"name":"largest","size_bytes":5368709120}`,
		`{"name":"too large","size_bytes":5368709121}`,
		`{"name":"x","size_bytes":0}`,
		`{"name":"x","size_bytes":-1}`,
		`{"name":"x","size_bytes":1e400}`,
		`{"name":"x","size_bytes":99999999999999999999}`,
		`{"name":"x","size_bytes":1.5}`,
		`{"name":"../etc/passwd","size_bytes":1}`,
		`{"name":"a\\b","size_bytes":1}`,
		`{"name":"a\r\nX-Injected: 1","size_bytes":1}`,
		`{"name":"a\u0000b","size_bytes":1}`,
		`{"name":"\u202egnp.exe","size_bytes":1}`,
		"{\"name\":\"a\xffb\",\"size_bytes\":1}",
		`{"name":"\ud800","size_bytes":1}`,
		`{"name":"ok","name":"a/b","size_bytes":1}`,
		`{"NAME":"upper","SIZE_BYTES":3}`,
		`{"name":"x","size_bytes":1}{"name":"y","size_bytes":1}`,
		`{"name":"x","size_bytes":1,"colour":"red"}`,
		`[]`, `null`, `""`, ``, `{`, strings.Repeat(`[`, 10000),
	} {
		f.Add([]byte(body), "Bearer alice-token")
	}
	f.Add([]byte(`{"name":"bob's","size_bytes":5}`), "bearer   bob-token ")
	f.Add([]byte(`{"name":"nobody","size_bytes":5}`), "Bearer nope")
	f.Add([]byte(`{"name":"nobody","size_bytes":5}`), "")
	f.Add([]byte(`{"name":"nobody","size_bytes":5}`), "Basic YWxpY2U6eA==")

	a := newFuzzAPI(f, httpapi.Config{MultipartThreshold: 6 << 20, PartSize: 5 << 20})
	f.Fuzz(func(t *testing.T, body []byte, authorization string) {
		rec, writes := a.serve(t, fuzzRequest("POST", "/v1/datasets", "", http.Header{"Authorization": {authorization}}, body))
		// Whom the header authenticates, as the API's authenticator reads it.
		owner, _ := a.api.Auth.Authenticate(fuzzRequest("GET", "/", "", http.Header{"Authorization": {authorization}}, nil))
		if rec.Code == http.StatusCreated {
			var c created
			if err := json.Unmarshal(rec.Body.Bytes(), &c); err != nil {
				t.Fatalf("201 body %s: %v", shorten(rec.Body.String()), err)
			}
			if owner == "" {
				t.Fatalf("Authorization %q created dataset %s: want 401", authorization, c.Dataset.ID)
			}
			d, err := a.store.GetDataset(context.Background(), owner, c.Dataset.ID)
			if err != nil {
				t.Fatalf("created dataset %s is not %s's: %v", c.Dataset.ID, owner, err)
			}
			if err := pipeline.ValidateName("name", d.Name); err != nil || d.Name != strings.TrimSpace(d.Name) {
				t.Fatalf("stored name %q: %v, want a valid trimmed name", d.Name, err)
			}
			if d.ObjectKey != pipeline.DatasetKey(owner, d.ID) || d.SizeBytes < 1 || d.SizeBytes > pipeline.MaxDatasetBytes || d.Status != pipeline.DatasetAwaitingUpload {
				t.Fatalf("stored dataset %+v, want an awaiting_upload dataset of 1..%d bytes at its owner's key", d, pipeline.MaxDatasetBytes)
			}
			if !slices.Contains(writes, "CreateDataset "+owner+"/"+d.ID) {
				t.Fatalf("201 with writes %v, want the dataset created", writes)
			}
		}
	})
}

// FuzzCompleteDataset: POST /v1/datasets/{id}/complete with any body, on
// an open upload of alice's, a completed one, bob's, a missing one, or any id.
func FuzzCompleteDataset(f *testing.F) {
	// The md5 of the 10-byte part each upload below holds.
	const etag = "781e5e245d69b566979b86e28d23f2c7"
	for _, body := range []string{
		`{"parts":[{"part_number":1,"etag":"\"` + etag + `\""}]}`,
		`{"parts":[{"part_number":1,"etag":"` + etag + `"}]}`,
		`{"parts":[{"part_number":1,"etag":"x"}]}`,
		`{"parts":[{"part_number":2,"etag":"` + etag + `"}]}`,
		`{"parts":[{"part_number":0,"etag":""}]}`,
		`{"parts":[{"part_number":-1,"etag":"` + etag + `"}]}`,
		`{"parts":[{"part_number":1,"etag":"` + etag + `"},{"part_number":1,"etag":"` + etag + `"}]}`,
		`{"parts":[{"part_number":1e10,"etag":"x"}]}`,
		`{"parts":[{"part_number":"../../1","etag":"x"}]}`,
		`{"parts":[]}`, `{"parts":null}`, `{}`, `{"parts":{}}`, ``, `[`,
	} {
		for target := range uint8(5) {
			f.Add([]byte(body), target, "")
		}
	}
	f.Add([]byte(`{"parts":[{"part_number":1,"etag":"x"}]}`), uint8(4), "../../v1/jobs")
	f.Add([]byte(`{"parts":[{"part_number":1,"etag":"x"}]}`), uint8(4), "ds_\x00")

	a := newFuzzAPI(f, httpapi.Config{MultipartThreshold: 1, PartSize: 5 << 20})
	open := func(tb testing.TB, owner string) string {
		tb.Helper()
		rec := httptest.NewRecorder()
		a.h.ServeHTTP(rec, fuzzRequest("POST", "/v1/datasets", "", authHeader(owner+"-token"), []byte(`{"name":"parts","size_bytes":10}`)))
		var c created
		if err := json.Unmarshal(rec.Body.Bytes(), &c); rec.Code != 201 || err != nil || len(c.Upload.Parts) != 1 {
			tb.Fatalf("create a multipart dataset = %d %s", rec.Code, rec.Body)
		}
		u, _ := url.Parse(c.Upload.Parts[0].URL)
		put := httptest.NewRequest("PUT", u.RequestURI(), strings.NewReader("0123456789"))
		rec = httptest.NewRecorder()
		a.blobs.ServeHTTP(rec, put)
		if rec.Code != 200 || strings.Trim(rec.Header().Get("ETag"), `"`) != etag {
			tb.Fatalf("upload the part = %d %s, ETag %s", rec.Code, rec.Body, rec.Header().Get("ETag"))
		}
		return c.Dataset.ID
	}
	aliceOpen, bobOpen, aliceDone := open(f, "alice"), open(f, "bob"), open(f, "alice")
	rec := httptest.NewRecorder()
	a.h.ServeHTTP(rec, fuzzRequest("POST", "/v1/datasets/"+aliceDone+"/complete", "", authHeader("alice-token"), []byte(`{"parts":[{"part_number":1,"etag":"`+etag+`"}]}`)))
	if rec.Code != 200 {
		f.Fatalf("complete = %d %s", rec.Code, rec.Body)
	}
	f.Fuzz(func(t *testing.T, body []byte, target uint8, id string) {
		ids := []string{aliceOpen, aliceDone, bobOpen, "ds_missing", id}
		target %= uint8(len(ids))
		path := "/v1/datasets/" + url.PathEscape(ids[target]) + "/complete"
		rec, writes := a.serve(t, fuzzRequest("POST", path, "", authHeader("alice-token"), body))
		if target == 2 && rec.Code != http.StatusNotFound && rec.Code != http.StatusBadRequest && rec.Code != http.StatusRequestEntityTooLarge {
			t.Fatalf("alice completing bob's upload = %d %s, want 404 (or 400 for a malformed body)", rec.Code, shorten(rec.Body.String()))
		}
		if rec.Code == http.StatusOK {
			var v api.DatasetView
			if err := json.Unmarshal(rec.Body.Bytes(), &v); err != nil || v.ID == "" {
				t.Fatalf("200 body %s: %v", shorten(rec.Body.String()), err)
			}
			for _, w := range writes {
				if !strings.Contains(w, "alice") && !strings.Contains(w, hex.EncodeToString([]byte("alice"))) {
					t.Fatalf("alice's complete wrote %q", w)
				}
			}
			if target == 0 {
				aliceOpen = open(t, "alice")
			}
		}
	})
}

// FuzzCreateJob: POST /v1/jobs with any body and Idempotency-Key.
func FuzzCreateJob(f *testing.F) {
	for _, body := range []string{
		`{"dataset_id":"ds_ready"}`,
		`{"dataset_id":"ds_ready","preset":"fast","name":"first run","budget_usd":500}`,
		`{"dataset_id":"ds_ready","preset":"quality","gpu_type":"h100-80gb","base_model":"` + catalog.DefaultModelID + `"}`,
		`{"dataset_id":"ds_ready","hyperparameters":{"epochs":20,"lora_rank":256,"max_seq_length":32768,"batch_size":64}}`,
		`{"dataset_id":"ds_ready","hyperparameters":{"epochs":1,"learning_rate":1e-300}}`,
		`{"dataset_id":"ds_ready","hyperparameters":{"epochs":1e400}}`,
		`{"dataset_id":"ds_ready","budget_usd":0.01}`,
		`{"dataset_id":"ds_ready","budget_usd":-1}`,
		`{"dataset_id":"ds_ready","budget_usd":1e308}`,
		`{"dataset_id":"ds_ready","budget_usd":1e400}`,
		`{"dataset_id":"ds_ready","name":"a/b"}`,
		`{"dataset_id":"ds_ready","name":"\u202e"}`,
		`{"dataset_id":"ds_validating"}`,
		`{"dataset_id":"ds_bob"}`,
		`{"dataset_id":"ds_missing"}`,
		`{"dataset_id":""}`,
		`{"dataset_id":null}`,
		`{"dataset_id":"ds_ready","dataset_id":"ds_bob"}`,
		`{"dataset_id":"ds_ready","gpu_type":"tpu-v9"}`,
		`{}`, ``, `[`,
	} {
		f.Add([]byte(body), "")
		f.Add([]byte(body), "key-1")
	}
	f.Add([]byte(`{"dataset_id":"ds_ready"}`), "bad key")
	f.Add([]byte(`{"dataset_id":"ds_ready"}`), "k\r\nX-Injected: 1")
	f.Add([]byte(`{"dataset_id":"ds_ready"}`), "k\x00")
	f.Add([]byte(`{"dataset_id":"ds_ready"}`), "ключ")
	f.Add([]byte(`{"dataset_id":"ds_ready"}`), strings.Repeat("k", 256))

	a := newFuzzAPI(f, httpapi.Config{})
	a.storeDataset("alice", "ds_ready", pipeline.DatasetReady)
	a.storeDataset("alice", "ds_validating", pipeline.DatasetValidating)
	a.storeDataset("bob", "ds_bob", pipeline.DatasetReady)
	f.Fuzz(func(t *testing.T, body []byte, key string) {
		h := authHeader("alice-token")
		if key != "" {
			h["Idempotency-Key"] = []string{key}
		}
		rec, writes := a.serve(t, fuzzRequest("POST", "/v1/jobs", "", h, body))
		if rec.Code != http.StatusCreated {
			return
		}
		var v api.JobView
		if err := json.Unmarshal(rec.Body.Bytes(), &v); err != nil {
			t.Fatalf("201 body %s: %v", shorten(rec.Body.String()), err)
		}
		j, err := a.store.GetJob(context.Background(), "alice", v.ID)
		if err != nil || j.DatasetID != "ds_ready" || (key != "" && j.ID != pipeline.IdempotentJobID("alice", key)) {
			t.Fatalf("201 job %+v (%v), want alice's job on her ready dataset, its id derived from the key", j, err)
		}
		replayed := rec.Header().Get("Idempotent-Replayed") == "true"
		if replayed && len(writes) > 0 || !replayed && !slices.Contains(writes, "CreateJob alice/"+v.ID) {
			t.Fatalf("201 (replayed %v) wrote %v, want a new job written once, a replay writing nothing", replayed, writes)
		}
	})
}

// FuzzEstimate: POST /v1/estimates with any body; estimating writes nothing.
func FuzzEstimate(f *testing.F) {
	for _, body := range []string{
		`{"dataset_id":"ds_ready"}`,
		`{"dataset_id":"ds_ready","preset":"fast"}`,
		`{"dataset_id":"ds_ready","preset":"quality","gpu_type":"a100-80gb"}`,
		`{"dataset_id":"ds_ready","hyperparameters":{"epochs":20,"lora_rank":256,"max_seq_length":32768,"batch_size":64,"gradient_accumulation":64}}`,
		`{"dataset_id":"ds_ready","hyperparameters":{"learning_rate":0,"warmup_ratio":1,"lora_dropout":1}}`,
		`{"dataset_id":"ds_ready","hyperparameters":{"epochs":-1}}`,
		`{"dataset_id":"ds_ready","hyperparameters":{"epochs":"2"}}`,
		`{"dataset_id":"ds_ready","hyperparameters":null}`,
		`{"dataset_id":"ds_ready","base_model":"gpt-2"}`,
		`{"dataset_id":"ds_huge"}`,
		`{"dataset_id":"ds_empty"}`,
		`{"dataset_id":"ds_bob"}`,
		`{"dataset_id":"ds_validating"}`,
		`{"dataset_id":"` + strings.Repeat("x", 5000) + `"}`,
		`{}`, ``, `{"dataset_id":1}`, `{"dataset_id":"ds_ready"} x`,
	} {
		f.Add([]byte(body))
	}
	a := newFuzzAPI(f, httpapi.Config{})
	a.storeDataset("alice", "ds_ready", pipeline.DatasetReady)
	a.storeDataset("alice", "ds_validating", pipeline.DatasetValidating)
	a.storeDataset("bob", "ds_bob", pipeline.DatasetReady)
	// Edge datasets: enormous, and empty.
	now := time.Now().UTC()
	for _, d := range []*pipeline.Dataset{
		{ID: "ds_huge", Validation: &pipeline.ValidationSummary{Valid: true, Examples: 1 << 40, Tokens: pipeline.TokenCounts{Total: 1 << 62, Trained: 1 << 62},
			Stats: pipeline.ExampleStats{TokensPerExample: pipeline.Distribution{Max: 1 << 40, P95: 1 << 40}}}},
		{ID: "ds_empty", Validation: &pipeline.ValidationSummary{Valid: true}},
	} {
		d.Owner, d.Name, d.Status, d.SizeBytes, d.ObjectKey, d.CreatedAt, d.UpdatedAt = "alice", d.ID, pipeline.DatasetReady, 1, pipeline.DatasetKey("alice", d.ID), now, now
		if err := a.store.CreateDataset(context.Background(), d); err != nil {
			f.Fatal(err)
		}
	}
	f.Fuzz(func(t *testing.T, body []byte) {
		rec, writes := a.serve(t, fuzzRequest("POST", "/v1/estimates", "", authHeader("alice-token"), body))
		if len(writes) > 0 {
			t.Fatalf("an estimate wrote %v", writes)
		}
		if rec.Code == http.StatusOK {
			var out struct {
				DatasetID string `json:"dataset_id"`
			}
			if err := json.Unmarshal(rec.Body.Bytes(), &out); err != nil || !strings.HasPrefix(out.DatasetID, "ds_") || out.DatasetID == "ds_bob" {
				t.Fatalf("200 body %s, want an estimate of one of alice's datasets", shorten(rec.Body.String()))
			}
		}
	})
}

// fuzzListRoutes are the routes FuzzListQuery pages through; {job} is
// alice's job.
var fuzzListRoutes = []string{"/v1/datasets", "/v1/jobs", "/v1/jobs/{job}/events", "/v1/jobs/{job}/metrics", "/v1/notifications"}

// FuzzListQuery: any query string (cursor, limit, status) on the list routes.
func FuzzListQuery(f *testing.F) {
	for i := range fuzzListRoutes {
		for _, q := range []string{"", "limit=1", "limit=100", "limit=0", "limit=101", "limit=-1", "limit=1e3", "limit=99999999999999999999",
			"limit= 1", "limit=1&limit=2", "cursor=", "cursor=%21%21", "cursor=AAAA", "cursor=YWxpY2UA", "cursor=Ym9iAA", "status=queued",
			"status=bogus", "status=queued&limit=1", "status=%00", "cursor=%ff%fe", "limit=1;cursor=x", "%zz", "&&&=", "cursor=" + strings.Repeat("A", 4096)} {
			f.Add(uint8(i), "alice-token", q)
		}
	}
	f.Add(uint8(0), "bob-token", "limit=1")
	f.Add(uint8(1), "bob-token", "cursor=YWxpY2UA")

	a := newFuzzAPI(f, httpapi.Config{})
	ctx := context.Background()
	mine := map[string]bool{}
	for i := range 3 {
		id := fmt.Sprintf("ds_alice_%d", i)
		a.storeDataset("alice", id, pipeline.DatasetReady)
		mine[id] = true
		jid := fmt.Sprintf("job_alice_%d", i)
		a.storeJob("alice", jid)
		mine[jid] = true
	}
	a.storeDataset("bob", "ds_bob", pipeline.DatasetReady)
	a.storeJob("bob", "job_bob")
	for i := range 3 {
		if _, err := a.store.AppendEvent(ctx, &pipeline.Event{ID: fmt.Sprintf("ev_%d", i), Owner: "alice", JobID: "job_alice_0", Type: "stage", Time: time.Now()}); err != nil {
			f.Fatal(err)
		}
		if err := a.store.PutMetrics(ctx, "alice", "job_alice_0", []pipeline.MetricPoint{{Attempt: 2, Step: i + 1, TotalSteps: 10}}); err != nil {
			f.Fatal(err)
		}
		if err := a.store.CreateNotification(ctx, &pipeline.Notification{ID: fmt.Sprintf("ntf_%d", i), Owner: "alice", JobID: "job_alice_0", Type: "job_completed", Message: "done", CreatedAt: time.Now()}); err != nil {
			f.Fatal(err)
		}
	}
	if _, err := a.store.AppendEvent(ctx, &pipeline.Event{ID: "ev_bob", Owner: "bob", JobID: "job_bob", Type: "stage", Time: time.Now()}); err != nil {
		f.Fatal(err)
	}
	if err := a.store.CreateNotification(ctx, &pipeline.Notification{ID: "ntf_bob", Owner: "bob", JobID: "job_bob", Type: "job_failed", Message: "bob's", CreatedAt: time.Now()}); err != nil {
		f.Fatal(err)
	}
	// list reads one page as the owner of token: the ids it shows and the next cursor.
	list := func(t *testing.T, route, token, query string) (int, []string, string) {
		t.Helper()
		rec, writes := a.serve(t, fuzzRequest("GET", strings.ReplaceAll(route, "{job}", "job_alice_0"), query, authHeader(token), nil))
		if len(writes) > 0 {
			t.Fatalf("GET %s?%s wrote %v", route, query, writes)
		}
		if rec.Code != http.StatusOK {
			return rec.Code, nil, ""
		}
		var page map[string]json.RawMessage
		if err := json.Unmarshal(rec.Body.Bytes(), &page); err != nil {
			t.Fatalf("GET %s?%s body %s: %v", route, query, shorten(rec.Body.String()), err)
		}
		var items []struct {
			ID    string `json:"id"`
			JobID string `json:"job_id"`
			Step  int    `json:"step"`
		}
		for k, v := range page {
			if k != "next_cursor" {
				_ = json.Unmarshal(v, &items)
			}
		}
		var next string
		_ = json.Unmarshal(page["next_cursor"], &next)
		var ids []string
		for _, it := range items {
			switch {
			case it.JobID != "":
				ids = append(ids, it.JobID)
			case it.ID != "":
				ids = append(ids, it.ID)
			}
		}
		return rec.Code, ids, next
	}
	f.Fuzz(func(t *testing.T, route uint8, token, query string) {
		r := fuzzListRoutes[int(route)%len(fuzzListRoutes)]
		status, ids, next := list(t, r, token, query)
		// The server ignores whitespace around the bearer token.
		owner := map[string]string{"alice-token": "alice", "bob-token": "bob"}[strings.TrimSpace(token)]
		switch {
		case owner == "" && status != http.StatusUnauthorized:
			t.Fatalf("GET %s with token %q = %d, want 401", r, token, status)
		case owner == "bob" && strings.Contains(r, "{job}") && status != http.StatusNotFound && status != http.StatusBadRequest:
			t.Fatalf("bob GET %s of alice's job = %d, want 404", r, status)
		}
		for _, id := range ids {
			if mine[id] != (owner == "alice") {
				t.Fatalf("%s GET %s?%s shows %s", owner, r, query, id)
			}
		}
		if next == "" {
			return
		}
		// The cursor works for its owner, and shows nothing of its owner's to another.
		if status, _, _ := list(t, r, token, "cursor="+url.QueryEscape(next)); status != http.StatusOK {
			t.Fatalf("%s GET %s with the next_cursor %q it got = %d, want 200", owner, r, next, status)
		}
		other := map[string]string{"alice": "bob-token", "bob": "alice-token"}[owner]
		if _, ids, _ := list(t, r, other, "cursor="+url.QueryEscape(next)); len(ids) > 0 && owner == "alice" {
			for _, id := range ids {
				if mine[id] {
					t.Fatalf("bob with alice's cursor sees %s", id)
				}
			}
		}
	})
}

// callbackSeeds are the contract's example callbacks, for job_fz at
// attempt 2 (and one of a superseded attempt, and one of another job).
func callbackSeeds(tb testing.TB) [][]byte {
	tb.Helper()
	names, err := filepath.Glob(filepath.Join("..", "..", "testdata", "contracts", "callback.*.json"))
	if err != nil || len(names) < 6 {
		tb.Fatalf("callback examples: %v %v", names, err)
	}
	var out [][]byte
	for _, name := range names {
		raw, err := os.ReadFile(name)
		if err != nil {
			tb.Fatal(err)
		}
		var m map[string]any
		if err := json.Unmarshal(raw, &m); err != nil {
			if strings.HasSuffix(name, ".schema.json") {
				continue
			}
			tb.Fatal(err)
		}
		if _, ok := m["type"].(string); !ok {
			continue // the schema
		}
		m["job_id"], m["attempt"] = "job_fz", 2
		if m["type"] == "artifact" {
			m["data"].(map[string]any)["name"], m["data"].(map[string]any)["size_bytes"] = contract.ArtifactAdapterConfig, 2
		}
		for _, v := range []struct {
			job     string
			attempt int
		}{{"job_fz", 2}, {"job_fz", 1}, {"job_bob", 2}} {
			m["job_id"], m["attempt"] = v.job, v.attempt
			b, _ := json.Marshal(m)
			out = append(out, b)
		}
	}
	return out
}

// Signing modes of FuzzWorkerCallback.
const (
	cbUnsigned      = iota // the fuzzer's headers as they are
	cbSignedAnyID          // signed for the body's job, with the fuzzer's webhook-id
	cbSignedMatched        // signed for the body's job, with the webhook-id the body implies
)

// FuzzWorkerCallback: POST /v1/callbacks/worker with any body, owner and
// signature headers, and validly signed arbitrary bodies.
func FuzzWorkerCallback(f *testing.F) {
	alice, bob := hex.EncodeToString([]byte("alice")), hex.EncodeToString([]byte("bob"))
	ts := fmt.Sprint(time.Now().Unix())
	for _, body := range callbackSeeds(f) {
		f.Add(body, alice, "", "", "", uint8(cbSignedMatched))
		f.Add(body, bob, "", "", "", uint8(cbSignedMatched))
		f.Add(body, alice, "job_fz.2.1", "", "", uint8(cbSignedAnyID))
		f.Add(body, alice, "job_fz.2.1", ts, "v1,AAAA", uint8(cbUnsigned))
	}
	for _, body := range []string{``, `{}`, `{"job_id":"job_fz"}`, `{"job_id":"../job_fz"}`, `{"job_id":1}`, `[`, `{"job_id":"job_fz","job_id":"job_bob"}`,
		`{"version":1,"type":"progress","job_id":"job_fz","attempt":2,"seq":1,"sent_at":"2026-11-25T12:00:00Z","data":{"step":1e300,"total_steps":1,"epoch":0,"loss":0,"learning_rate":0,"tokens_per_second":0,"gpu_memory_bytes":0}}`,
		`{"version":1,"type":"progress","job_id":"job_fz","attempt":99999999999,"seq":1,"sent_at":"2026-11-25T12:00:00Z","data":{}}`,
	} {
		f.Add([]byte(body), alice, "job_fz.2.1", "", "", uint8(cbSignedMatched))
		f.Add([]byte(body), "zz", "", "", "", uint8(cbSignedAnyID))
	}
	f.Add([]byte(`{"job_id":"job_fz"}`), "", "job_fz.2.1", "0", "", uint8(cbUnsigned))

	a := newFuzzAPI(f, httpapi.Config{})
	a.storeJob("alice", "job_fz")
	a.storeJob("bob", "job_bob")
	f.Fuzz(func(t *testing.T, body []byte, owner, id, ts, sig string, mode uint8) {
		h := http.Header{}
		mode %= 3
		if mode == cbUnsigned {
			h[contract.HeaderID], h[contract.HeaderTimestamp], h[contract.HeaderSignature] = []string{id}, []string{ts}, []string{sig}
		} else {
			var head struct {
				JobID   string `json:"job_id"`
				Attempt int    `json:"attempt"`
				Seq     int64  `json:"seq"`
			}
			_ = json.Unmarshal(body, &head)
			if mode == cbSignedMatched {
				id = contract.WebhookID(head.JobID, head.Attempt, head.Seq)
			}
			h = contract.SignedHeaders(contract.DeriveSecret(master, head.JobID), id, time.Now(), body)
		}
		rec, _ := a.serve(t, fuzzRequest("POST", "/v1/callbacks/worker", "o="+url.QueryEscape(owner), h, body))
		if mode == cbUnsigned && rec.Code < 300 {
			t.Fatalf("an unsigned callback = %d %s, want it refused", rec.Code, shorten(rec.Body.String()))
		}
		if rec.Code == http.StatusOK {
			var ans api.CallbackAnswer
			if err := json.Unmarshal(rec.Body.Bytes(), &ans); err != nil || (ans.Action != "continue" && ans.Action != "stop") {
				t.Fatalf("200 answer %s, want continue or stop", shorten(rec.Body.String()))
			}
		}
		a.resetJob(t, "alice", "job_fz")
		a.resetJob(t, "bob", "job_bob")
	})
}

// FuzzRunPodWebhook: POST /v1/callbacks/runpod/{token} with any token and
// body, and with validly made tokens for any job and attempt. The webhook
// writes nothing itself; RunPod is asked only for a current attempt.
func FuzzRunPodWebhook(f *testing.F) {
	good := pipeline.WebhookToken(master, "alice", "job_fz", 2)
	body := []byte(`{"id":"rp-1","status":"COMPLETED","output":{}}`)
	for _, token := range []string{good, good[:len(good)-2] + "AA", pipeline.WebhookToken([]byte("other"), "alice", "job_fz", 2), "", ".", "nope", "a.b.c",
		strings.Repeat("A", 10000), good + "/../x", "%2e%2e", good + "\x00"} {
		f.Add(token, body, "", "", 0, uint8(0))
	}
	for _, v := range []struct {
		owner, job string
		attempt    int
	}{{"alice", "job_fz", 2}, {"alice", "job_fz", 1}, {"bob", "job_fz", 2}, {"alice", "job_missing", 2}, {"", "", 0}, {"a\x00b", "job_fz", 2}, {"alice", "job_fz", -1}} {
		f.Add("", body, v.owner, v.job, v.attempt, uint8(1))
	}
	f.Add(good, []byte(strings.Repeat("x", httpapi.MaxCallbackBytes+1)), "", "", 0, uint8(0))

	a := newFuzzAPI(f, httpapi.Config{})
	a.storeJob("alice", "job_fz")
	f.Fuzz(func(t *testing.T, token string, body []byte, owner, jobID string, attempt int, mode uint8) {
		if mode%2 == 1 {
			token = pipeline.WebhookToken(master, owner, jobID, attempt)
		}
		a.runs.take()
		rec, writes := a.serve(t, fuzzRequest("POST", "/v1/callbacks/runpod/"+url.PathEscape(token), "", nil, body))
		calls := a.runs.take()
		if len(writes) > 0 {
			t.Fatalf("the RunPod webhook wrote %v", writes)
		}
		wOwner, wJob, wAttempt, err := pipeline.ParseWebhookToken(master, token)
		valid := err == nil
		if !valid && rec.Code < 300 {
			t.Fatalf("webhook with token %q = %d, want it refused", token, rec.Code)
		}
		if mode%2 == 1 && valid && rec.Code != http.StatusOK {
			t.Fatalf("webhook with a token made for %q %q %d = %d %s, want 200", owner, jobID, attempt, rec.Code, shorten(rec.Body.String()))
		}
		want := valid && wOwner == "alice" && wJob == "job_fz" && wAttempt == 2
		if want != (len(calls) == 1) || len(calls) > 1 {
			t.Fatalf("webhook with token for %q %q %d asked RunPod about %v; want it asked only about job_fz's current attempt", wOwner, wJob, wAttempt, calls)
		}
	})
}
