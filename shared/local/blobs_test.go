package local_test

import (
	"context"
	"io"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/brightrun/brightrun/shared/blobtest"
	"github.com/brightrun/brightrun/shared/local"
)

// MustNewBlobs returns local blobs in a temporary folder served by an httptest server.
func MustNewBlobs(tb testing.TB) (*local.Blobs, *httptest.Server) {
	tb.Helper()
	b, err := local.NewBlobs(local.BlobsOptions{Dir: tb.TempDir(), Secret: []byte("0123456789abcdef0123456789abcdef")})
	if err != nil {
		tb.Fatal(err)
	}
	srv := httptest.NewServer(b)
	tb.Cleanup(srv.Close)
	b.SetBaseURL(srv.URL)
	return b, srv
}

func TestBlobsConformance(t *testing.T) {
	t.Parallel()
	blobtest.Run(t, func(t *testing.T) blobtest.Harness {
		b, srv := MustNewBlobs(t)
		return blobtest.Harness{Blobs: b, Client: srv.Client()}
	})
}

// ExpireCredentials: URLs signed before answer as S3 answers a URL whose
// signing session token expired; URLs signed after work.
func TestURLsSignedWithExpiredCredentialsAreRefusedAsS3Does(t *testing.T) {
	t.Parallel()
	b, srv := MustNewBlobs(t)
	ctx := context.Background()
	if _, err := b.Put(ctx, "datasets/a.jsonl", strings.NewReader("hello\n"), 6); err != nil {
		t.Fatal(err)
	}
	get := func(u string) (int, string) {
		resp, err := srv.Client().Get(u)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		body, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, string(body)
	}
	old, err := b.PresignGet(ctx, "datasets/a.jsonl", time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	if status, _ := get(old.URL); status != 200 {
		t.Fatalf("before: %d, want 200", status)
	}
	if err := b.ExpireCredentials(); err != nil {
		t.Fatal(err)
	}
	if status, body := get(old.URL); status != 400 || !strings.Contains(body, "<Code>ExpiredToken</Code>") {
		t.Errorf("a URL signed before = %d %s, want 400 ExpiredToken", status, body)
	}
	fresh, _ := b.PresignGet(ctx, "datasets/a.jsonl", time.Hour)
	if status, body := get(fresh.URL); status != 200 || body != "hello\n" {
		t.Errorf("a URL signed after = %d %q, want 200", status, body)
	}
	forged := strings.Replace(fresh.URL, "signature=", "signature=00", 1)
	if status, body := get(forged); status != 403 || !strings.Contains(body, "SignatureDoesNotMatch") {
		t.Errorf("an altered URL = %d %s, want 403 SignatureDoesNotMatch", status, body)
	}
}
