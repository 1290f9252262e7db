package localstack_test

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"os"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/s3"

	"github.com/brightrun/brightrun/shared/awstest"
	"github.com/brightrun/brightrun/shared/localstack"
	"github.com/brightrun/brightrun/shared/netguard"
	"github.com/brightrun/brightrun/shared/s3blob"
)

// importedDataset is a dataset as GET /v1/datasets/{id} shows it, with
// its validation kept as the JSON it was.
type importedDataset struct {
	ID         string
	Name       string
	Status     string
	Format     string
	Source     string
	SizeBytes  int64 `json:"size_bytes"`
	Error      string
	Validation json.RawMessage
}

func startImportStack(t *testing.T, cfg localstack.Config) *localstack.Stack {
	t.Helper()
	cfg.Addr, cfg.DataDir, cfg.DevTokens, cfg.Getenv = "127.0.0.1:0", t.TempDir(), "dev:dev-token", os.Getenv
	cfg.ReconcileEvery = time.Hour
	cfg.Log = slog.New(slog.NewTextHandler(io.Discard, nil))
	if cfg.ImportRetryAfter == 0 {
		cfg.ImportRetryAfter = 20 * time.Millisecond
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

func getDataset(t *testing.T, s *localstack.Stack, id string) importedDataset {
	t.Helper()
	var d importedDataset
	if status := call(t, "GET", s.URL()+"/v1/datasets/"+id, "", &d); status != 200 {
		t.Fatalf("GET /v1/datasets/%s = %d", id, status)
	}
	return d
}

// startImport posts an import and returns the dataset it answered.
func startImport(t *testing.T, s *localstack.Stack, body string) importedDataset {
	t.Helper()
	var d importedDataset
	if status := call(t, "POST", s.URL()+"/v1/datasets/import", body, &d); status != http.StatusAccepted {
		t.Fatalf("POST /v1/datasets/import %s = %d, want 202", body, status)
	}
	if d.Status != "importing" || d.ID == "" {
		t.Fatalf("import answered %+v, want a dataset importing", d)
	}
	return d
}

// waitEnded waits for the dataset to be ready or invalid.
func waitEnded(t *testing.T, s *localstack.Stack, id string) importedDataset {
	t.Helper()
	var d importedDataset
	waitFor(t, 30*time.Second, func() bool {
		d = getDataset(t, s, id)
		return d.Status == "ready" || d.Status == "invalid"
	}, "dataset "+id+" to be ready or invalid")
	return d
}

// fileServer serves the test datasets, and a redirect to them.
func fileServer(t *testing.T, files map[string][]byte) *httptest.Server {
	t.Helper()
	mux := http.NewServeMux()
	for name, data := range files {
		mux.HandleFunc("GET /files/"+name, func(w http.ResponseWriter, r *http.Request) {
			http.ServeContent(w, r, name, time.Time{}, bytes.NewReader(data))
		})
		mux.HandleFunc("GET /moved/"+name, func(w http.ResponseWriter, r *http.Request) {
			http.Redirect(w, r, "/files/"+name, http.StatusFound)
		})
		mux.HandleFunc("GET /chunked/"+name, func(w http.ResponseWriter, r *http.Request) {
			w.Write(data[:len(data)/2])
			w.(http.Flusher).Flush() // no Content-Length
			w.Write(data[len(data)/2:])
		})
	}
	srv := httptest.NewServer(mux)
	t.Cleanup(srv.Close)
	return srv
}

func readTestdata(t *testing.T, name string) []byte {
	t.Helper()
	data, err := os.ReadFile("../../testdata/datasets/" + name)
	if err != nil {
		t.Fatal(err)
	}
	return data
}

// An import by URL from a server on this machine (loopback, which the
// local stack allows) ends ready with exactly the counts, tokens and
// stats an upload of the same file gets, in each format.
func TestADatasetImportedByURLEndsReadyWithTheCountsOfItsUpload(t *testing.T) {
	s := startImportStack(t, localstack.Config{})
	files := map[string][]byte{
		"sample.jsonl":          readTestdata(t, "sample.jsonl"),
		"sample.sharegpt.jsonl": readTestdata(t, "sample.sharegpt.jsonl"),
		"sample.alpaca.jsonl":   readTestdata(t, "sample.alpaca.jsonl"),
	}
	srv := fileServer(t, files)
	uploaded := getDataset(t, s, readyDataset(t, s))
	tests := []struct {
		name, path, format string
	}{
		{"a messages file", "/files/sample.jsonl", "messages"},
		{"a messages file behind a redirect", "/moved/sample.jsonl", "messages"},
		{"a messages file served without its size", "/chunked/sample.jsonl", "messages"},
		{"a ShareGPT file", "/files/sample.sharegpt.jsonl", "sharegpt"},
		{"an Alpaca file", "/files/sample.alpaca.jsonl", "alpaca"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			d := startImport(t, s, fmt.Sprintf(`{"source":%q,"format":%q}`, srv.URL+tt.path, tt.format))
			if d.Source != srv.URL+tt.path || d.Format != tt.format {
				t.Errorf("import answered %+v, want its source and format", d)
			}
			d = waitEnded(t, s, d.ID)
			name := tt.path[strings.LastIndex(tt.path, "/")+1:]
			if d.Status != "ready" || d.SizeBytes != int64(len(files[name])) || d.Name != name {
				t.Fatalf("imported dataset = %+v, want ready, %d bytes, named %s", d, len(files[name]), name)
			}
			if tt.format == "messages" && !bytes.Equal(d.Validation, uploaded.Validation) {
				t.Errorf("imported validation = %s\nwant the upload's %s", d.Validation, uploaded.Validation)
			}
			var v struct{ Examples, Lines int64 }
			json.Unmarshal(d.Validation, &v)
			if v.Examples == 0 || v.Examples != v.Lines {
				t.Errorf("imported %s counts %d examples of %d lines, want every line", name, v.Examples, v.Lines)
			}
			var report struct{ Valid bool }
			if status := call(t, "GET", s.URL()+"/v1/datasets/"+d.ID+"/report", "", &report); status != 200 || !report.Valid {
				t.Errorf("GET report = %d %+v, want 200 and valid", status, report)
			}
		})
	}
}

// A copy that cannot succeed ends the dataset invalid with the reason:
// an answer other than 200, no size and over what is read whole, over
// the 5 GiB cap, a redirect to a
// private address, and a server that keeps failing (after its retries).
func TestAFailedImportEndsInvalidWithTheReason(t *testing.T) {
	s := startImportStack(t, localstack.Config{})
	sample := readTestdata(t, "sample.jsonl")
	var failing atomic.Int32
	mux := http.NewServeMux()
	mux.HandleFunc("GET /missing.jsonl", http.NotFound)
	mux.HandleFunc("GET /unsized.jsonl", func(w http.ResponseWriter, r *http.Request) {
		// Chunked, no Content-Length, and over what is read whole.
		for range 65 {
			w.Write(bytes.Repeat([]byte("x"), 1<<20))
			w.(http.Flusher).Flush()
		}
	})
	mux.HandleFunc("GET /huge.jsonl", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Length", fmt.Sprint(int64(5<<30)+1))
		w.WriteHeader(http.StatusOK)
	})
	mux.HandleFunc("GET /to-private.jsonl", func(w http.ResponseWriter, r *http.Request) {
		http.Redirect(w, r, "https://10.0.0.7/sample.jsonl", http.StatusFound)
	})
	mux.HandleFunc("GET /down.jsonl", func(w http.ResponseWriter, r *http.Request) {
		failing.Add(1)
		http.Error(w, "try later", http.StatusServiceUnavailable)
	})
	mux.HandleFunc("GET /short.jsonl", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Length", fmt.Sprint(len(sample)))
		w.Write(sample[:len(sample)/2]) // the connection ends early
	})
	srv := httptest.NewServer(mux)
	defer srv.Close()
	tests := []struct {
		name, path, reason string
	}{
		{"a 404", "/missing.jsonl", "answered 404 Not Found"},
		{"no Content-Length and over 64 MiB", "/unsized.jsonl", "did not state the file's size (no Content-Length) and is over 67108864 bytes"},
		{"over the cap", "/huge.jsonl", "is 5368709121 bytes: datasets are limited to 5368709120 bytes (5 GiB)"},
		{"a redirect to a private address", "/to-private.jsonl", "10.0.0.7 is a private address"},
		{"a server that keeps failing", "/down.jsonl", "failed on every try"},
		{"a body cut short", "/short.jsonl", "failed on every try"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			d := waitEnded(t, s, startImport(t, s, fmt.Sprintf(`{"source":%q}`, srv.URL+tt.path)).ID)
			if d.Status != "invalid" || !strings.Contains(d.Error, tt.reason) {
				t.Errorf("import of %s = %s %q, want invalid saying %q", tt.path, d.Status, d.Error, tt.reason)
			}
			if strings.Contains(d.Error, "internal error") {
				t.Errorf("reason %q hides the cause", d.Error)
			}
		})
	}
	// A declared sha256 is checked against the copy, as an upload's is.
	files := fileServer(t, map[string][]byte{"sample.jsonl": sample})
	wrong := strings.Repeat("ab", 32)
	d := waitEnded(t, s, startImport(t, s, fmt.Sprintf(`{"source":%q,"sha256":%q}`, files.URL+"/files/sample.jsonl", wrong)).ID)
	if d.Status != "invalid" || !strings.Contains(d.Error, "but "+wrong+" was declared") {
		t.Errorf("import with another sha256 than the file's = %s %q, want invalid saying so", d.Status, d.Error)
	}
	if failing.Load() != 3 {
		t.Errorf("the failing server was asked %d times, want the 3 tries", failing.Load())
	}
}

// Under the cloud's network policy, a URL whose host name resolves to a
// loopback address passes the shape check and is refused when the copy
// connects: the dataset ends invalid saying why. A loopback literal is
// refused at once.
func TestTheCloudPolicyRefusesAHostThatResolvesToLoopbackAtConnectTime(t *testing.T) {
	s := startImportStack(t, localstack.Config{ImportPolicy: &netguard.Cloud})
	var hits atomic.Int32
	srv := httptest.NewTLSServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { hits.Add(1) }))
	defer srv.Close()
	port := srv.URL[strings.LastIndex(srv.URL, ":")+1:]
	d := waitEnded(t, s, startImport(t, s, `{"source":"https://localhost:`+port+`/sample.jsonl"}`).ID)
	if d.Status != "invalid" || !strings.Contains(d.Error, "loopback address") || !strings.Contains(d.Error, "refused") {
		t.Errorf("import from localhost under the cloud policy = %s %q, want invalid, refused as loopback", d.Status, d.Error)
	}
	var e struct {
		Error struct{ Code, Message string }
	}
	if status := call(t, "POST", s.URL()+"/v1/datasets/import", `{"source":"`+srv.URL+`/sample.jsonl"}`, &e); status != 400 || !strings.Contains(e.Error.Message, "loopback") {
		t.Errorf("import from %s under the cloud policy = %d %+v, want 400 naming loopback", srv.URL, status, e)
	}
	if hits.Load() != 0 {
		t.Errorf("the loopback server was reached %d times, want never", hits.Load())
	}
}

// An import from an S3 object under an allowed prefix (the versitygw S3
// emulator) ends ready with the counts of its upload; a key outside the
// prefix is refused at once, and a missing key under it ends invalid.
func TestAnImportFromAnAllowedS3PrefixEndsReady(t *testing.T) {
	gw := awstest.VersityGW(t)
	ctx := context.Background()
	client := s3.NewFromConfig(gw.Config, func(o *s3.Options) { o.UsePathStyle = true })
	bucket := awstest.UniqueName("training-files")
	if err := s3blob.CreateBucket(ctx, client, bucket); err != nil {
		t.Fatal(err)
	}
	sample := readTestdata(t, "sample.jsonl")
	for _, key := range []string{"exports/2026/sample.jsonl", "private/sample.jsonl"} {
		if _, err := client.PutObject(ctx, &s3.PutObjectInput{Bucket: aws.String(bucket), Key: aws.String(key), Body: bytes.NewReader(sample)}); err != nil {
			t.Fatal(err)
		}
	}
	for k, v := range map[string]string{
		"AWS_ENDPOINT_URL_S3": gw.Endpoint, "AWS_ACCESS_KEY_ID": awstest.AccessKeyID, "AWS_SECRET_ACCESS_KEY": awstest.SecretAccessKey,
		"AWS_REGION": awstest.Region, "BRIGHTRUN_S3_PATH_STYLE": "1",
		"AWS_REQUEST_CHECKSUM_CALCULATION": "when_required", "AWS_RESPONSE_CHECKSUM_VALIDATION": "when_required",
	} {
		t.Setenv(k, v)
	}
	s := startImportStack(t, localstack.Config{ImportS3Prefixes: bucket + "/exports/"})
	uploaded := getDataset(t, s, readyDataset(t, s))

	d := waitEnded(t, s, startImport(t, s, `{"source":"s3://`+bucket+`/exports/2026/sample.jsonl","name":"from s3"}`).ID)
	if d.Status != "ready" || d.SizeBytes != int64(len(sample)) || !bytes.Equal(d.Validation, uploaded.Validation) {
		t.Errorf("S3 import = %+v\nwant ready with the upload's validation %s", d, uploaded.Validation)
	}
	var e struct {
		Error struct{ Code, Message string }
	}
	if status := call(t, "POST", s.URL()+"/v1/datasets/import", `{"source":"s3://`+bucket+`/private/sample.jsonl"}`, &e); status != 400 || !strings.Contains(e.Error.Message, "not under a bucket and prefix") {
		t.Errorf("import outside the allowed prefix = %d %+v, want 400 saying so", status, e)
	}
	d = waitEnded(t, s, startImport(t, s, `{"source":"s3://`+bucket+`/exports/none.jsonl"}`).ID)
	if d.Status != "invalid" || !strings.Contains(d.Error, "does not exist") {
		t.Errorf("import of a missing key = %s %q, want invalid saying it does not exist", d.Status, d.Error)
	}
}
