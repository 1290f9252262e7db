package s3blob_test

import (
	"context"
	"net/http"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/service/s3"

	"github.com/brightrun/brightrun/shared/awstest"
	"github.com/brightrun/brightrun/shared/blobtest"
	"github.com/brightrun/brightrun/shared/s3blob"
)

// MustNewBlobs returns blobs in a fresh bucket on the S3 emulator.
func MustNewBlobs(tb testing.TB) *s3blob.Blobs {
	tb.Helper()
	emu := awstest.VersityGW(tb)
	client := s3.NewFromConfig(emu.Config, func(o *s3.Options) { o.UsePathStyle = true })
	bucket := awstest.UniqueName("brightrun")
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := s3blob.CreateBucket(ctx, client, bucket); err != nil {
		tb.Fatal(err)
	}
	b, err := s3blob.New(client, s3blob.Options{Bucket: bucket})
	if err != nil {
		tb.Fatal(err)
	}
	return b
}

func TestBlobsConformance(t *testing.T) {
	t.Parallel()
	awstest.VersityGW(t) // skip (or fail) once, here, when the emulator cannot start
	blobtest.Run(t, func(t *testing.T) blobtest.Harness {
		return blobtest.Harness{Blobs: MustNewBlobs(t), Client: &http.Client{Timeout: time.Minute}}
	})
}
