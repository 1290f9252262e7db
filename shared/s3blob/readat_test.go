package s3blob_test

import (
	"bytes"
	"context"
	"errors"
	"io"
	"testing"
)

func TestOpenAtReadsRangesOfTheObjectItOpened(t *testing.T) {
	t.Parallel()
	b := MustNewBlobs(t)
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
	for _, c := range []struct {
		off, n  int64
		want    int
		wantErr error
	}{
		{0, 10, 10, nil},
		{537, 200, 200, nil},
		{int64(len(body)) - 5, 10, 5, io.EOF},
		{int64(len(body)), 1, 0, io.EOF},
	} {
		p := make([]byte, c.n)
		n, err := ra.ReadAt(p, c.off)
		if n != c.want || !errors.Is(err, c.wantErr) && err != c.wantErr || !bytes.Equal(p[:n], body[c.off:c.off+int64(n)]) {
			t.Errorf("ReadAt(%d bytes at %d) = %d, %v (%q), want %d, %v", c.n, c.off, n, err, p[:n], c.want, c.wantErr)
		}
	}
	// The object replaced, the reader refuses to mix the two.
	if _, err := b.Put(ctx, key, bytes.NewReader(bytes.ToUpper(body[:50])), 50); err != nil {
		t.Fatal(err)
	}
	if n, err := ra.ReadAt(make([]byte, 10), 0); err == nil {
		t.Errorf("ReadAt of a replaced object = %d bytes, nil error; want an error", n)
	}
}
