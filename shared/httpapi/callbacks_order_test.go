package httpapi_test

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"testing"
	"time"

	"github.com/brightrun/brightrun/shared/contract"
	"github.com/brightrun/brightrun/shared/httpapi"
	"github.com/brightrun/brightrun/shared/pipeline"
)

// runMessage is one callback of a worker's run.
type runMessage struct {
	seq  int64
	typ  contract.CallbackType
	data string
}

// artifactSizes are the sizes of the adapter files the run uploads.
var artifactSizes = map[string]int64{contract.ArtifactAdapterConfig: 120, contract.ArtifactAdapterModel: 4096}

// aRun is every callback of one run of attempt 2, in the order the worker
// sends them, ending with end ("completed" or "failed").
func aRun(end contract.CallbackType) []runMessage {
	msgs := []runMessage{
		{typ: contract.TypeStarted, data: `{"worker_id":"w1","runpod_job_id":"rp-1","worker_version":"1","gpu":null}`},
		{typ: contract.TypeStage, data: `{"stage":"download"}`},
		{typ: contract.TypeStage, data: `{"stage":"load"}`},
		{typ: contract.TypeStage, data: `{"stage":"train"}`},
		{typ: contract.TypeProgress, data: fmt.Sprintf(progress, 10, 2.0)},
		{typ: contract.TypeProgress, data: fmt.Sprintf(progress, 20, 1.5)},
		{typ: contract.TypeProgress, data: fmt.Sprintf(progress, 30, 1.2)},
		{typ: contract.TypeStage, data: `{"stage":"save"}`},
		{typ: contract.TypeStage, data: `{"stage":"upload"}`},
		{typ: contract.TypeArtifact, data: fmt.Sprintf(`{"name":%q,"size_bytes":%d,"sha256":"%064x"}`, contract.ArtifactAdapterConfig, artifactSizes[contract.ArtifactAdapterConfig], 1)},
		{typ: contract.TypeArtifact, data: fmt.Sprintf(`{"name":%q,"size_bytes":%d,"sha256":"%064x"}`, contract.ArtifactAdapterModel, artifactSizes[contract.ArtifactAdapterModel], 2)},
	}
	switch end {
	case contract.TypeCompleted:
		msgs = append(msgs, runMessage{typ: end, data: `{"final_loss":1.2,"steps":30,"train_seconds":50,"tokens_trained":1000,"metrics":{}}`})
	case contract.TypeFailed:
		msgs = append(msgs, runMessage{typ: end, data: `{"code":"upload","message":"the upload failed","advice":"try again"}`})
	}
	for i := range msgs {
		msgs[i].seq = int64(i + 1)
	}
	return msgs
}

// stateAfter posts msgs, in their order, to job_p of a fresh API whose
// clock stands still at now, and returns the stored job without its
// version (which counts writes, not state).
func stateAfter(t *testing.T, now time.Time, msgs []runMessage) map[string]any {
	t.Helper()
	a := newTestAPI(t, httpapi.Config{})
	a.api.Now = func() time.Time { return now }
	a.api.Jobs.Now = a.api.Now
	a.api.CallbackSecret = master
	j := &pipeline.Job{ID: "job_p", Owner: "alice", DatasetID: "ds_1", Status: pipeline.JobSubmitted, Attempt: 2, RunPodID: "rp-1",
		CreatedAt: now.Add(-time.Hour), Estimate: &pipeline.JobEstimate{PriceUSDPerSecond: 0.001, CostUSD: pipeline.Range{Expected: 1}}}
	if err := a.store.CreateJob(context.Background(), j); err != nil {
		t.Fatal(err)
	}
	for name, size := range artifactSizes {
		if _, err := a.blobs.Put(context.Background(), pipeline.ArtifactKey("alice", "job_p", 2, name), bytes.NewReader(make([]byte, size)), size); err != nil {
			t.Fatal(err)
		}
	}
	for _, m := range msgs {
		if status, ans := a.callback("alice", "job_p", 2, m.seq, m.typ, m.data, nil); status != 200 {
			t.Fatalf("callback %d (%s) = %d %+v, want 200", m.seq, m.typ, status, ans)
		}
	}
	raw, _ := json.Marshal(a.job("job_p"))
	var state map[string]any
	if err := json.Unmarshal(raw, &state); err != nil {
		t.Fatal(err)
	}
	delete(state, "version")
	return state
}

// shuffledWithRepeats is msgs with each message sent one to three times,
// in a random order.
func shuffledWithRepeats(r *rand.Rand, msgs []runMessage) []runMessage {
	var out []runMessage
	for _, m := range msgs {
		for range 1 + r.IntN(3) {
			out = append(out, m)
		}
	}
	r.Shuffle(len(out), func(i, j int) { out[i], out[j] = out[j], out[i] })
	return out
}

func seqs(msgs []runMessage) []int64 {
	out := make([]int64, len(msgs))
	for i, m := range msgs {
		out[i] = m.seq
	}
	return out
}

// Any interleaving and repetition of a run's callbacks (the whole run,
// ending completed or failed, or any first part of it) ends in the job
// state of the callbacks once, in order.
func TestAnyInterleavingOfARunsCallbacksEndsAsTheRunInOrder(t *testing.T) {
	cases := 30
	if testing.Short() {
		cases = 10
	}
	r := rand.New(rand.NewPCG(14, 2026))
	now := time.Now().UTC().Truncate(time.Second)
	for _, end := range []contract.CallbackType{contract.TypeCompleted, contract.TypeFailed, ""} {
		name := "a run that ends " + string(end)
		if end == "" {
			name = "the first part of a run"
		}
		run := aRun(end)
		type interleaving struct{ msgs, order []runMessage }
		var all []interleaving
		for i := range cases {
			msgs := run
			if end == "" {
				msgs = run[:1+r.IntN(len(run))]
			}
			order := shuffledWithRepeats(r, msgs)
			if i == 0 {
				// The whole run backwards, every message twice.
				order = nil
				for k := len(msgs) - 1; k >= 0; k-- {
					order = append(order, msgs[k], msgs[k])
				}
			}
			all = append(all, interleaving{msgs, order})
		}
		t.Run(name, func(t *testing.T) {
			wants := map[int][]byte{}
			for _, c := range all {
				if _, ok := wants[len(c.msgs)]; !ok {
					wants[len(c.msgs)], _ = json.Marshal(stateAfter(t, now, c.msgs))
				}
			}
			for i, c := range all {
				want := wants[len(c.msgs)]
				t.Run(fmt.Sprint(i), func(t *testing.T) {
					t.Parallel()
					got, _ := json.Marshal(stateAfter(t, now, c.order))
					if !bytes.Equal(got, want) {
						t.Errorf("callbacks in the order %v end in\n%s\nwant, as in order %v,\n%s", seqs(c.order), got, seqs(c.msgs), want)
					}
				})
			}
		})
	}
}
