package ingest_test

import (
	"context"
	"net/http"
	"net/http/httptest"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/aws/aws-lambda-go/events"
	"github.com/brightrun/brightrun/shared/ingest"
	"github.com/brightrun/brightrun/shared/netguard"
	"github.com/brightrun/brightrun/shared/pipeline"
)

// importing stores a dataset importing from source.
func (e *env) importing(t *testing.T, id, source string) *pipeline.Dataset {
	t.Helper()
	src, err := pipeline.ParseImportSource(source)
	if err != nil {
		t.Fatal(err)
	}
	now := time.Now().UTC()
	d := &pipeline.Dataset{ID: id, Owner: "alice", Name: id, Status: pipeline.DatasetImporting, Source: &src,
		ObjectKey: pipeline.DatasetKey("alice", id), CreatedAt: now, UpdatedAt: now}
	if err := e.store.CreateDataset(context.Background(), d); err != nil {
		t.Fatal(err)
	}
	return d
}

func (e *env) importer() *ingest.Importer {
	return &ingest.Importer{Store: e.store, Blobs: e.blobs, HTTP: netguard.Local.Client(0), MaxAttempts: 2,
		Validate: e.v.ValidateObject}
}

// A dataset deleted while its file is being copied has the copy removed;
// one deleted before the copy starts is not fetched at all.
func TestADatasetDeletedDuringItsImportLeavesNoFile(t *testing.T) {
	e := newEnv(t)
	sample, err := os.ReadFile("../../testdata/datasets/sample.jsonl")
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	var fetched int
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		fetched++
		if strings.HasSuffix(r.URL.Path, "/slow.jsonl") {
			// The user deletes the dataset while the bytes flow.
			if err := e.store.DeleteDataset(ctx, "alice", "ds_slow"); err != nil {
				t.Error(err)
			}
		}
		w.Write(sample)
	}))
	defer srv.Close()

	d := e.importing(t, "ds_slow", srv.URL+"/slow.jsonl")
	if err := e.importer().Import(ctx, "alice", d.ID, false); err != nil {
		t.Fatalf("Import of a dataset deleted while copying = %v, want nil", err)
	}
	if _, err := e.blobs.Stat(ctx, d.ObjectKey); pipeline.ErrorCode(err) != pipeline.ENotFound {
		t.Errorf("after the import of a deleted dataset its object: %v, want none", err)
	}

	gone := e.importing(t, "ds_gone", srv.URL+"/gone.jsonl")
	if err := e.store.DeleteDataset(ctx, "alice", gone.ID); err != nil {
		t.Fatal(err)
	}
	before := fetched
	if err := e.importer().Import(ctx, "alice", gone.ID, false); err != nil {
		t.Fatalf("Import of a deleted dataset = %v, want nil", err)
	}
	if fetched != before {
		t.Errorf("the source of a deleted dataset was fetched")
	}
}

// An import message delivered again (SQS is at least once) leaves a
// dataset that has moved on as it is: its stored file and its result are
// not replaced.
func TestARedeliveredImportChangesNothing(t *testing.T) {
	e := newEnv(t)
	sample, err := os.ReadFile("../../testdata/datasets/sample.jsonl")
	if err != nil {
		t.Fatal(err)
	}
	served := sample
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { w.Write(served) }))
	defer srv.Close()
	ctx := context.Background()
	d := e.importing(t, "ds_once", srv.URL+"/a.jsonl")
	im := e.importer()
	msg := `{"owner":"alice","dataset_id":"ds_once"}`
	if err := im.HandleMessage(ctx, []byte(msg), 1); err != nil {
		t.Fatal(err)
	}
	first, err := e.store.GetDataset(ctx, "alice", d.ID)
	if err != nil || first.Status != pipeline.DatasetReady {
		t.Fatalf("after the import: %+v %v, want ready", first, err)
	}
	served = []byte("not the same file\n")
	resp, err := im.HandleSQSEvent(ctx, events.SQSEvent{Records: []events.SQSMessage{{MessageId: "m1", Body: msg}, {MessageId: "m2", Body: "{"}}})
	if err != nil || len(resp.BatchItemFailures) != 0 {
		t.Fatalf("redelivery = %+v %v, want no failures (a malformed message is dropped)", resp, err)
	}
	again, err := e.store.GetDataset(ctx, "alice", d.ID)
	if err != nil || again.Version != first.Version || again.ContentSHA256 != first.ContentSHA256 {
		t.Errorf("after a redelivery: %+v %v, want the record unchanged (%+v)", again, err, first)
	}
}

// A transient failure is returned for a retry and leaves the dataset
// importing; the last try ends it invalid with the reason. A failure of
// the message's own kind ends it at once.
func TestATransientImportFailureIsRetriedThenEndsInvalid(t *testing.T) {
	e := newEnv(t)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		http.Error(w, "busy", http.StatusBadGateway)
	}))
	defer srv.Close()
	ctx := context.Background()
	d := e.importing(t, "ds_busy", srv.URL+"/a.jsonl?X-Amz-Signature=secret")
	im := e.importer()
	var published []pipeline.OutboundEvent
	im.Events = publisherFunc(func(_ context.Context, ev pipeline.OutboundEvent) error {
		published = append(published, ev)
		return nil
	})
	resp, err := im.HandleSQSEvent(ctx, events.SQSEvent{Records: []events.SQSMessage{{MessageId: "m1",
		Body: `{"owner":"alice","dataset_id":"ds_busy"}`, Attributes: map[string]string{"ApproximateReceiveCount": "1"}}}})
	if err != nil || len(resp.BatchItemFailures) != 1 || resp.BatchItemFailures[0].ItemIdentifier != "m1" {
		t.Fatalf("first try = %+v %v, want m1 reported for a retry", resp, err)
	}
	if got, _ := e.store.GetDataset(ctx, "alice", d.ID); got.Status != pipeline.DatasetImporting {
		t.Errorf("after a transient failure the dataset is %s, want importing", got.Status)
	}
	resp, err = im.HandleSQSEvent(ctx, events.SQSEvent{Records: []events.SQSMessage{{MessageId: "m1",
		Body: `{"owner":"alice","dataset_id":"ds_busy"}`, Attributes: map[string]string{"ApproximateReceiveCount": "2"}}}})
	if err != nil || len(resp.BatchItemFailures) != 0 {
		t.Fatalf("last try = %+v %v, want no retry", resp, err)
	}
	got, _ := e.store.GetDataset(ctx, "alice", d.ID)
	if got.Status != pipeline.DatasetInvalid || !strings.Contains(got.Error, "502 Bad Gateway") || !strings.Contains(got.Error, "failed on every try") {
		t.Errorf("after the last try: %s %q, want invalid with the reason", got.Status, got.Error)
	}
	if strings.Contains(got.Error, "secret") {
		t.Errorf("the reason %q shows the URL's query (a signature, perhaps)", got.Error)
	}
	// The owner's webhooks hear of it once, after the last try only.
	if len(published) != 1 || published[0].Type != pipeline.EventDatasetInvalid || published[0].Dataset == nil || published[0].Dataset.ID != d.ID {
		t.Errorf("published %+v, want one dataset.invalid of %s", published, d.ID)
	}
	im.HandleSQSEvent(ctx, events.SQSEvent{Records: []events.SQSMessage{{MessageId: "m1",
		Body: `{"owner":"alice","dataset_id":"ds_busy"}`, Attributes: map[string]string{"ApproximateReceiveCount": "3"}}}})
	if len(published) != 1 {
		t.Errorf("a redelivery after the end published again: %d events", len(published))
	}
}

type publisherFunc func(ctx context.Context, e pipeline.OutboundEvent) error

func (f publisherFunc) Publish(ctx context.Context, e pipeline.OutboundEvent) error { return f(ctx, e) }

// A copy still running when the invocation's time is nearly up stops in
// time to record why: on the last try the dataset ends invalid.
func TestACopyOutOfTimeOnItsLastTryEndsInvalid(t *testing.T) {
	e := newEnv(t)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Length", "1000")
		w.WriteHeader(http.StatusOK)
		w.Write([]byte(`{"messages":`))
		w.(http.Flusher).Flush()
		<-r.Context().Done() // a source that stalls
	}))
	defer srv.Close()
	d := e.importing(t, "ds_slow", srv.URL+"/a.jsonl")
	// Lambda's deadline: half a second more than what the import keeps
	// to record its outcome.
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second+500*time.Millisecond)
	defer cancel()
	resp, err := e.importer().HandleSQSEvent(ctx, events.SQSEvent{Records: []events.SQSMessage{{MessageId: "m1",
		Body: `{"owner":"alice","dataset_id":"ds_slow"}`, Attributes: map[string]string{"ApproximateReceiveCount": "2"}}}})
	if err != nil || len(resp.BatchItemFailures) != 0 {
		t.Fatalf("last try = %+v %v, want no retry", resp, err)
	}
	got, err := e.store.GetDataset(context.Background(), "alice", d.ID)
	if err != nil || got.Status != pipeline.DatasetInvalid || !strings.Contains(got.Error, "deadline exceeded") {
		t.Errorf("after a copy out of time: %+v %v, want invalid saying it ran out of time", got, err)
	}
}
