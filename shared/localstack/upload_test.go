package localstack_test

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/brightrun/brightrun/shared/localstack"
	"github.com/brightrun/brightrun/shared/pipeline"
)

// An upload URL writes once: a second PUT with it, once the dataset left
// awaiting_upload, is refused, and the dataset keeps the file validation
// checked. On the embedded blobs (the signed URL) and on S3 (If-None-Match
// on the presigned PUT; versitygw enforces it).
func TestAnUploadURLWritesOnce(t *testing.T) {
	for _, backend := range []string{localstack.BackendLocal, localstack.BackendAWS} {
		t.Run("on the "+backend+" backend", func(t *testing.T) {
			cfg := localstack.Config{Addr: "127.0.0.1:0", DataDir: t.TempDir(), DevTokens: "dev:dev-token", Backend: backend,
				Getenv: os.Getenv, ReconcileEvery: time.Hour, Log: slog.New(slog.NewTextHandler(io.Discard, nil))}
			if backend == localstack.BackendAWS {
				awsEnvironment(t)
			}
			s, err := localstack.Open(cfg)
			if err != nil {
				t.Fatal(err)
			}
			if err := s.Start(); err != nil {
				t.Fatal(err)
			}
			defer s.Close(context.Background())
			sample, err := os.ReadFile("../../testdata/datasets/sample.jsonl")
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
			if status := call(t, "POST", s.URL()+"/v1/datasets", fmt.Sprintf(`{"name":"sample","size_bytes":%d}`, len(sample)), &created); status != 201 {
				t.Fatalf("POST /v1/datasets = %d, want 201", status)
			}
			put := func(body []byte) int {
				t.Helper()
				req, _ := http.NewRequest(created.Upload.Request.Method, created.Upload.Request.URL, bytes.NewReader(body))
				for k, v := range created.Upload.Request.Headers {
					if !strings.EqualFold(k, "Content-Length") {
						req.Header.Set(k, v)
					}
				}
				resp, err := http.DefaultClient.Do(req)
				if err != nil {
					t.Fatal(err)
				}
				resp.Body.Close()
				return resp.StatusCode
			}
			if status := put(sample); status != http.StatusOK {
				t.Fatalf("first PUT = %d, want 200", status)
			}
			var d struct{ Status string }
			waitFor(t, 20*time.Second, func() bool {
				call(t, "GET", s.URL()+"/v1/datasets/"+created.Dataset.ID, "", &d)
				return d.Status == "ready" || d.Status == "invalid"
			}, "the dataset to be validated")
			if d.Status != "ready" {
				t.Fatalf("dataset = %s, want ready", d.Status)
			}
			// Another file of the same size: a different first line.
			other := bytes.Replace(sample, []byte(`"content"`), []byte(`"CONTENT"`), 1)
			if status := put(other); status != http.StatusPreconditionFailed {
				t.Errorf("second PUT with the upload URL after the dataset is ready = %d, want 412", status)
			}
			time.Sleep(300 * time.Millisecond) // a validation the PUT would have started
			call(t, "GET", s.URL()+"/v1/datasets/"+created.Dataset.ID, "", &d)
			if d.Status != "ready" {
				t.Errorf("after the refused PUT the dataset is %s, want ready", d.Status)
			}
			rc, _, err := s.Blobs.Open(context.Background(), pipeline.DatasetKey("dev", created.Dataset.ID))
			if err != nil {
				t.Fatal(err)
			}
			h := sha256.New()
			io.Copy(h, rc)
			rc.Close()
			want := sha256.Sum256(sample)
			if got := hex.EncodeToString(h.Sum(nil)); got != hex.EncodeToString(want[:]) {
				t.Errorf("the stored file's sha256 is %s, want the validated upload's %x", got, want)
			}
		})
	}
}
