package s3blob_test

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/brightrun/brightrun/shared/pipeline"
)

func send(t *testing.T, req pipeline.SignedRequest, body []byte, skip ...string) (int, string) {
	t.Helper()
	r, err := http.NewRequest(req.Method, req.URL, bytes.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	for k, v := range req.Headers {
		omit := strings.EqualFold(k, "Content-Length")
		for _, s := range skip {
			omit = omit || strings.EqualFold(k, s)
		}
		if !omit {
			r.Header.Set(k, v)
		}
	}
	resp, err := http.DefaultClient.Do(r)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	data, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(data)
}

// What S3 answers, and why, for uploads the URL does not allow: the emulator
// checks the signature as S3 does, so each refusal must carry S3's reason.
func TestRefusedUploadsSayWhy(t *testing.T) {
	t.Parallel()
	b := MustNewBlobs(t)
	ctx := context.Background()
	body := []byte(strings.Repeat("x", 100))
	sum := sha256.Sum256(body)
	summed, err := b.PresignPut(ctx, "datasets/a/s.jsonl", 100, hex.EncodeToString(sum[:]), time.Minute)
	if err != nil {
		t.Fatal(err)
	}
	sized, err := b.PresignPut(ctx, "datasets/a/z.jsonl", 100, "", time.Minute)
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name     string
		req      pipeline.SignedRequest
		body     []byte
		skip     []string
		status   int
		code     string
		stored   string
		notFound bool
	}{
		{"a short body breaks the signed length", sized, body[:99], nil, http.StatusForbidden, "SignatureDoesNotMatch", "datasets/a/z.jsonl", true},
		{"other content fails the signed checksum", summed, bytes.ToUpper(body), nil, http.StatusBadRequest, "BadDigest", "datasets/a/s.jsonl", true},
		{"leaving out the signed checksum header breaks the signature", summed, body, []string{"X-Amz-Checksum-Sha256"}, http.StatusForbidden, "SignatureDoesNotMatch", "datasets/a/s.jsonl", true},
		{"the signed content is accepted", summed, body, nil, http.StatusOK, "", "datasets/a/s.jsonl", false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			status, text := send(t, tt.req, tt.body, tt.skip...)
			if status != tt.status || !strings.Contains(text, tt.code) {
				t.Errorf("PUT = %d %s, want %d %s", status, text, tt.status, tt.code)
			}
			_, err := b.Stat(ctx, tt.stored)
			if gotNotFound := pipeline.ErrorCode(err) == pipeline.ENotFound; gotNotFound != tt.notFound {
				t.Errorf("Stat(%s) error = %v, want not found %v", tt.stored, err, tt.notFound)
			}
		})
	}
}

func TestErrorsTranslate(t *testing.T) {
	t.Parallel()
	b := MustNewBlobs(t)
	ctx := context.Background()
	key := "datasets/a/m.jsonl"
	id, err := b.CreateMultipart(ctx, key)
	if err != nil {
		t.Fatal(err)
	}
	var parts []pipeline.CompletedPart
	for i := 1; i <= 2; i++ {
		req, err := b.PresignPart(ctx, key, id, i, 1000, time.Minute)
		if err != nil {
			t.Fatal(err)
		}
		resp, err := http.DefaultClient.Do(mustRequest(t, req, bytes.Repeat([]byte("p"), 1000)))
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		parts = append(parts, pipeline.CompletedPart{Number: i, ETag: resp.Header.Get("ETag")})
	}
	complete := func(ps []pipeline.CompletedPart) func() error {
		return func() error { _, err := b.CompleteMultipart(ctx, key, id, ps); return err }
	}
	tests := []struct {
		name string
		call func() error
		code string
	}{
		{"Stat of a missing object", func() error { _, err := b.Stat(ctx, "nope"); return err }, pipeline.ENotFound},
		{"Open of a missing object", func() error { _, _, err := b.Open(ctx, "nope"); return err }, pipeline.ENotFound},
		{"a first part under 5 MiB (EntityTooSmall)", complete(parts), pipeline.EInvalid},
		{"a wrong ETag (InvalidPart)", complete([]pipeline.CompletedPart{{Number: 1, ETag: "00000000000000000000000000000000"}}), pipeline.EInvalid},
		{"parts listed out of order are put in order", complete([]pipeline.CompletedPart{parts[1], parts[0]}), pipeline.EInvalid}, // still too small, but not InvalidPartOrder's error
		{"an abort", func() error { return b.AbortMultipart(ctx, key, id) }, ""},
		{"a complete after the abort (NoSuchUpload)", complete(parts[:1]), pipeline.ENotFound},
		{"deleting a missing object", func() error { return b.Delete(ctx, "nope") }, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := tt.call()
			if got := pipeline.ErrorCode(err); got != tt.code {
				t.Errorf("error = %v (code %q), want code %q", err, got, tt.code)
			}
			if tt.name == "parts listed out of order are put in order" && strings.Contains(pipeline.ErrorMessage(err), "order") {
				t.Errorf("error = %v, want the parts sorted before S3 sees them", err)
			}
		})
	}
}

func mustRequest(t *testing.T, req pipeline.SignedRequest, body []byte) *http.Request {
	t.Helper()
	r, err := http.NewRequest(req.Method, req.URL, bytes.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	for k, v := range req.Headers {
		if !strings.EqualFold(k, "Content-Length") {
			r.Header.Set(k, v)
		}
	}
	return r
}

// onlyReader hides any Seek method of the reader it wraps.
type onlyReader struct{ io.Reader }

func TestPutStoresServerObjects(t *testing.T) {
	t.Parallel()
	b := MustNewBlobs(t)
	ctx := context.Background()
	body := []byte(`{"issues":[]}` + "\n")
	tests := []struct {
		name string
		body io.Reader
	}{
		{"a seekable body", bytes.NewReader(body)},
		{"a stream", onlyReader{bytes.NewReader(body)}},
	}
	for i, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			key := "reports/a/r" + string(rune('0'+i)) + ".json"
			info, err := b.Put(ctx, key, tt.body, int64(len(body)))
			if err != nil {
				t.Fatal(err)
			}
			rc, got, err := b.Open(ctx, key)
			if err != nil {
				t.Fatal(err)
			}
			data, _ := io.ReadAll(rc)
			rc.Close()
			if !bytes.Equal(data, body) || got.Size != int64(len(body)) || got.ETag != info.ETag || strings.Contains(got.ETag, `"`) {
				t.Errorf("Open after Put = %q %+v, want the body and ETag %q unquoted", data, got, info.ETag)
			}
		})
	}
}

func TestUnsizedPutAcceptsAnySize(t *testing.T) {
	t.Parallel()
	b := MustNewBlobs(t)
	ctx := context.Background()
	req, err := b.PresignPut(ctx, "adapters/j/adapter.safetensors", -1, "", time.Minute)
	if err != nil {
		t.Fatal(err)
	}
	if status, text := send(t, req, bytes.Repeat([]byte("w"), 4321)); status != http.StatusOK {
		t.Fatalf("PUT = %d %s, want 200", status, text)
	}
	if info, err := b.Stat(ctx, "adapters/j/adapter.safetensors"); err != nil || info.Size != 4321 {
		t.Errorf("Stat = %+v, %v; want size 4321", info, err)
	}
}
