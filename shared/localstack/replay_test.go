package localstack_test

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"testing"
	"time"

	"github.com/brightrun/brightrun/shared/contract"
	"github.com/brightrun/brightrun/shared/localstack"
	"github.com/brightrun/brightrun/shared/pipeline"
)

// A correctly signed callback sent again — the same webhook-id and body,
// signed anew, as an at-least-once delivery or an attacker replaying a
// captured request would — is acknowledged and changes nothing: after
// every step of a run, replaying each callback sent so far leaves the job
// exactly as it was, down to its version.
func TestReplayedCallbacksNeverMoveAJobBackwards(t *testing.T) {
	s, err := localstack.Open(localstack.Config{Addr: "127.0.0.1:0", DataDir: t.TempDir(), DevTokens: "dev:dev-token",
		ReconcileEvery: time.Hour, Log: slog.New(slog.NewTextHandler(io.Discard, nil))})
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close(context.Background()) })
	ctx := context.Background()
	const owner, id = "dev", "job_replayed"
	if err := s.Store.CreateJob(ctx, &pipeline.Job{ID: id, Owner: owner, DatasetID: "ds_1", Status: pipeline.JobSubmitted, Attempt: 1,
		RunPodID: "rp-1", CreatedAt: time.Now().UTC(), Estimate: &pipeline.JobEstimate{PriceUSDPerSecond: 0.001}}); err != nil {
		t.Fatal(err)
	}
	sizes := map[string]int{contract.ArtifactAdapterConfig: 100, contract.ArtifactAdapterModel: 2000}
	for name, size := range sizes {
		if _, err := s.Blobs.Put(ctx, pipeline.ArtifactKey(owner, id, 1, name), bytes.NewReader(make([]byte, size)), int64(size)); err != nil {
			t.Fatal(err)
		}
	}
	progress := `{"step":%d,"total_steps":30,"epoch":1,"loss":%g,"learning_rate":0.0001,"tokens_per_second":900,"gpu_memory_bytes":1000}`
	artifact := `{"name":%q,"size_bytes":%d,"sha256":"%064d"}`
	run := []struct {
		typ  contract.CallbackType
		data string
	}{
		{contract.TypeStarted, `{"worker_id":"w1","runpod_job_id":"rp-1","worker_version":"1","gpu":null}`},
		{contract.TypeStage, `{"stage":"train"}`},
		{contract.TypeProgress, fmt.Sprintf(progress, 10, 2.0)},
		{contract.TypeProgress, fmt.Sprintf(progress, 11, 1.9)},
		{contract.TypeStage, `{"stage":"upload"}`},
		{contract.TypeArtifact, fmt.Sprintf(artifact, contract.ArtifactAdapterConfig, sizes[contract.ArtifactAdapterConfig], 1)},
		{contract.TypeArtifact, fmt.Sprintf(artifact, contract.ArtifactAdapterModel, sizes[contract.ArtifactAdapterModel], 2)},
		{contract.TypeCompleted, `{"final_loss":1.9,"steps":11,"train_seconds":5,"tokens_trained":1000,"metrics":{}}`},
	}
	secret := contract.DeriveSecret(s.API.CallbackSecret, id)
	sentAt := time.Now().UTC().Truncate(time.Second)
	post := func(seq int) {
		t.Helper()
		m := run[seq-1]
		body := []byte(fmt.Sprintf(`{"version":1,"type":%q,"job_id":%q,"attempt":1,"seq":%d,"sent_at":%q,"data":%s}`,
			m.typ, id, seq, sentAt.Add(time.Duration(seq)*time.Second).Format(time.RFC3339), m.data))
		req, _ := http.NewRequest("POST", s.URL()+pipeline.WorkerCallbackURL("", owner), bytes.NewReader(body))
		for k, v := range contract.SignedHeaders(secret, contract.WebhookID(id, 1, int64(seq)), time.Now(), body) {
			req.Header[k] = v
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		answer, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != http.StatusOK {
			t.Fatalf("callback %d (%s) = %d %s, want 200", seq, m.typ, resp.StatusCode, answer)
		}
	}
	// state is the whole stored job; progress what the user watches.
	state := func() (whole, progress string) {
		t.Helper()
		j, err := s.Store.GetJob(ctx, owner, id)
		if err != nil {
			t.Fatal(err)
		}
		raw, _ := json.Marshal(j)
		step := "none"
		if j.Progress != nil {
			step = fmt.Sprint(j.Progress.Step)
		}
		return string(raw), fmt.Sprintf("%s, stage %q, step %s, %d artifacts", j.Status, j.Stage, step, len(j.Artifacts))
	}
	for seq := 1; seq <= len(run); seq++ {
		post(seq)
		want, wantProgress := state()
		for again := 1; again <= seq; again++ {
			post(again)
			got, gotProgress := state()
			if gotProgress != wantProgress {
				t.Fatalf("after callback %d (%s), replaying callback %d (%s) moved the job from %s to %s", seq, run[seq-1].typ, again, run[again-1].typ, wantProgress, gotProgress)
			}
			if got != want {
				t.Fatalf("after callback %d (%s), replaying callback %d (%s) changed the job\nfrom %s\nto   %s", seq, run[seq-1].typ, again, run[again-1].typ, want, got)
			}
		}
	}
	j, err := s.Store.GetJob(ctx, owner, id)
	if err != nil {
		t.Fatal(err)
	}
	if j.Status != pipeline.JobCompleted || j.Progress == nil || j.Progress.Step != 11 || len(j.Artifacts) != 2 {
		t.Errorf("after the run and its replays the job is %s, progress %+v, %d artifacts; want completed at step 11 with 2 artifacts", j.Status, j.Progress, len(j.Artifacts))
	}
}
