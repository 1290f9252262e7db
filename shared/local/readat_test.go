package local_test

import (
	"bytes"
	"context"
	"io"
	"testing"
)

func TestOpenAtReadsRangesOfTheObject(t *testing.T) {
	b, _ := MustNewBlobs(t)
	ctx := context.Background()
	key := "datasets/alice/ds_ranges"
	body := bytes.Repeat([]byte("0123456789\n"), 100)
	if _, err := b.Put(ctx, key, bytes.NewReader(body), int64(len(body))); err != nil {
		t.Fatal(err)
	}
	ra, info, err := b.OpenAt(ctx, key)
	if err != nil {
		t.Fatal(err)
	}
	defer ra.Close()
	if info.Size != int64(len(body)) {
		t.Fatalf("OpenAt size = %d, want %d", info.Size, len(body))
	}
	p := make([]byte, 200)
	if n, err := ra.ReadAt(p, 537); n != 200 || err != nil || !bytes.Equal(p, body[537:737]) {
		t.Errorf("ReadAt(200 bytes at 537) = %d, %v, want 200 bytes of the object", n, err)
	}
	if n, err := ra.ReadAt(p, int64(len(body))-5); n != 5 || err != io.EOF {
		t.Errorf("ReadAt(200 bytes 5 before the end) = %d, %v, want 5, EOF", n, err)
	}
	if _, _, err := b.OpenAt(ctx, "datasets/alice/none"); err == nil {
		t.Error("OpenAt(a missing object) = nil error, want not found")
	}
}
