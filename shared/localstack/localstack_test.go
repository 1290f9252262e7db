package localstack_test

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/brightrun/brightrun/shared/localstack"
)

// MustStart opens and starts a local stack on a free port over dir.
func MustStart(tb testing.TB, dir string) *localstack.Stack {
	tb.Helper()
	s, err := localstack.Open(localstack.Config{
		Addr: "127.0.0.1:0", DataDir: dir, DevTokens: "dev:dev-token",
		Log: slog.New(slog.NewTextHandler(io.Discard, nil)),
	})
	if err != nil {
		tb.Fatal(err)
	}
	if err := s.Start(); err != nil {
		tb.Fatal(err)
	}
	return s
}

func call(t *testing.T, method, url, body string, out any) int {
	t.Helper()
	req, _ := http.NewRequest(method, url, strings.NewReader(body))
	req.Header.Set("Authorization", "Bearer dev-token")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if out != nil {
		if err := json.NewDecoder(resp.Body).Decode(out); err != nil {
			t.Fatal(err)
		}
	}
	return resp.StatusCode
}

func TestUploadSurvivesRestart(t *testing.T) {
	dir := t.TempDir()
	s := MustStart(t, dir)
	var created struct {
		Dataset struct{ ID string }
		Upload  struct {
			Request struct{ Method, URL string }
		}
	}
	if status := call(t, "POST", s.URL()+"/v1/datasets", `{"name":"x","size_bytes":1234}`, &created); status != 201 {
		t.Fatalf("POST /v1/datasets = %d, want 201", status)
	}
	body := bytes.Repeat([]byte("y"), 1234)
	req, _ := http.NewRequest(created.Upload.Request.Method, created.Upload.Request.URL, bytes.NewReader(body))
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != 200 {
		t.Fatalf("PUT = %d, want 200", resp.StatusCode)
	}
	if err := s.Close(context.Background()); err != nil {
		t.Fatal(err)
	}

	s = MustStart(t, dir)
	defer s.Close(context.Background())
	var list struct {
		Datasets []struct{ ID string }
	}
	if status := call(t, "GET", s.URL()+"/v1/datasets", "", &list); status != 200 || len(list.Datasets) != 1 || list.Datasets[0].ID != created.Dataset.ID {
		t.Fatalf("after a restart GET /v1/datasets = %d %+v, want the dataset %s", status, list, created.Dataset.ID)
	}
	d, err := s.Store.GetDataset(t.Context(), "dev", created.Dataset.ID)
	if err != nil {
		t.Fatal(err)
	}
	rc, info, err := s.Blobs.Open(t.Context(), d.ObjectKey)
	if err != nil {
		t.Fatalf("object after a restart: %v", err)
	}
	got, _ := io.ReadAll(rc)
	rc.Close()
	if info.Size != 1234 || !bytes.Equal(got, body) {
		t.Errorf("object after a restart is %d bytes, want the 1234 uploaded", info.Size)
	}
}

// An upload through the local stack is validated in the background and
// ends ready, with its report served by the API.
func TestUploadIsValidated(t *testing.T) {
	s := MustStart(t, t.TempDir())
	defer s.Close(context.Background())
	sample, err := os.ReadFile("../../testdata/datasets/sample.jsonl")
	if err != nil {
		t.Fatal(err)
	}
	var created struct {
		Dataset struct{ ID string }
		Upload  struct {
			Request struct{ Method, URL string }
		}
	}
	body := fmt.Sprintf(`{"name":"sample","size_bytes":%d}`, len(sample))
	if status := call(t, "POST", s.URL()+"/v1/datasets", body, &created); status != 201 {
		t.Fatalf("POST /v1/datasets = %d, want 201", status)
	}
	req, _ := http.NewRequest(created.Upload.Request.Method, created.Upload.Request.URL, bytes.NewReader(sample))
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	var d struct {
		Status     string
		Validation struct {
			Examples int64
			Tokens   struct{ Total, Trained int64 }
		}
	}
	deadline := time.Now().Add(20 * time.Second)
	for d.Status != "ready" && d.Status != "invalid" && time.Now().Before(deadline) {
		time.Sleep(50 * time.Millisecond)
		call(t, "GET", s.URL()+"/v1/datasets/"+created.Dataset.ID, "", &d)
	}
	if d.Status != "ready" || d.Validation.Examples != 40 || d.Validation.Tokens.Trained == 0 {
		t.Fatalf("dataset after upload = %+v, want ready with 40 examples and trained tokens", d)
	}
	var report struct {
		Valid  bool
		Issues []any
		Tokens struct{ Total int64 }
	}
	if status := call(t, "GET", s.URL()+"/v1/datasets/"+created.Dataset.ID+"/report", "", &report); status != 200 || !report.Valid || report.Tokens.Total != d.Validation.Tokens.Total {
		t.Errorf("GET report = %d %+v, want 200, valid, %d tokens", status, report, d.Validation.Tokens.Total)
	}
}

func TestSecondStackOnTheSameDataIsRefused(t *testing.T) {
	dir := t.TempDir()
	s := MustStart(t, dir)
	defer s.Close(context.Background())
	_, err := localstack.Open(localstack.Config{Addr: "127.0.0.1:0", DataDir: dir, DevTokens: "dev:dev-token"})
	if err == nil || !strings.Contains(err.Error(), "another local stack") {
		t.Errorf("opening a second stack on the same data = %v, want an error naming the cause", err)
	}
}
