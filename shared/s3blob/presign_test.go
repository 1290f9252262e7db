package s3blob_test

import (
	"context"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"net/url"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/credentials"
	"github.com/aws/aws-sdk-go-v2/service/s3"

	"github.com/brightrun/brightrun/shared/pipeline"
	"github.com/brightrun/brightrun/shared/s3blob"
)

// offlineBlobs presigns without any server: presigning is local. The client
// keeps the SDK's default checksum setting (WhenSupported), which would sign
// a CRC32 of an empty body into PUT URLs if the adapter did not override it.
func offlineBlobs(t *testing.T) *s3blob.Blobs {
	t.Helper()
	cfg := aws.Config{
		Region:       "eu-west-1",
		Credentials:  credentials.NewStaticCredentialsProvider("AKIDEXAMPLE", "secret", ""),
		BaseEndpoint: aws.String("https://s3.eu-west-1.amazonaws.com"),
	}
	b, err := s3blob.New(s3.NewFromConfig(cfg), s3blob.Options{Bucket: "brightrun-data"})
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func signedHeaders(t *testing.T, req pipeline.SignedRequest) (url.Values, []string) {
	t.Helper()
	u, err := url.Parse(req.URL)
	if err != nil {
		t.Fatal(err)
	}
	q := u.Query()
	return q, strings.Split(q.Get("X-Amz-SignedHeaders"), ";")
}

func contains(list []string, s string) bool {
	for _, v := range list {
		if v == s {
			return true
		}
	}
	return false
}

// The emulator checks these bindings end to end; this test pins them on the
// URL itself, so a change of SDK or configuration that loosens them fails
// here even where no emulator runs.
func TestPresignedRequestsSignWhatTheyBind(t *testing.T) {
	ctx := context.Background()
	b := offlineBlobs(t)
	body := []byte("hello\n")
	sum := sha256.Sum256(body)
	tests := []struct {
		name        string
		presign     func() (pipeline.SignedRequest, error)
		method      string
		path        string // the URL without its query
		ttl         time.Duration
		signed      []string          // headers that must be signed
		headers     map[string]string // headers the client is told to send
		query       map[string]string // query parameters that must be present
		mustNotSign []string
	}{
		{
			name: "a PUT with a size signs Content-Length",
			presign: func() (pipeline.SignedRequest, error) {
				return b.PresignPut(ctx, "datasets/a/x.jsonl", 1234, "", 15*time.Minute)
			},
			method: "PUT", path: "https://brightrun-data.s3.eu-west-1.amazonaws.com/datasets/a/x.jsonl", ttl: 15 * time.Minute,
			signed:      []string{"host", "content-length"},
			headers:     map[string]string{"Content-Length": "1234"},
			mustNotSign: []string{"x-amz-checksum-sha256", "x-amz-checksum-crc32", "x-amz-sdk-checksum-algorithm"},
		},
		{
			name: "a PUT with a sha256 signs the checksum header",
			presign: func() (pipeline.SignedRequest, error) {
				return b.PresignPut(ctx, "datasets/a/y.jsonl", int64(len(body)), hex.EncodeToString(sum[:]), time.Minute)
			},
			method: "PUT", path: "https://brightrun-data.s3.eu-west-1.amazonaws.com/datasets/a/y.jsonl", ttl: time.Minute,
			signed:  []string{"host", "content-length", "x-amz-checksum-sha256"},
			headers: map[string]string{"Content-Length": "6", "X-Amz-Checksum-Sha256": base64.StdEncoding.EncodeToString(sum[:])},
		},
		{
			name: "a PUT without a size leaves the length open",
			presign: func() (pipeline.SignedRequest, error) {
				return b.PresignPut(ctx, "adapters/j/a.bin", -1, "", time.Hour)
			},
			method: "PUT", path: "https://brightrun-data.s3.eu-west-1.amazonaws.com/adapters/j/a.bin", ttl: time.Hour,
			signed:      []string{"host"},
			mustNotSign: []string{"content-length"},
		},
		{
			name: "a part URL signs its size, upload and part number",
			presign: func() (pipeline.SignedRequest, error) {
				return b.PresignPart(ctx, "datasets/a/big", "UPLOAD1", 3, 5<<20, time.Hour)
			},
			method: "PUT", path: "https://brightrun-data.s3.eu-west-1.amazonaws.com/datasets/a/big", ttl: time.Hour,
			signed:  []string{"host", "content-length"},
			headers: map[string]string{"Content-Length": "5242880"},
			query:   map[string]string{"partNumber": "3", "uploadId": "UPLOAD1"},
		},
		{
			name:    "a GET is short-lived and signs only the host",
			presign: func() (pipeline.SignedRequest, error) { return b.PresignGet(ctx, "adapters/j/a.bin", 5*time.Minute) },
			method:  "GET", path: "https://brightrun-data.s3.eu-west-1.amazonaws.com/adapters/j/a.bin", ttl: 5 * time.Minute,
			signed: []string{"host"},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			before := time.Now().Truncate(time.Second)
			req, err := tt.presign()
			if err != nil {
				t.Fatal(err)
			}
			q, signed := signedHeaders(t, req)
			u, _ := url.Parse(req.URL)
			if at := u.Scheme + "://" + u.Host + u.Path; req.Method != tt.method || at != tt.path {
				t.Errorf("request = %s %s, want %s %s", req.Method, at, tt.method, tt.path)
			}
			if len(signed) != len(tt.signed) {
				t.Errorf("signed headers = %v, want exactly %v", signed, tt.signed)
			}
			for _, h := range tt.signed {
				if !contains(signed, h) {
					t.Errorf("signed headers = %v, want %s among them", signed, h)
				}
			}
			for _, h := range tt.mustNotSign {
				if contains(signed, h) || q.Has(h) || q.Has(strings.ToUpper(h[:1])+h[1:]) {
					t.Errorf("URL binds %s: %s", h, req.URL)
				}
			}
			for k := range q {
				if strings.HasPrefix(strings.ToLower(k), "x-amz-checksum") || strings.EqualFold(k, "x-amz-sdk-checksum-algorithm") {
					t.Errorf("URL carries %s=%s: a checksum the client's body would not match", k, q.Get(k))
				}
			}
			if len(req.Headers) != len(tt.headers) {
				t.Errorf("Headers = %v, want %v", req.Headers, tt.headers)
			}
			for k, v := range tt.headers {
				if req.Headers[k] != v {
					t.Errorf("Headers[%s] = %q, want %q", k, req.Headers[k], v)
				}
			}
			for k, v := range tt.query {
				if q.Get(k) != v {
					t.Errorf("query %s = %q, want %q", k, q.Get(k), v)
				}
			}
			if got := q.Get("X-Amz-Expires"); got != strconvSeconds(tt.ttl) {
				t.Errorf("X-Amz-Expires = %s, want %s", got, strconvSeconds(tt.ttl))
			}
			if d := req.ExpiresAt.Sub(before.Add(tt.ttl)); d < 0 || d > 2*time.Second {
				t.Errorf("ExpiresAt = %s, want about %s", req.ExpiresAt, before.Add(tt.ttl))
			}
		})
	}
}

func strconvSeconds(d time.Duration) string { return strconv.Itoa(int(d / time.Second)) }

func TestPresignRefusesBadInput(t *testing.T) {
	ctx := context.Background()
	b := offlineBlobs(t)
	tests := []struct {
		name string
		call func() error
	}{
		{"an empty key", func() error { _, err := b.PresignPut(ctx, "", 10, "", time.Minute); return err }},
		{"a zero size", func() error { _, err := b.PresignPut(ctx, "k", 0, "", time.Minute); return err }},
		{"a size over 5 GiB", func() error { _, err := b.PresignPut(ctx, "k", 5<<30+1, "", time.Minute); return err }},
		{"a sha256 that is not hex", func() error { _, err := b.PresignPut(ctx, "k", 10, "xyz", time.Minute); return err }},
		{"a sha256 of the wrong length", func() error { _, err := b.PresignPut(ctx, "k", 10, "abcd", time.Minute); return err }},
		{"a lifetime under a second", func() error { _, err := b.PresignGet(ctx, "k", 0); return err }},
		{"a lifetime over 7 days", func() error { _, err := b.PresignGet(ctx, "k", 8*24*time.Hour); return err }},
		{"part number 0", func() error { _, err := b.PresignPart(ctx, "k", "u", 0, 10, time.Minute); return err }},
		{"part number 10001", func() error { _, err := b.PresignPart(ctx, "k", "u", 10001, 10, time.Minute); return err }},
		{"a part without an upload id", func() error { _, err := b.PresignPart(ctx, "k", "", 1, 10, time.Minute); return err }},
		{"a complete without parts", func() error { _, err := b.CompleteMultipart(ctx, "k", "u", nil); return err }},
		{"a complete listing a part twice", func() error {
			_, err := b.CompleteMultipart(ctx, "k", "u", []pipeline.CompletedPart{{Number: 1, ETag: "a"}, {Number: 1, ETag: "b"}})
			return err
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := pipeline.ErrorCode(tt.call()); got != pipeline.EInvalid {
				t.Errorf("error code = %q, want %q", got, pipeline.EInvalid)
			}
		})
	}
}
