package httpapi_test

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/brightrun/brightrun/shared/api"
	"github.com/brightrun/brightrun/shared/httpapi"
	"github.com/brightrun/brightrun/shared/pipeline"
)

// A dataset declares the shape of its lines when it is created; the view
// shows it, messages when the request left it out.
func TestCreateDatasetTakesItsFormat(t *testing.T) {
	a := newTestAPI(t, httpapi.Config{})
	tests := []struct {
		name, format string // format is the JSON value, or "" to leave it out
		status       int
		want         string
	}{
		{"no format is messages", "", 201, "messages"},
		{"messages", `"messages"`, 201, "messages"},
		{"sharegpt", `"sharegpt"`, 201, "sharegpt"},
		{"alpaca", `"alpaca"`, 201, "alpaca"},
		{"an unknown format", `"openai"`, 400, "format"},
		{"a format in capitals", `"ShareGPT"`, 400, "format"},
		{"an empty format", `""`, 400, "format"},
		{"a null format", `null`, 400, "format"},
		{"a number format", `1`, 400, "format"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			body := `{"name":"x","size_bytes":10`
			if tt.format != "" {
				body += `,"format":` + tt.format
			}
			body += "}"
			if tt.status != 201 {
				var e api.ErrorBody
				if status := a.call("POST", "/v1/datasets", "alice-token", body, &e); status != tt.status || !strings.Contains(e.Error.Message, tt.want) {
					t.Errorf("POST /v1/datasets %s = %d %q, want %d naming %s", body, status, e.Error.Message, tt.status, tt.want)
				}
				return
			}
			var created api.CreatedDataset
			if status := a.call("POST", "/v1/datasets", "alice-token", body, &created); status != 201 || string(created.Dataset.Format) != tt.want {
				t.Fatalf("POST /v1/datasets %s = %d, format %q; want 201, %s", body, status, created.Dataset.Format, tt.want)
			}
			var got api.DatasetView
			if status := a.call("GET", "/v1/datasets/"+created.Dataset.ID, "alice-token", "", &got); status != 200 || string(got.Format) != tt.want {
				t.Errorf("GET the dataset = %d, format %q; want 200, %s", status, got.Format, tt.want)
			}
		})
	}
}

// Deleting a dataset removes its converted file with its upload and report.
func TestDeleteDatasetRemovesItsConvertedFile(t *testing.T) {
	a := newTestAPI(t, httpapi.Config{})
	ctx := context.Background()
	now := time.Now().UTC()
	key := pipeline.DatasetKey("alice", "ds_conv")
	d := &pipeline.Dataset{ID: "ds_conv", Owner: "alice", Name: "conv", Status: pipeline.DatasetReady, SizeBytes: 3, Format: pipeline.FormatShareGPT,
		ObjectKey: key, Converted: &pipeline.StoredFile{Key: pipeline.ConvertedKey(key), SizeBytes: 3}, CreatedAt: now, UpdatedAt: now}
	if err := a.store.CreateDataset(ctx, d); err != nil {
		t.Fatal(err)
	}
	for _, k := range []string{key, pipeline.ReportKey(key), pipeline.ConvertedKey(key)} {
		if _, err := a.blobs.Put(ctx, k, strings.NewReader("{}\n"), 3); err != nil {
			t.Fatal(err)
		}
	}
	if status := a.call("DELETE", "/v1/datasets/ds_conv", "alice-token", "", nil); status != 204 {
		t.Fatalf("DELETE = %d, want 204", status)
	}
	for _, k := range []string{key, pipeline.ReportKey(key), pipeline.ConvertedKey(key)} {
		if _, err := a.blobs.Stat(ctx, k); pipeline.ErrorCode(err) != pipeline.ENotFound {
			t.Errorf("Stat(%s) after delete = %v, want not found", k, err)
		}
	}
}

// A worker asking for its dataset's URL gets the converted file of a
// dataset uploaded in another format.
func TestAURLsCallbackNamesTheConvertedFile(t *testing.T) {
	a := newTestAPI(t, httpapi.Config{})
	a.handsOutURLs()
	a.submittedJob("job_c")
	a.readyDataset("alice", "ds_1", pipeline.DatasetReady)
	if _, err := pipeline.UpdateDataset(context.Background(), a.store, "alice", "ds_1", func(d *pipeline.Dataset) error {
		d.Format = pipeline.FormatAlpaca
		d.Converted = &pipeline.StoredFile{Key: pipeline.ConvertedKey(d.ObjectKey), SizeBytes: 10, SHA256: strings.Repeat("ab", 32)}
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	status, ans := a.urls("job_c", 2, 1, `{"purpose":"dataset","files":[{"name":"dataset.jsonl"}]}`)
	want := pipeline.ConvertedKey(pipeline.DatasetKey("alice", "ds_1"))
	if u := ans.URLs["dataset.jsonl"]; status != 200 || u.Method != "GET" || !strings.Contains(u.URL, want) {
		t.Errorf("urls = %d %+v, want 200 and a GET of %s", status, ans, want)
	}
}
