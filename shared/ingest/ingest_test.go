package ingest_test

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"net/url"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/aws/aws-lambda-go/events"
	"github.com/brightrun/brightrun/shared/chat"
	"github.com/brightrun/brightrun/shared/dataset"
	"github.com/brightrun/brightrun/shared/ingest"
	"github.com/brightrun/brightrun/shared/local"
	"github.com/brightrun/brightrun/shared/pipeline"
)

type env struct {
	store *local.Store
	blobs *local.Blobs
	v     *ingest.Validator
}

func newEnv(t *testing.T) *env {
	t.Helper()
	dir := t.TempDir()
	db, err := local.OpenDB(dir)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })
	store, _ := local.NewStore(db)
	blobs, err := local.NewBlobs(local.BlobsOptions{Dir: dir + "/blobs", BaseURL: "http://unused", Secret: bytes.Repeat([]byte("k"), 32)})
	if err != nil {
		t.Fatal(err)
	}
	counter, err := chat.Qwen3Counter()
	if err != nil {
		t.Fatal(err)
	}
	return &env{store: store, blobs: blobs, v: &ingest.Validator{Store: store, Blobs: blobs, Counter: counter}}
}

// upload stores a dataset record declaring declared bytes (and sha256 when
// given) and puts content as its object, returning the S3 event for it.
func (e *env) upload(t *testing.T, id string, content []byte, declared int64, sha string) events.S3Event {
	t.Helper()
	now := time.Now().UTC()
	d := &pipeline.Dataset{ID: id, Owner: "alice", Name: id, Status: pipeline.DatasetAwaitingUpload, SizeBytes: declared,
		SHA256: sha, ObjectKey: pipeline.DatasetKey("alice", id), CreatedAt: now, UpdatedAt: now}
	if err := e.store.CreateDataset(context.Background(), d); err != nil {
		t.Fatal(err)
	}
	info, err := e.blobs.Put(context.Background(), d.ObjectKey, bytes.NewReader(content), int64(len(content)))
	if err != nil {
		t.Fatal(err)
	}
	return s3Event(t, info)
}

// s3Event is the fixture with the object's key (URL-encoded, as S3 sends
// it), size and ETag.
func s3Event(t *testing.T, info pipeline.ObjectInfo) events.S3Event {
	t.Helper()
	raw, err := os.ReadFile("../../testdata/events/s3-object-created.json")
	if err != nil {
		t.Fatal(err)
	}
	var generic map[string]any
	if err := json.Unmarshal(raw, &generic); err != nil {
		t.Fatal(err)
	}
	obj := generic["Records"].([]any)[0].(map[string]any)["s3"].(map[string]any)["object"].(map[string]any)
	obj["key"] = url.QueryEscape(info.Key)
	obj["size"] = info.Size
	obj["eTag"] = info.ETag
	raw, _ = json.Marshal(generic)
	var ev events.S3Event
	if err := json.Unmarshal(raw, &ev); err != nil {
		t.Fatal(err)
	}
	return ev
}

func readFile(t *testing.T, name string) []byte {
	t.Helper()
	data, err := os.ReadFile("../../testdata/datasets/" + name)
	if err != nil {
		t.Fatal(err)
	}
	return data
}

func (e *env) get(t *testing.T, id string) *pipeline.Dataset {
	t.Helper()
	d, err := e.store.GetDataset(context.Background(), "alice", id)
	if err != nil {
		t.Fatal(err)
	}
	return d
}

func TestAValidUploadBecomesReadyWithItsReport(t *testing.T) {
	e := newEnv(t)
	sample := readFile(t, "sample.jsonl")
	sum := sha256.Sum256(sample)
	ev := e.upload(t, "ds_good", sample, int64(len(sample)), hex.EncodeToString(sum[:]))
	if err := e.v.HandleS3Event(context.Background(), ev); err != nil {
		t.Fatal(err)
	}
	d := e.get(t, "ds_good")
	if d.Status != pipeline.DatasetReady || d.Validation == nil || d.Error != "" {
		t.Fatalf("after validation: status %s, summary %v, error %q; want ready with a summary", d.Status, d.Validation, d.Error)
	}
	if d.Validation.Examples != 40 || d.Validation.Tokens.Total <= d.Validation.Tokens.Trained || d.Validation.Tokens.Trained == 0 {
		t.Errorf("summary = %+v, want 40 examples and 0 < trained < total tokens", d.Validation)
	}
	if d.ContentSHA256 != hex.EncodeToString(sum[:]) {
		t.Errorf("content sha256 = %s, want the file's", d.ContentSHA256)
	}
	rc, _, err := e.blobs.Open(context.Background(), pipeline.ReportKey(d.ObjectKey))
	if err != nil {
		t.Fatalf("report: %v", err)
	}
	defer rc.Close()
	var report dataset.Report
	if err := json.NewDecoder(rc).Decode(&report); err != nil {
		t.Fatal(err)
	}
	// The record keeps the validator's summary field for field: the
	// domain's copy of its shape has not drifted.
	want, _ := json.Marshal(report.Summary)
	got, _ := json.Marshal(d.Validation)
	if string(got) != string(want) {
		t.Errorf("dataset record's validation = %s, want the report's summary %s", got, want)
	}
	if pipeline.TokenCounts(report.Tokens) != d.Validation.Tokens || !report.Valid {
		t.Errorf("stored report tokens %+v valid %v, want %+v and valid", report.Tokens, report.Valid, d.Validation.Tokens)
	}
}

func TestABadUploadBecomesInvalidWithEveryIssue(t *testing.T) {
	e := newEnv(t)
	bad := readFile(t, "bad.jsonl")
	ev := e.upload(t, "ds_bad", bad, int64(len(bad)), "")
	if err := e.v.HandleS3Event(context.Background(), ev); err != nil {
		t.Fatal(err)
	}
	d := e.get(t, "ds_bad")
	if d.Status != pipeline.DatasetInvalid || d.Validation == nil || len(d.Validation.ErrorCounts) < 10 {
		t.Fatalf("after validation: status %s, summary %+v; want invalid with the error counts", d.Status, d.Validation)
	}
	rc, _, err := e.blobs.Open(context.Background(), pipeline.ReportKey(d.ObjectKey))
	if err != nil {
		t.Fatal(err)
	}
	defer rc.Close()
	var report dataset.Report
	_ = json.NewDecoder(rc).Decode(&report)
	lines := map[int64]bool{}
	for _, is := range report.Issues {
		if is.Severity == dataset.SeverityError {
			lines[is.Line] = true
		}
	}
	if !lines[1] || !lines[2] || !lines[9] {
		t.Errorf("report issues on lines %v, want lines 1, 2 and 9 among them", lines)
	}
}

func TestADuplicateEventDoesNotValidateAgain(t *testing.T) {
	e := newEnv(t)
	sample := readFile(t, "sample.jsonl")
	ev := e.upload(t, "ds_dup", sample, int64(len(sample)), "")
	for i := 0; i < 3; i++ {
		if err := e.v.HandleS3Event(context.Background(), ev); err != nil {
			t.Fatal(err)
		}
	}
	// created (1), validating (2), ready (3): duplicates add no write.
	if d := e.get(t, "ds_dup"); d.Version != 3 || d.Status != pipeline.DatasetReady {
		t.Errorf("after 3 identical events: version %d status %s, want version 3 (validated once) and ready", d.Version, d.Status)
	}
}

func TestAnUploadOfTheWrongSizeIsInvalid(t *testing.T) {
	e := newEnv(t)
	sample := readFile(t, "sample.jsonl")
	ev := e.upload(t, "ds_size", sample, int64(len(sample))+10, "")
	if err := e.v.HandleS3Event(context.Background(), ev); err != nil {
		t.Fatal(err)
	}
	d := e.get(t, "ds_size")
	if d.Status != pipeline.DatasetInvalid || !strings.Contains(d.Error, "were declared") {
		t.Errorf("status %s error %q, want invalid saying what was declared", d.Status, d.Error)
	}
}

func TestAnUploadWithAnotherSHA256IsInvalid(t *testing.T) {
	e := newEnv(t)
	sample := readFile(t, "sample.jsonl")
	ev := e.upload(t, "ds_sha", sample, int64(len(sample)), strings.Repeat("ab", 32))
	if err := e.v.HandleS3Event(context.Background(), ev); err != nil {
		t.Fatal(err)
	}
	if d := e.get(t, "ds_sha"); d.Status != pipeline.DatasetInvalid || !strings.Contains(d.Error, "sha256") {
		t.Errorf("status %s error %q, want invalid naming the sha256", d.Status, d.Error)
	}
}

func TestADeletedDatasetIsLeftAlone(t *testing.T) {
	e := newEnv(t)
	sample := readFile(t, "sample.jsonl")
	ev := e.upload(t, "ds_gone", sample, int64(len(sample)), "")
	if err := e.store.DeleteDataset(context.Background(), "alice", "ds_gone"); err != nil {
		t.Fatal(err)
	}
	if err := e.v.HandleS3Event(context.Background(), ev); err != nil {
		t.Errorf("event for a deleted dataset: %v, want it ignored", err)
	}
	if _, err := e.store.GetDataset(context.Background(), "alice", "ds_gone"); pipeline.ErrorCode(err) != pipeline.ENotFound {
		t.Errorf("deleted dataset came back: %v", err)
	}
}

func TestObjectsThatAreNotDatasetsAreIgnored(t *testing.T) {
	e := newEnv(t)
	info, _ := e.blobs.Put(context.Background(), "adapters/x/adapter_config.json", strings.NewReader("{}"), 2)
	if err := e.v.HandleS3Event(context.Background(), s3Event(t, info)); err != nil {
		t.Errorf("event for a non-dataset key: %v, want it ignored", err)
	}
}

// uploadAs is upload for a dataset declared in format.
func (e *env) uploadAs(t *testing.T, id string, format pipeline.DatasetFormat, content []byte) events.S3Event {
	t.Helper()
	ev := e.upload(t, id, content, int64(len(content)), "")
	if _, err := pipeline.UpdateDataset(context.Background(), e.store, "alice", id, func(d *pipeline.Dataset) error {
		d.Format = format
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	return ev
}

func TestAShareGPTUploadTrainsOnItsConvertedFile(t *testing.T) {
	e := newEnv(t)
	ctx := context.Background()
	if err := e.v.HandleS3Event(ctx, e.uploadAs(t, "ds_sharegpt", pipeline.FormatShareGPT, readFile(t, "sample.sharegpt.jsonl"))); err != nil {
		t.Fatal(err)
	}
	if err := e.v.HandleS3Event(ctx, e.upload(t, "ds_messages", readFile(t, "sample.jsonl"), int64(len(readFile(t, "sample.jsonl"))), "")); err != nil {
		t.Fatal(err)
	}
	d, m := e.get(t, "ds_sharegpt"), e.get(t, "ds_messages")
	if d.Status != pipeline.DatasetReady || d.Converted == nil {
		t.Fatalf("ShareGPT dataset after validation: status %s, converted %+v; want ready with a converted file", d.Status, d.Converted)
	}
	if m.Converted != nil {
		t.Errorf("messages dataset's converted file = %+v, want none: its upload is trained on", m.Converted)
	}
	if d.Validation.Examples != m.Validation.Examples || d.Validation.Tokens != m.Validation.Tokens ||
		!slicesEqual(d.Validation.Split.HeldOut, m.Validation.Split.HeldOut) {
		t.Errorf("ShareGPT dataset's counts = %d examples, %+v; the messages file's %d, %+v",
			d.Validation.Examples, d.Validation.Tokens, m.Validation.Examples, m.Validation.Tokens)
	}
	tf := d.TrainingFile()
	if tf.Key != pipeline.ConvertedKey(d.ObjectKey) || tf.Key == d.ObjectKey {
		t.Errorf("training file key = %s, want %s", tf.Key, pipeline.ConvertedKey(d.ObjectKey))
	}
	rc, info, err := e.blobs.Open(ctx, tf.Key)
	if err != nil {
		t.Fatal(err)
	}
	defer rc.Close()
	var got bytes.Buffer
	if _, err := got.ReadFrom(rc); err != nil {
		t.Fatal(err)
	}
	sum := sha256.Sum256(got.Bytes())
	if info.Size != tf.SizeBytes || int64(got.Len()) != tf.SizeBytes || hex.EncodeToString(sum[:]) != tf.SHA256 {
		t.Errorf("converted object is %d bytes with sha256 %x; the record says %d, %s", got.Len(), sum, tf.SizeBytes, tf.SHA256)
	}
	// The converted file is a messages dataset of the same conversations.
	again, err := dataset.Validate(ctx, bytes.NewReader(got.Bytes()), e.v.Counter, dataset.Options{})
	if err != nil {
		t.Fatal(err)
	}
	if !again.Valid || again.Examples != m.Validation.Examples || again.Tokens.Total != m.Validation.Tokens.Total || again.Tokens.Trained != m.Validation.Tokens.Trained {
		t.Errorf("converted file validates as %d examples, %+v, valid %v; want %d, %+v", again.Examples, again.Tokens, again.Valid, m.Validation.Examples, m.Validation.Tokens)
	}

	// The converted object's own upload event is recognised and ignored.
	if err := e.v.HandleS3Event(ctx, s3Event(t, info)); err != nil {
		t.Errorf("event of the converted object: %v", err)
	}
	if after := e.get(t, "ds_sharegpt"); after.Version != d.Version {
		t.Errorf("event of the converted object changed the dataset: version %d, was %d", after.Version, d.Version)
	}
}

func TestAnInvalidAlpacaUploadHasNoConvertedFile(t *testing.T) {
	e := newEnv(t)
	ctx := context.Background()
	bad := append(readFile(t, "sample.alpaca.jsonl"), `{"instruction": "Say hi", "response": "hi"}`+"\n"...)
	if err := e.v.HandleS3Event(ctx, e.uploadAs(t, "ds_alpaca", pipeline.FormatAlpaca, bad)); err != nil {
		t.Fatal(err)
	}
	d := e.get(t, "ds_alpaca")
	if d.Status != pipeline.DatasetInvalid || d.Converted != nil || d.Validation.ErrorCounts["alpaca_missing_output"] != 1 {
		t.Fatalf("invalid Alpaca dataset: status %s, converted %+v, errors %v; want invalid, none, one alpaca_missing_output", d.Status, d.Converted, d.Validation.ErrorCounts)
	}
	if _, err := e.blobs.Stat(ctx, pipeline.ConvertedKey(d.ObjectKey)); pipeline.ErrorCode(err) != pipeline.ENotFound {
		t.Errorf("Stat(converted key) = %v, want not found", err)
	}
}

func TestADatasetThatOutgrowsTheCapWhenConvertedIsInvalid(t *testing.T) {
	e := newEnv(t)
	ctx := context.Background()
	data := readFile(t, "sample.alpaca.jsonl")
	e.v.MaxConvertedBytes = int64(len(data)) // the messages form is larger
	if err := e.v.HandleS3Event(ctx, e.uploadAs(t, "ds_alpaca", pipeline.FormatAlpaca, data)); err != nil {
		t.Fatal(err)
	}
	d := e.get(t, "ds_alpaca")
	if d.Status != pipeline.DatasetInvalid || d.Converted != nil || !strings.Contains(d.Error, "converted to messages") || d.Validation == nil || !d.Validation.Valid {
		t.Fatalf("dataset over the cap once converted: status %s, converted %+v, error %q; want invalid with the reason, its report kept", d.Status, d.Converted, d.Error)
	}
	if _, err := e.blobs.Stat(ctx, pipeline.ConvertedKey(d.ObjectKey)); pipeline.ErrorCode(err) != pipeline.ENotFound {
		t.Errorf("Stat(converted key) = %v, want not found", err)
	}
}

func slicesEqual(a, b [][2]int64) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i] != b[i] {
			return false
		}
	}
	return true
}

func TestADatasetDeletedWhileValidatingLeavesNoConvertedFile(t *testing.T) {
	e := newEnv(t)
	ctx := context.Background()
	ev := e.uploadAs(t, "ds_gone", pipeline.FormatShareGPT, readFile(t, "sample.sharegpt.jsonl"))
	key := pipeline.DatasetKey("alice", "ds_gone")
	// The user deletes the dataset while the validator reads it.
	e.v.Options.Progress = func(int64) {
		if err := e.store.DeleteDataset(ctx, "alice", "ds_gone"); err != nil && pipeline.ErrorCode(err) != pipeline.ENotFound {
			t.Error(err)
		}
	}
	if err := e.v.HandleS3Event(ctx, ev); err != nil {
		t.Fatal(err)
	}
	for _, k := range []string{pipeline.ReportKey(key), pipeline.ConvertedKey(key)} {
		if _, err := e.blobs.Stat(ctx, k); pipeline.ErrorCode(err) != pipeline.ENotFound {
			t.Errorf("Stat(%s) = %v, want not found: the dataset was deleted", k, err)
		}
	}
}
