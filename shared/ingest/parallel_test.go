package ingest_test

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"testing"

	"github.com/brightrun/brightrun/shared/dataset"
	"github.com/brightrun/brightrun/shared/ingest"
	"github.com/brightrun/brightrun/shared/pipeline"
)

// streamOnly hides the local store's OpenAt: the validator streams the
// object in one pass, as with any store that cannot read at an offset.
type streamOnly struct{ ingest.Blobs }

func TestValidationInPartsStoresWhatOnePassStores(t *testing.T) {
	ctx := context.Background()
	// Three parts of dataset.DefaultPartBytes, with an error every 40th
	// line.
	var synthetic bytes.Buffer
	if err := dataset.WriteSynthetic(&synthetic, 2*dataset.DefaultPartBytes+1<<20, 3, 40); err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct {
		file   string
		format pipeline.DatasetFormat
	}{
		{"synthetic", pipeline.FormatMessages},
		{"sample.jsonl", pipeline.FormatMessages},
		{"bad.jsonl", pipeline.FormatMessages},
		{"sample.sharegpt.jsonl", pipeline.FormatShareGPT},
		{"sample.alpaca.jsonl", pipeline.FormatAlpaca},
	} {
		t.Run(c.file, func(t *testing.T) {
			parts, stream := newEnv(t), newEnv(t)
			if _, ok := parts.v.Blobs.(ingest.RangeBlobs); !ok {
				t.Fatal("the local blob store does not read at an offset: the test would compare one pass with itself")
			}
			parts.v.Parallel = 3
			stream.v.Blobs = streamOnly{stream.blobs}
			data := synthetic.Bytes()
			if c.file != "synthetic" {
				data = readFile(t, c.file)
			}
			var got, want *pipeline.Dataset
			for _, e := range []*env{parts, stream} {
				if err := e.v.HandleS3Event(ctx, e.uploadAs(t, "ds_1", c.format, data)); err != nil {
					t.Fatal(err)
				}
			}
			got, want = parts.get(t, "ds_1"), stream.get(t, "ds_1")
			if got.Status != want.Status || got.ContentSHA256 != want.ContentSHA256 || !jsonEqual(got.Validation, want.Validation) || !jsonEqual(got.Converted, want.Converted) {
				t.Fatalf("validated in parts: status %s, sha256 %s, summary %+v, converted %+v;\nin one pass: %s, %s, %+v, %+v",
					got.Status, got.ContentSHA256, got.Validation, got.Converted, want.Status, want.ContentSHA256, want.Validation, want.Converted)
			}
			keys := []string{pipeline.ReportKey(got.ObjectKey)}
			if got.Converted != nil {
				keys = append(keys, got.Converted.Key)
			}
			for _, key := range keys {
				if g, w := object(t, parts, key), object(t, stream, key); !bytes.Equal(g, w) {
					t.Errorf("object %s is\n%s\nvalidated in parts, and\n%s\nin one pass", key, g, w)
				}
			}
		})
	}
}

func jsonEqual(a, b any) bool {
	ja, _ := json.Marshal(a)
	jb, _ := json.Marshal(b)
	return bytes.Equal(ja, jb)
}

func object(t *testing.T, e *env, key string) []byte {
	t.Helper()
	rc, _, err := e.blobs.Open(context.Background(), key)
	if err != nil {
		t.Fatalf("open %s: %v", key, err)
	}
	defer rc.Close()
	b, err := io.ReadAll(rc)
	if err != nil {
		t.Fatal(err)
	}
	return b
}
