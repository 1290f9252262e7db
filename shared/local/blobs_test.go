package local_test

import (
	"net/http/httptest"
	"testing"

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
