package localstack_test

import (
	"context"
	"io"
	"log/slog"
	"net/http"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/brightrun/brightrun/shared/localstack"
)

// An id longer than any record's (DynamoDB refuses keys over 1 KiB) names
// no record: every route answers 404, as for any unknown id, never 500.
func TestOverLongIDsAreNotFoundEverywhere(t *testing.T) {
	long := "ds_" + strings.Repeat("x", 2000)
	longJob := "job_" + strings.Repeat("y", 2000)
	routes := []struct{ method, path, body string }{
		{"GET", "/v1/datasets/" + long, ""},
		{"GET", "/v1/datasets/" + long + "/report", ""},
		{"DELETE", "/v1/datasets/" + long, ""},
		{"POST", "/v1/datasets/" + long + "/complete", `{"parts":[{"part_number":1,"etag":"abc"}]}`},
		{"POST", "/v1/estimates", `{"dataset_id":"` + long + `"}`},
		{"POST", "/v1/jobs", `{"dataset_id":"` + long + `"}`},
		{"GET", "/v1/jobs/" + longJob, ""},
		{"POST", "/v1/jobs/" + longJob + "/cancel", ""},
		{"GET", "/v1/jobs/" + longJob + "/events", ""},
		{"GET", "/v1/jobs/" + longJob + "/metrics", ""},
		{"GET", "/v1/jobs/" + longJob + "/artifacts", ""},
	}
	for _, backend := range []string{localstack.BackendLocal, localstack.BackendAWS} {
		t.Run("on the "+backend+" backend", func(t *testing.T) {
			if backend == localstack.BackendAWS {
				awsEnvironment(t)
			}
			s, err := localstack.Open(localstack.Config{Addr: "127.0.0.1:0", DataDir: t.TempDir(), DevTokens: "dev:dev-token", Backend: backend,
				Getenv: os.Getenv, ReconcileEvery: time.Hour, Log: slog.New(slog.NewTextHandler(io.Discard, nil))})
			if err != nil {
				t.Fatal(err)
			}
			if err := s.Start(); err != nil {
				t.Fatal(err)
			}
			defer s.Close(context.Background())
			for _, r := range routes {
				req, _ := http.NewRequest(r.method, s.URL()+r.path, strings.NewReader(r.body))
				req.Header.Set("Authorization", "Bearer dev-token")
				resp, err := http.DefaultClient.Do(req)
				if err != nil {
					t.Fatal(err)
				}
				resp.Body.Close()
				if resp.StatusCode != http.StatusNotFound {
					t.Errorf("%s %s (an id of 2,000 bytes) = %d, want 404", r.method, r.path[:min(len(r.path), 40)]+"…", resp.StatusCode)
				}
			}
		})
	}
}
