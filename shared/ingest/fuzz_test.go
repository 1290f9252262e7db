package ingest_test

import (
	"bytes"
	"context"
	"encoding/hex"
	"encoding/json"
	"io"
	"log/slog"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/aws/aws-lambda-go/events"
	"github.com/brightrun/brightrun/shared/chat"
	"github.com/brightrun/brightrun/shared/ingest"
	"github.com/brightrun/brightrun/shared/local"
	"github.com/brightrun/brightrun/shared/pipeline"
)

// Ways FuzzS3Event builds its event.
const (
	s3Raw     = iota // the fuzzer's bytes decoded as an events.S3Event, as the Lambda runtime does
	s3Fields         // the fixture with the fuzzer's key (URL-encoded, as S3 sends it), size and ETag
	s3Decoded        // one record built directly, the key taken as already decoded
)

// FuzzS3Event hands arbitrary S3 events to HandleS3Event: it must never
// panic, must leave alone every dataset whose object the event does not
// name, and must fail (so that Lambda retries) only for a dataset that
// exists.
func FuzzS3Event(f *testing.F) {
	fixture, err := os.ReadFile(filepath.Join("..", "..", "testdata", "events", "s3-object-created.json"))
	if err != nil {
		f.Fatal(err)
	}
	sample, err := os.ReadFile(filepath.Join("..", "..", "testdata", "datasets", "sample.jsonl"))
	if err != nil {
		f.Fatal(err)
	}
	alice, bob := hex.EncodeToString([]byte("alice")), hex.EncodeToString([]byte("bob"))
	f.Add(fixture, "", int64(0), "", uint8(s3Raw))
	for _, raw := range []string{`{}`, `{"Records":null}`, `{"Records":[{}]}`, `{"Records":[{"s3":{"object":{"key":"%zz"}}}]}`,
		`{"Records":[{"s3":{"object":{"key":"datasets/` + alice + `/ds_a.jsonl","urlDecodedKey":"datasets/` + bob + `/ds_b.jsonl"}}}]}`,
		`{"Records":[{"s3":{"object":{"key":"datasets%2F` + alice + `%2Fds_a.jsonl","size":-1,"eTag":""}}},{"s3":{"object":{"key":"datasets/` + bob + `/ds_b.jsonl"}}}]}`,
		`[]`, `null`, ``} {
		f.Add([]byte(raw), "", int64(0), "", uint8(s3Raw))
	}
	for _, key := range []string{
		"datasets/" + alice + "/ds_a.jsonl",
		"datasets%2F" + alice + "%2Fds_a.jsonl",
		"datasets/" + bob + "/ds_b.jsonl",
		"datasets/" + bob + "/ds_a.jsonl",
		"datasets/" + alice + "/ds_b.jsonl",
		"datasets/" + alice + "/ds_missing.jsonl",
		"datasets/" + strings.ToUpper(alice) + "/ds_a.jsonl",
		"datasets/" + alice + "/../" + bob + "/ds_b.jsonl",
		"datasets/" + alice + "/ds_a.jsonl/../../" + bob + "/ds_b.jsonl",
		"datasets//ds_a.jsonl",
		"datasets/zz/ds_a.jsonl",
		"datasets/" + alice + "/.jsonl",
		"datasets/" + alice + "/ds_a.report.json",
		"adapters/" + alice + "/job_1/attempt-1/adapter_config.json",
		"datasets/" + alice + "/ds_a.jsonl%00",
		"datasets/" + alice + "/ds_a+.jsonl",
		"%",
		"",
	} {
		f.Add([]byte(nil), key, int64(len(sample)), "etag-1", uint8(s3Fields))
		f.Add([]byte(nil), key, int64(-1), "", uint8(s3Decoded))
	}

	e := newFuzzEnv(f)
	for _, d := range []struct{ owner, id string }{{"alice", "ds_a"}, {"bob", "ds_b"}} {
		e.dataset(f, d.owner, d.id, sample)
	}
	f.Fuzz(func(t *testing.T, raw []byte, key string, size int64, etag string, mode uint8) {
		var ev events.S3Event
		switch mode % 3 {
		case s3Raw:
			if json.Unmarshal(raw, &ev) != nil {
				return // the Lambda runtime refuses it before the handler
			}
		case s3Fields:
			var generic map[string]any
			if err := json.Unmarshal(fixture, &generic); err != nil {
				t.Fatal(err)
			}
			obj := generic["Records"].([]any)[0].(map[string]any)["s3"].(map[string]any)["object"].(map[string]any)
			obj["key"], obj["size"], obj["eTag"] = key, size, etag
			b, _ := json.Marshal(generic)
			if json.Unmarshal(b, &ev) != nil {
				return
			}
		default:
			ev.Records = []events.S3EventRecord{{S3: events.S3Entity{Object: events.S3Object{Key: key, URLDecodedKey: key, Size: size, ETag: etag}}}}
		}
		// The keys the event names, decoded as HandleS3Event decodes them,
		// and the datasets (owner/id) those keys name.
		named, datasets := map[string]bool{}, map[string]bool{}
		for _, rec := range ev.Records {
			k, err := url.QueryUnescape(rec.S3.Object.Key)
			if rec.S3.Object.URLDecodedKey != "" {
				k, err = rec.S3.Object.URLDecodedKey, nil
			}
			if err != nil {
				continue
			}
			named[k] = true
			if owner, id, err := pipeline.ParseDatasetKey(k); err == nil {
				datasets[owner+"/"+id] = true
			}
		}
		before := e.snapshot(t)
		err := e.v.HandleS3Event(context.Background(), ev)
		after := e.snapshot(t)
		for k, d := range after {
			if d.Version != before[k].Version && !named[d.ObjectKey] {
				t.Fatalf("an event for %v changed %s's dataset %s (object %s): %s → %s", keys(named), d.Owner, d.ID, d.ObjectKey, before[k].Status, d.Status)
			}
		}
		if err != nil {
			exists := false
			for k := range datasets {
				if before[k] != nil {
					exists = true
				}
			}
			if !exists {
				t.Fatalf("HandleS3Event(%v) = %v for no existing dataset: bad events must not fail (Lambda would retry them)", keys(named), err)
			}
		}
	})
}

func keys(m map[string]bool) []string {
	var out []string
	for k := range m {
		out = append(out, k)
	}
	return out
}

type fuzzEnv struct {
	store *local.Store
	blobs *local.Blobs
	v     *ingest.Validator
}

// newFuzzEnv is newEnv for a fuzz target: one per fuzzing process.
func newFuzzEnv(tb testing.TB) *fuzzEnv {
	tb.Helper()
	dir := tb.TempDir()
	db, err := local.OpenDB(dir)
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() { db.Close() })
	store, err := local.NewStore(db)
	if err != nil {
		tb.Fatal(err)
	}
	blobs, err := local.NewBlobs(local.BlobsOptions{Dir: filepath.Join(dir, "blobs"), BaseURL: "http://unused", Secret: bytes.Repeat([]byte("k"), 32)})
	if err != nil {
		tb.Fatal(err)
	}
	counter, err := chat.Qwen3Counter()
	if err != nil {
		tb.Fatal(err)
	}
	return &fuzzEnv{store: store, blobs: blobs, v: &ingest.Validator{Store: store, Blobs: blobs, Counter: counter,
		Log: slog.New(slog.NewTextHandler(io.Discard, nil))}}
}

// dataset stores an uploaded dataset of owner's: the record and its object.
func (e *fuzzEnv) dataset(tb testing.TB, owner, id string, content []byte) {
	tb.Helper()
	now := time.Now().UTC()
	d := &pipeline.Dataset{ID: id, Owner: owner, Name: id, Status: pipeline.DatasetAwaitingUpload, SizeBytes: int64(len(content)),
		ObjectKey: pipeline.DatasetKey(owner, id), CreatedAt: now, UpdatedAt: now}
	if err := e.store.CreateDataset(context.Background(), d); err != nil {
		tb.Fatal(err)
	}
	if _, err := e.blobs.Put(context.Background(), d.ObjectKey, bytes.NewReader(content), int64(len(content))); err != nil {
		tb.Fatal(err)
	}
}

// snapshot returns every dataset of alice's and bob's by owner/id.
func (e *fuzzEnv) snapshot(t *testing.T) map[string]*pipeline.Dataset {
	t.Helper()
	out := map[string]*pipeline.Dataset{}
	for _, owner := range []string{"alice", "bob"} {
		list, _, err := e.store.ListDatasets(context.Background(), owner, pipeline.Page{Limit: pipeline.MaxPageSize})
		if err != nil {
			t.Fatal(err)
		}
		for _, d := range list {
			if d.Owner != owner || !strings.HasPrefix(d.ID, "ds_") {
				t.Fatalf("%s's list holds %+v", owner, d)
			}
			out[owner+"/"+d.ID] = d
		}
	}
	return out
}
