package httpapi_test

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/brightrun/brightrun/shared/api"

	"github.com/brightrun/brightrun/shared/catalog"
	"github.com/brightrun/brightrun/shared/httpapi"
	"github.com/brightrun/brightrun/shared/local"
	"github.com/brightrun/brightrun/shared/netguard"
	"github.com/brightrun/brightrun/shared/pipeline"
	"github.com/brightrun/brightrun/shared/webhooks"
)

// testAPI is the API over real local adapters, served by httptest, with
// the blob URLs on the same server.
type testAPI struct {
	*testing.T
	srv   *httptest.Server
	store *local.Store
	blobs *local.Blobs
	queue *local.Queue
	api   *httpapi.Server
}

func newTestAPI(t *testing.T, cfg httpapi.Config) *testAPI {
	t.Helper()
	dir := t.TempDir()
	db, err := local.OpenDB(dir)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })
	store, err := local.NewStore(db)
	if err != nil {
		t.Fatal(err)
	}
	blobs, err := local.NewBlobs(local.BlobsOptions{Dir: dir + "/blobs", Secret: bytes.Repeat([]byte("k"), 32)})
	if err != nil {
		t.Fatal(err)
	}
	tokens, _ := httpapi.ParseDevTokens("alice:alice-token,bob:bob-token")
	queue, err := local.NewQueue(db, "jobs", local.QueueOptions{})
	if err != nil {
		t.Fatal(err)
	}
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	jobs := &pipeline.Lifecycle{Store: store, JobLog: store, Queue: queue, Objects: blobs, Log: log}
	hooksQueue, err := local.NewQueue(db, "webhooks", local.QueueOptions{})
	if err != nil {
		t.Fatal(err)
	}
	hooks := &webhooks.Service{Store: store, Queue: hooksQueue, Policy: netguard.Local, Log: log}
	api := &httpapi.Server{Store: store, Blobs: blobs, Auth: tokens, Config: cfg, JobLog: store, Jobs: jobs, Catalog: catalog.Default(), Log: log,
		Webhooks: hooks}
	mux := http.NewServeMux()
	mux.Handle(local.BlobsPath, blobs)
	mux.Handle("/", api.Handler())
	srv := httptest.NewServer(mux)
	t.Cleanup(srv.Close)
	blobs.SetBaseURL(srv.URL)
	return &testAPI{T: t, srv: srv, store: store, blobs: blobs, queue: queue, api: api}
}

// call makes an API request as the user with token (none when ""), and
// decodes a JSON answer into out when out is not nil.
func (a *testAPI) call(method, path, token, body string, out any) int {
	a.Helper()
	req, err := http.NewRequest(method, a.srv.URL+path, strings.NewReader(body))
	if err != nil {
		a.Fatal(err)
	}
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	resp, err := a.srv.Client().Do(req)
	if err != nil {
		a.Fatal(err)
	}
	defer resp.Body.Close()
	data, _ := io.ReadAll(resp.Body)
	if resp.StatusCode >= 400 {
		var e api.ErrorBody
		if err := json.Unmarshal(data, &e); err != nil || e.Error.Code == "" || e.Error.Message == "" {
			a.Errorf("%s %s = %d with body %q, want the error shape", method, path, resp.StatusCode, data)
		}
	}
	if out != nil && len(data) > 0 && resp.StatusCode != http.StatusNoContent {
		if err := json.Unmarshal(data, out); err != nil {
			a.Fatalf("%s %s: decode %q: %v", method, path, data, err)
		}
	}
	return resp.StatusCode
}

type created struct {
	Dataset api.DatasetView `json:"dataset"`
	Upload  api.Upload      `json:"upload"`
}

func (a *testAPI) put(req pipeline.SignedRequest, body []byte) (int, string) {
	a.Helper()
	r, _ := http.NewRequest(req.Method, req.URL, bytes.NewReader(body))
	resp, err := a.srv.Client().Do(r)
	if err != nil {
		a.Fatal(err)
	}
	resp.Body.Close()
	return resp.StatusCode, resp.Header.Get("ETag")
}

func TestCreateDatasetRefusesBadRequests(t *testing.T) {
	a := newTestAPI(t, httpapi.Config{})
	huge := `{"name":"` + strings.Repeat("a", httpapi.MaxBodyBytes) + `","size_bytes":10}`
	tests := []struct {
		name, body string
		status     int
		message    string
	}{
		{"malformed JSON", `{"name":"x",`, 400, "not valid JSON"},
		{"not JSON at all", `name=x`, 400, "not valid JSON"},
		{"an empty body", ``, 400, "empty"},
		{"an array", `[1]`, 400, "JSON object"},
		{"an unknown field", `{"name":"x","size_bytes":1,"colour":"red"}`, 400, `unknown field "colour"`},
		{"a missing name", `{"size_bytes":10}`, 400, "name is required"},
		{"a blank name", `{"name":"  ","size_bytes":10}`, 400, "name is required"},
		{"a name with a slash", `{"name":"../etc","size_bytes":10}`, 400, "must not contain /"},
		{"a name with a control character", `{"name":"a\u0007b","size_bytes":10}`, 400, "control"},
		{"a name of invalid UTF-8", "{\"name\":\"a\xffb\",\"size_bytes\":10}", 400, "name"},
		{"a name too long", `{"name":"` + strings.Repeat("n", 201) + `","size_bytes":10}`, 400, "at most 200"},
		{"a missing size", `{"name":"x"}`, 400, "size_bytes is required"},
		{"a size of zero", `{"name":"x","size_bytes":0}`, 400, "at least 1"},
		{"a negative size", `{"name":"x","size_bytes":-5}`, 400, "at least 1"},
		{"a size over the limit", `{"name":"x","size_bytes":5368709121}`, 413, "5 GiB"},
		{"a size of the wrong type", `{"name":"x","size_bytes":"12"}`, 400, "size_bytes must be an integer"},
		{"a fractional size", `{"name":"x","size_bytes":1.5}`, 400, "size_bytes must be an integer"},
		{"a bad sha256", `{"name":"x","size_bytes":1,"sha256":"xyz"}`, 400, "64 hex digits"},
		{"two objects", `{"name":"x","size_bytes":1}{"name":"y","size_bytes":1}`, 400, "one JSON object"},
		{"a body over the limit", huge, 413, "over"},
	}
	for _, tt := range tests {
		t.Run("refuses "+tt.name, func(t *testing.T) {
			var e api.ErrorBody
			status := a.call("POST", "/v1/datasets", "alice-token", tt.body, &e)
			if status != tt.status || !strings.Contains(e.Error.Message, tt.message) {
				t.Errorf("POST /v1/datasets %.40q = %d %q, want %d and a message containing %q", tt.body, status, e.Error.Message, tt.status, tt.message)
			}
		})
	}
	var list struct{ Datasets []api.DatasetView }
	a.call("GET", "/v1/datasets", "alice-token", "", &list)
	if len(list.Datasets) != 0 {
		t.Errorf("after only bad requests, %d datasets exist, want 0", len(list.Datasets))
	}
}

func TestAuthentication(t *testing.T) {
	a := newTestAPI(t, httpapi.Config{})
	for _, tc := range []struct{ name, header string }{
		{"no header", ""},
		{"an unknown token", "Bearer nope"},
		{"another scheme", "Basic YWxpY2U6eA=="},
		{"an empty bearer", "Bearer "},
	} {
		t.Run("refuses "+tc.name, func(t *testing.T) {
			req, _ := http.NewRequest("GET", a.srv.URL+"/v1/datasets", nil)
			if tc.header != "" {
				req.Header.Set("Authorization", tc.header)
			}
			resp, err := a.srv.Client().Do(req)
			if err != nil {
				t.Fatal(err)
			}
			resp.Body.Close()
			if resp.StatusCode != 401 {
				t.Errorf("GET /v1/datasets with %s = %d, want 401", tc.name, resp.StatusCode)
			}
		})
	}
	if status := a.call("GET", "/healthz", "", "", nil); status != 200 {
		t.Errorf("GET /healthz without a token = %d, want 200", status)
	}
}

func TestSingleUpload(t *testing.T) {
	a := newTestAPI(t, httpapi.Config{})
	var c created
	if status := a.call("POST", "/v1/datasets", "alice-token", `{"name":"support chats","size_bytes":1234}`, &c); status != 201 {
		t.Fatalf("POST /v1/datasets = %d, want 201", status)
	}
	if c.Dataset.Status != pipeline.DatasetAwaitingUpload || c.Upload.Type != "single" || c.Upload.Request == nil {
		t.Fatalf("created = %+v, want an awaiting_upload dataset with a single PUT", c)
	}
	if status, _ := a.put(*c.Upload.Request, make([]byte, 1000)); status != 403 {
		t.Errorf("PUT of 1000 bytes to the 1234-byte URL = %d, want 403", status)
	}
	if status, _ := a.put(*c.Upload.Request, make([]byte, 1234)); status != 200 {
		t.Fatalf("PUT of 1234 bytes = %d, want 200", status)
	}
	d, err := a.store.GetDataset(t.Context(), "alice", c.Dataset.ID)
	if err != nil {
		t.Fatal(err)
	}
	info, err := a.blobs.Stat(t.Context(), d.ObjectKey)
	if err != nil || info.Size != 1234 {
		t.Errorf("stored object = %+v, %v; want 1234 bytes", info, err)
	}
	var got api.DatasetView
	if status := a.call("GET", "/v1/datasets/"+c.Dataset.ID, "alice-token", "", &got); status != 200 || got.Name != "support chats" {
		t.Errorf("GET dataset = %d %+v, want 200 and the dataset", status, got)
	}
}

func TestMultipartUpload(t *testing.T) {
	a := newTestAPI(t, httpapi.Config{MultipartThreshold: 6 << 20, PartSize: 5 << 20})
	size := 12<<20 + 17
	var c created
	body := fmt.Sprintf(`{"name":"big","size_bytes":%d}`, size)
	if status := a.call("POST", "/v1/datasets", "alice-token", body, &c); status != 201 {
		t.Fatalf("POST /v1/datasets = %d, want 201", status)
	}
	if c.Upload.Type != "multipart" || len(c.Upload.Parts) != 3 || c.Upload.Parts[2].SizeBytes != 2<<20+17 {
		t.Fatalf("upload = %+v, want 3 parts of 5, 5 and 2 MiB + 17", c.Upload)
	}
	data := bytes.Repeat([]byte("0123456789abcdef"), size/16+1)[:size]
	var parts []pipeline.CompletedPart
	off := int64(0)
	for _, p := range c.Upload.Parts {
		status, etag := a.put(p.SignedRequest, data[off:off+p.SizeBytes])
		if status != 200 {
			t.Fatalf("PUT part %d = %d, want 200", p.PartNumber, status)
		}
		off += p.SizeBytes
		parts = append(parts, pipeline.CompletedPart{Number: p.PartNumber, ETag: etag})
	}
	partsJSON, _ := json.Marshal(map[string]any{"parts": parts})
	if status := a.call("POST", "/v1/datasets/"+c.Dataset.ID+"/complete", "bob-token", string(partsJSON), nil); status != 404 {
		t.Errorf("bob completing alice's upload = %d, want 404", status)
	}
	if status := a.call("POST", "/v1/datasets/"+c.Dataset.ID+"/complete", "alice-token", `{"parts":[]}`, nil); status != 400 {
		t.Errorf("complete with no parts = %d, want 400", status)
	}
	if status := a.call("POST", "/v1/datasets/"+c.Dataset.ID+"/complete", "alice-token", string(partsJSON), nil); status != 200 {
		t.Fatalf("complete = %d, want 200", status)
	}
	d, _ := a.store.GetDataset(t.Context(), "alice", c.Dataset.ID)
	rc, info, err := a.blobs.Open(t.Context(), d.ObjectKey)
	if err != nil {
		t.Fatal(err)
	}
	stored, _ := io.ReadAll(rc)
	rc.Close()
	if info.Size != int64(size) || !bytes.Equal(stored, data) || d.UploadID != "" {
		t.Errorf("after complete: %d bytes stored (equal %v), upload id %q; want the %d bytes sent and no upload id", info.Size, bytes.Equal(stored, data), d.UploadID, size)
	}
	if status := a.call("POST", "/v1/datasets/"+c.Dataset.ID+"/complete", "alice-token", string(partsJSON), nil); status != 200 {
		t.Errorf("completing again = %d, want 200 (completing is idempotent)", status)
	}
}

func TestDatasetsAreVisibleOnlyToTheirOwner(t *testing.T) {
	a := newTestAPI(t, httpapi.Config{})
	var c created
	a.call("POST", "/v1/datasets", "alice-token", `{"name":"mine","size_bytes":10}`, &c)
	id := c.Dataset.ID
	for _, tc := range []struct{ method, path, body string }{
		{"GET", "/v1/datasets/" + id, ""},
		{"DELETE", "/v1/datasets/" + id, ""},
		{"POST", "/v1/datasets/" + id + "/complete", `{"parts":[{"part_number":1,"etag":"x"}]}`},
	} {
		t.Run(tc.method+" "+tc.path+" by another user is 404", func(t *testing.T) {
			if status := a.call(tc.method, tc.path, "bob-token", tc.body, nil); status != 404 {
				t.Errorf("bob %s %s = %d, want 404", tc.method, tc.path, status)
			}
		})
	}
	var list struct{ Datasets []api.DatasetView }
	a.call("GET", "/v1/datasets", "bob-token", "", &list)
	if len(list.Datasets) != 0 {
		t.Errorf("bob lists %d datasets, want 0", len(list.Datasets))
	}
	if status := a.call("GET", "/v1/datasets/"+id, "alice-token", "", nil); status != 200 {
		t.Errorf("alice GET her dataset after bob's attempts = %d, want 200", status)
	}
}

func TestDeleteDataset(t *testing.T) {
	a := newTestAPI(t, httpapi.Config{})
	var c created
	a.call("POST", "/v1/datasets", "alice-token", `{"name":"gone","size_bytes":5}`, &c)
	a.put(*c.Upload.Request, []byte("hello"))
	d, _ := a.store.GetDataset(t.Context(), "alice", c.Dataset.ID)
	if status := a.call("DELETE", "/v1/datasets/"+c.Dataset.ID, "alice-token", "", nil); status != 204 {
		t.Fatalf("DELETE = %d, want 204", status)
	}
	if status := a.call("GET", "/v1/datasets/"+c.Dataset.ID, "alice-token", "", nil); status != 404 {
		t.Errorf("GET after DELETE = %d, want 404", status)
	}
	if _, err := a.blobs.Stat(t.Context(), d.ObjectKey); pipeline.ErrorCode(err) != pipeline.ENotFound {
		t.Errorf("object after DELETE: %v, want not found", err)
	}
	if status := a.call("DELETE", "/v1/datasets/"+c.Dataset.ID, "alice-token", "", nil); status != 404 {
		t.Errorf("DELETE again = %d, want 404", status)
	}
}

func TestListDatasetsPaginates(t *testing.T) {
	a := newTestAPI(t, httpapi.Config{})
	for i := 0; i < 5; i++ {
		a.call("POST", "/v1/datasets", "alice-token", fmt.Sprintf(`{"name":"set %d","size_bytes":10}`, i), nil)
	}
	var names []string
	cursor := ""
	for {
		var page struct {
			Datasets   []api.DatasetView
			NextCursor string `json:"next_cursor"`
		}
		if status := a.call("GET", "/v1/datasets?limit=2&cursor="+cursor, "alice-token", "", &page); status != 200 {
			t.Fatalf("list = %d", status)
		}
		for _, d := range page.Datasets {
			names = append(names, d.Name)
		}
		if page.NextCursor == "" {
			break
		}
		cursor = page.NextCursor
	}
	if fmt.Sprint(names) != "[set 4 set 3 set 2 set 1 set 0]" {
		t.Errorf("paged names = %v, want newest first", names)
	}
	for _, q := range []string{"?limit=0", "?limit=101", "?limit=x", "?cursor=%21%21"} {
		if status := a.call("GET", "/v1/datasets"+q, "alice-token", "", nil); status != 400 {
			t.Errorf("GET /v1/datasets%s = %d, want 400", q, status)
		}
	}
}

func TestUnknownRoutesUseTheErrorShape(t *testing.T) {
	a := newTestAPI(t, httpapi.Config{})
	if status := a.call("GET", "/v1/nothing", "alice-token", "", nil); status != 404 {
		t.Errorf("GET /v1/nothing = %d, want 404", status)
	}
	if status := a.call("PATCH", "/v1/datasets", "alice-token", "", nil); status != 405 {
		t.Errorf("PATCH /v1/datasets = %d, want 405", status)
	}
}

func TestDatasetKeyRoundTrips(t *testing.T) {
	for _, owner := range []string{"dev", "user@example.com", "a1b2-c3"} {
		key := pipeline.DatasetKey(owner, "ds_01abc")
		gotOwner, gotID, err := pipeline.ParseDatasetKey(key)
		if err != nil || gotOwner != owner || gotID != "ds_01abc" {
			t.Errorf("ParseDatasetKey(%q) = %q, %q, %v; want %q, ds_01abc", key, gotOwner, gotID, err, owner)
		}
	}
	for _, key := range []string{"", "datasets/zz/ds.jsonl", "other/646576/ds.jsonl", "datasets/646576/ds.json", "datasets/646576/.jsonl", "datasets/646576/x/ds.jsonl"} {
		if _, _, err := pipeline.ParseDatasetKey(key); err == nil {
			t.Errorf("ParseDatasetKey(%q) succeeded, want an error", key)
		}
	}
}

func decodeBody(t *testing.T, resp *http.Response, out any) {
	t.Helper()
	if err := json.NewDecoder(resp.Body).Decode(out); err != nil {
		t.Fatalf("decode response: %v", err)
	}
}

// A completion may list the most parts an upload has (1,024), each with
// the longest ETag the document allows: it is read, not refused as too
// large (the upload it names does not exist, so it is then not found).
func TestACompletionOfTheMostPartsFitsItsBodyLimit(t *testing.T) {
	a := newTestAPI(t, httpapi.Config{})
	parts := make([]string, 1024)
	for i := range parts {
		parts[i] = fmt.Sprintf(`{"part_number": %d, "etag": "\"%s\""}`, i+1, strings.Repeat("f", 126))
	}
	body := `{"parts": [` + strings.Join(parts, ", ") + `]}`
	if len(body) <= httpapi.MaxBodyBytes {
		t.Fatalf("the body is %d bytes: the test wants one over the usual limit", len(body))
	}
	if status := a.call("POST", "/v1/datasets/ds_missing/complete", "alice-token", body, nil); status == 413 || status != 404 {
		t.Errorf("POST complete with 1,024 parts (%d bytes) = %d, want 404 (read, and no such dataset)", len(body), status)
	}
}
