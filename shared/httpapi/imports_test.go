package httpapi_test

import (
	"context"
	"errors"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/brightrun/brightrun/shared/api"
	"github.com/brightrun/brightrun/shared/httpapi"
	"github.com/brightrun/brightrun/shared/netguard"
	"github.com/brightrun/brightrun/shared/pipeline"
)

func TestAnImportIsRefusedByItsShapeWithWhatWasWrong(t *testing.T) {
	a := newTestAPI(t, httpapi.Config{ImportS3Prefixes: []pipeline.S3Prefix{{Bucket: "training-files", Prefix: "exports/"}}})
	a.api.Imports = startImportFunc(func(context.Context, *pipeline.Dataset) error { return nil })
	tests := []struct {
		name, body string
		status     int
		message    string // a part of the error message
	}{
		{"a URL to the metadata service", `{"source":"https://169.254.169.254/latest/meta-data/"}`, 400, "link-local"},
		{"a URL to a private address", `{"source":"https://10.0.0.8/data.jsonl"}`, 400, "private address"},
		{"a URL to loopback in the cloud", `{"source":"https://127.0.0.1:8443/data.jsonl"}`, 400, "loopback"},
		{"plain http", `{"source":"http://example.com/data.jsonl"}`, 400, "only https"},
		{"a URL with a password", `{"source":"https://user:pw@example.com/data.jsonl"}`, 400, "user name or password"},
		{"another scheme", `{"source":"file:///etc/passwd"}`, 400, "https URL or s3://bucket/key"},
		{"an S3 key outside the allowed prefix", `{"source":"s3://training-files/private/a.jsonl"}`, 400, "not under a bucket and prefix"},
		{"another bucket", `{"source":"s3://someone-else/exports/a.jsonl"}`, 400, "not under a bucket and prefix"},
		{"no source", `{"name":"x"}`, 400, "source is required"},
		{"an unknown format", `{"source":"https://example.com/a.jsonl","format":"csv"}`, 400, "format must be"},
		{"a bad digest", `{"source":"https://example.com/a.jsonl","sha256":"abc"}`, 400, "sha256 must be"},
		{"a bad name", `{"source":"https://example.com/a.jsonl","name":"a/b"}`, 400, "must not contain /"},
		{"a blank name", `{"source":"https://example.com/a.jsonl","name":"  "}`, 400, "name is required"},
		{"a good URL", `{"source":"https://example.com/exports/chats.jsonl?sig=x"}`, 202, ""},
		{"a good S3 object", `{"source":"s3://training-files/exports/2026/chats.jsonl","name":"chats"}`, 202, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var e api.ErrorBody
			if got := a.call("POST", "/v1/datasets/import", "alice-token", tt.body, &e); got != tt.status {
				t.Fatalf("POST /v1/datasets/import %s = %d %+v, want %d", tt.body, got, e, tt.status)
			}
			if tt.status >= 400 && !strings.Contains(e.Error.Message, tt.message) {
				t.Errorf("POST /v1/datasets/import %s: message %q, want it to say %q", tt.body, e.Error.Message, tt.message)
			}
		})
	}
	var list api.DatasetList
	a.call("GET", "/v1/datasets", "alice-token", "", &list)
	if len(list.Datasets) != 2 {
		t.Fatalf("alice has %d datasets, want the 2 imports accepted", len(list.Datasets))
	}
	for _, d := range list.Datasets {
		if d.Status != pipeline.DatasetImporting || d.Source == "" {
			t.Errorf("imported dataset %+v, want importing with its source", d)
		}
	}
	if list.Datasets[1].Name != "chats.jsonl" {
		t.Errorf("an import without a name is named %q, want the file's name chats.jsonl", list.Datasets[1].Name)
	}
	a.call("GET", "/v1/datasets", "bob-token", "", &list)
	if len(list.Datasets) != 0 {
		t.Errorf("bob sees %d datasets, want none of alice's imports", len(list.Datasets))
	}
}

func TestTheLocalPolicyAcceptsALoopbackURL(t *testing.T) {
	a := newTestAPI(t, httpapi.Config{ImportPolicy: netguard.Local})
	a.api.Imports = startImportFunc(func(context.Context, *pipeline.Dataset) error { return nil })
	if got := a.call("POST", "/v1/datasets/import", "alice-token", `{"source":"http://127.0.0.1:9/a.jsonl"}`, nil); got != 202 {
		t.Errorf("import of a loopback URL under the local policy = %d, want 202", got)
	}
	if got := a.call("POST", "/v1/datasets/import", "alice-token", `{"source":"http://10.1.2.3/a.jsonl"}`, nil); got != 400 {
		t.Errorf("import of a private URL under the local policy = %d, want 400", got)
	}
}

func TestAnImportThatCannotStartLeavesNoDataset(t *testing.T) {
	a := newTestAPI(t, httpapi.Config{})
	if got := a.call("POST", "/v1/datasets/import", "alice-token", `{"source":"https://example.com/a.jsonl"}`, nil); got != 503 {
		t.Errorf("import without an importer = %d, want 503", got)
	}
	a.api.Imports = startImportFunc(func(context.Context, *pipeline.Dataset) error {
		return pipeline.Errorf(pipeline.EUnavailable, "the import queue is down")
	})
	if got := a.call("POST", "/v1/datasets/import", "alice-token", `{"source":"https://example.com/a.jsonl"}`, nil); got != 503 {
		t.Errorf("import whose start failed = %d, want 503", got)
	}
	a.api.Imports = startImportFunc(func(context.Context, *pipeline.Dataset) error { return errors.New("boom") })
	if got := a.call("POST", "/v1/datasets/import", "alice-token", `{"source":"https://example.com/a.jsonl"}`, nil); got != 500 {
		t.Errorf("import whose start failed = %d, want 500", got)
	}
	var list api.DatasetList
	a.call("GET", "/v1/datasets", "alice-token", "", &list)
	if len(list.Datasets) != 0 {
		t.Errorf("after imports that never started alice has %+v, want no dataset", list.Datasets)
	}
}

// /v1/datasets/import is a resource of its own, not a dataset id: only
// POST is allowed on it, and the 405 says so.
func TestTheImportPathAllowsOnlyPost(t *testing.T) {
	a := newTestAPI(t, httpapi.Config{})
	for _, method := range []string{"GET", "DELETE", "OPTIONS", "PUT"} {
		req, _ := http.NewRequest(method, a.srv.URL+"/v1/datasets/import", nil)
		req.Header.Set("Authorization", "Bearer alice-token")
		resp, err := a.srv.Client().Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusMethodNotAllowed || resp.Header.Get("Allow") != "POST" {
			t.Errorf("%s /v1/datasets/import = %d, Allow %q; want 405, Allow POST", method, resp.StatusCode, resp.Header.Get("Allow"))
		}
	}
	// Other literal paths keep the methods the router gives them.
	req, _ := http.NewRequest("PUT", a.srv.URL+"/v1/datasets", nil)
	resp, err := a.srv.Client().Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusMethodNotAllowed || resp.Header.Get("Allow") != "GET, HEAD, POST" {
		t.Errorf("PUT /v1/datasets = %d, Allow %q; want 405, Allow GET, HEAD, POST", resp.StatusCode, resp.Header.Get("Allow"))
	}
}

// An import whose every try crashed before recording why (its message in
// the dead-letter queue) does not stay importing for ever: read after
// pipeline.ImportDeadline, it is invalid with the reason.
func TestAnImportStuckPastItsDeadlineEndsInvalidWhenRead(t *testing.T) {
	a := newTestAPI(t, httpapi.Config{})
	ctx := context.Background()
	src, err := pipeline.ParseImportSource("https://example.com/chats.jsonl")
	if err != nil {
		t.Fatal(err)
	}
	long := time.Now().UTC().Add(-pipeline.ImportDeadline - time.Minute)
	recent := time.Now().UTC().Add(-time.Hour)
	for id, at := range map[string]time.Time{"ds_stuck": long, "ds_busy": recent} {
		d := &pipeline.Dataset{ID: id, Owner: "alice", Name: id, Status: pipeline.DatasetImporting, Source: &src,
			ObjectKey: pipeline.DatasetKey("alice", id), CreatedAt: at, UpdatedAt: at}
		if err := a.store.CreateDataset(ctx, d); err != nil {
			t.Fatal(err)
		}
	}
	var list api.DatasetList
	if status := a.call("GET", "/v1/datasets", "alice-token", "", &list); status != 200 || len(list.Datasets) != 2 {
		t.Fatalf("GET /v1/datasets = %d, %d datasets", status, len(list.Datasets))
	}
	for _, d := range list.Datasets {
		want := pipeline.DatasetImporting
		if d.ID == "ds_stuck" {
			want = pipeline.DatasetInvalid
		}
		if d.Status != want {
			t.Errorf("%s in the list is %s, want %s", d.ID, d.Status, want)
		}
	}
	stored, err := a.store.GetDataset(ctx, "alice", "ds_stuck")
	if err != nil {
		t.Fatal(err)
	}
	if stored.Status != pipeline.DatasetInvalid || !strings.Contains(stored.Error, "did not finish") {
		t.Errorf("stored: %s %q, want invalid with the reason", stored.Status, stored.Error)
	}
	var one api.DatasetView
	if status := a.call("GET", "/v1/datasets/ds_busy", "alice-token", "", &one); status != 200 || one.Status != pipeline.DatasetImporting {
		t.Errorf("GET ds_busy = %d %s, want importing (within its deadline)", status, one.Status)
	}
}
