package client

import (
	"errors"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/brightrun/brightrun/shared/pipeline"
)

// serve answers with the handlers in turn, repeating the last one, and
// counts the requests.
func serve(t *testing.T, handlers ...http.HandlerFunc) (*Client, *atomic.Int32) {
	t.Helper()
	var n atomic.Int32
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		i := int(n.Add(1)) - 1
		handlers[min(i, len(handlers)-1)](w, r)
	}))
	t.Cleanup(srv.Close)
	cl := New(srv.URL, "tok")
	cl.RetryWait = time.Millisecond
	return cl, &n
}

func answer(status int, body string) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(status)
		io.WriteString(w, body)
	}
}

func TestErrors(t *testing.T) {
	tests := []struct {
		name      string
		status    int
		body      string
		wantCode  string
		wantError string
	}{
		{"the API's error shape keeps its code and message", 404, `{"error":{"code":"not_found","message":"dataset \"ds_x\" not found"}}`, "not_found", `not_found: dataset "ds_x" not found`},
		{"details are kept", 400, `{"error":{"code":"invalid","message":"bad","details":{"field":"name"}}}`, "invalid", "invalid: bad"},
		{"a proxy's page becomes http_<status> with its text", 502, "<html><body>Bad   Gateway</body></html>", "http_502", "http_502: <html><body>Bad Gateway</body></html>"},
		{"an empty body says the status", 500, "", "http_500", "http_500: Internal Server Error"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cl, _ := serve(t, answer(tt.status, tt.body))
			cl.Retries = 0
			_, err := cl.GetDataset(t.Context(), "ds_x")
			var ae *APIError
			if !errors.As(err, &ae) || ae.Code != tt.wantCode || ae.Status != tt.status || err.Error() != tt.wantError {
				t.Fatalf("GetDataset error = %v, want an *APIError %q (%d) reading %q", err, tt.wantCode, tt.status, tt.wantError)
			}
		})
	}
}

func TestRetries(t *testing.T) {
	unavailable := answer(503, `{"error":{"code":"unavailable","message":"try later"}}`)
	okJob := answer(200, `{"id":"job_1","status":"queued"}`)
	tests := []struct {
		name      string
		call      func(cl *Client) error
		handlers  []http.HandlerFunc
		wantCalls int32
		wantErr   bool
	}{
		{"a GET is retried after a 503", func(cl *Client) error { _, err := cl.GetJob(t.Context(), "job_1"); return err }, []http.HandlerFunc{unavailable, okJob}, 2, false},
		{"a GET gives up after its retries", func(cl *Client) error { _, err := cl.GetJob(t.Context(), "job_1"); return err }, []http.HandlerFunc{unavailable}, 3, true},
		{"a 4xx is not retried", func(cl *Client) error { _, err := cl.GetJob(t.Context(), "job_1"); return err }, []http.HandlerFunc{answer(404, `{"error":{"code":"not_found","message":"no"}}`)}, 1, true},
		{"a job creation with a key is retried", func(cl *Client) error {
			_, err := cl.CreateJob(t.Context(), CreateJobRequest{TrainingRequest: TrainingRequest{DatasetID: "ds_1"}}, "k")
			return err
		}, []http.HandlerFunc{unavailable, okJob}, 2, false},
		{"a job creation without a key is sent once", func(cl *Client) error {
			_, err := cl.CreateJob(t.Context(), CreateJobRequest{TrainingRequest: TrainingRequest{DatasetID: "ds_1"}}, "")
			return err
		}, []http.HandlerFunc{unavailable, okJob}, 1, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cl, n := serve(t, tt.handlers...)
			err := tt.call(cl)
			if (err != nil) != tt.wantErr || n.Load() != tt.wantCalls {
				t.Errorf("error %v after %d calls; want error %v after %d", err, n.Load(), tt.wantErr, tt.wantCalls)
			}
		})
	}
}

func TestRequests(t *testing.T) {
	var got *http.Request
	var body string
	cl, _ := serve(t, func(w http.ResponseWriter, r *http.Request) {
		got = r
		b, _ := io.ReadAll(r.Body)
		body = string(b)
		answer(201, `{"id":"job_1","status":"queued"}`)(w, r)
	})
	budget := 12.5
	rank := 32
	_, err := cl.CreateJob(t.Context(), CreateJobRequest{
		TrainingRequest: TrainingRequest{DatasetID: "ds_1", Preset: "fast", Hyperparameters: &pipeline.HyperparameterOverrides{LoRARank: &rank}},
		Name:            "n", BudgetUSD: &budget,
	}, "key-1")
	if err != nil {
		t.Fatal(err)
	}
	if got.Method != "POST" || got.URL.Path != "/v1/jobs" || got.Header.Get("Authorization") != "Bearer tok" || got.Header.Get("Idempotency-Key") != "key-1" {
		t.Errorf("request = %s %s auth %q key %q; want POST /v1/jobs with the token and the key", got.Method, got.URL.Path, got.Header.Get("Authorization"), got.Header.Get("Idempotency-Key"))
	}
	want := `{"dataset_id":"ds_1","preset":"fast","hyperparameters":{"lora_rank":32},"name":"n","budget_usd":12.5}`
	if body != want {
		t.Errorf("body = %s, want %s", body, want)
	}

	if _, err := cl.ListJobs(t.Context(), JobListOptions{ListOptions: ListOptions{Cursor: "c 1", Limit: 5}, Status: pipeline.JobRunning}); err != nil {
		t.Fatal(err)
	}
	if q := got.URL.Query(); q.Get("cursor") != "c 1" || q.Get("limit") != "5" || q.Get("status") != "running" {
		t.Errorf("list query = %s, want cursor, limit and status", got.URL.RawQuery)
	}
}

func TestUnreachable(t *testing.T) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	url := "http://" + l.Addr().String()
	l.Close()
	cl := New(url, "tok")
	cl.RetryWait = time.Millisecond
	_, err = cl.ListDatasets(t.Context(), ListOptions{})
	var ue *UnreachableError
	if !errors.As(err, &ue) || !strings.HasPrefix(err.Error(), "could not reach the API at "+url+": ") {
		t.Errorf("error = %v, want an *UnreachableError for %s", err, url)
	}
}

func TestPut(t *testing.T) {
	t.Run("sends exactly the signed size and headers and returns the ETag", func(t *testing.T) {
		var length int64
		var header, body string
		cl, _ := serve(t, func(w http.ResponseWriter, r *http.Request) {
			length, header = r.ContentLength, r.Header.Get("X-Amz-Checksum-Sha256")
			b, _ := io.ReadAll(r.Body)
			body = string(b)
			w.Header().Set("ETag", `"abc"`)
		})
		req := pipeline.SignedRequest{Method: "PUT", URL: cl.BaseURL + "/blob?sig=1", Headers: map[string]string{"Content-Length": "5", "X-Amz-Checksum-Sha256": "xyz"}, ExpiresAt: time.Now().Add(time.Hour)}
		etag, err := cl.Put(t.Context(), req, strings.NewReader("hello"), 5)
		if err != nil || etag != `"abc"` || length != 5 || header != "xyz" || body != "hello" {
			t.Errorf("Put = %q, %v; server saw length %d header %q body %q", etag, err, length, header, body)
		}
	})
	t.Run("an S3 error is a TransferError, expired when it says so", func(t *testing.T) {
		cl, _ := serve(t, func(w http.ResponseWriter, r *http.Request) {
			w.WriteHeader(403)
			io.WriteString(w, `<?xml version="1.0"?><Error><Code>AccessDenied</Code><Message>Request has expired</Message></Error>`)
		})
		_, err := cl.Put(t.Context(), pipeline.SignedRequest{Method: "PUT", URL: cl.BaseURL + "/b"}, strings.NewReader("x"), 1)
		var te *TransferError
		if !errors.As(err, &te) || te.Code != "AccessDenied" || !te.Expired {
			t.Errorf("Put error = %#v, want an expired AccessDenied", err)
		}
	})
	t.Run("S3's 400 ExpiredToken (the signer's session expired) is expired; another 400 is not", func(t *testing.T) {
		for code, want := range map[string]bool{"ExpiredToken": true, "InvalidArgument": false} {
			cl, _ := serve(t, func(w http.ResponseWriter, r *http.Request) {
				w.WriteHeader(400)
				io.WriteString(w, `<?xml version="1.0"?><Error><Code>`+code+`</Code><Message>The provided token has expired.</Message></Error>`)
			})
			_, err := cl.Put(t.Context(), pipeline.SignedRequest{Method: "PUT", URL: cl.BaseURL + "/b"}, strings.NewReader("x"), 1)
			var te *TransferError
			if !errors.As(err, &te) || te.Code != code || te.Expired != want {
				t.Errorf("%s: Put error = %#v, want expired %v", code, err, want)
			}
		}
	})
	t.Run("a URL past its expiry is not tried", func(t *testing.T) {
		cl, n := serve(t, answer(200, ""))
		_, err := cl.Put(t.Context(), pipeline.SignedRequest{Method: "PUT", URL: cl.BaseURL + "/b", ExpiresAt: time.Now().Add(-time.Minute)}, strings.NewReader("x"), 1)
		var te *TransferError
		if !errors.As(err, &te) || !te.Expired || n.Load() != 0 {
			t.Errorf("Put error = %v after %d requests, want expired after none", err, n.Load())
		}
	})
}
