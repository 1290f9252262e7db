package runpodemu_test

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/brightrun/brightrun/shared/contract"
	"github.com/brightrun/brightrun/shared/runpod"
	"github.com/brightrun/brightrun/shared/runpodemu"
)

func TestAJobRunsEndToEnd(t *testing.T) {
	e := newEnv(t, fast())
	spec := e.cp.spec("job_e2e")
	id := e.submit(t, spec, true)
	js := e.waitStatus(t, id, func(js runpod.JobStatus) bool { return js.Status.Terminal() })
	if js.Status != runpod.StatusCompleted {
		t.Fatalf("status = %+v, want COMPLETED", js)
	}
	waitFor(t, "the completion webhook", func() bool { _, _, wh := e.cp.snapshot(); return len(wh) == 1 })
	e.cp.checkNoProblems(t)
	cbs, uploads, webhooks := e.cp.snapshot()

	t.Run("callbacks come in contract order with increasing seq", func(t *testing.T) {
		var got []string
		for i, c := range cbs {
			if c.cb.Seq != int64(i+1) || c.cb.JobID != "job_e2e" || c.cb.Attempt != 1 {
				t.Errorf("callback %d: job %s attempt %d seq %d, want seq %d", i, c.cb.JobID, c.cb.Attempt, c.cb.Seq, i+1)
			}
			name := string(c.cb.Type)
			switch p := c.payload.(type) {
			case *contract.StageChange:
				name += ":" + string(p.Stage)
			case *contract.URLRequest:
				name += ":" + p.Purpose
			case *contract.Checkpoint:
				name += fmt.Sprintf(":%d", p.Step)
			}
			if len(got) == 0 || got[len(got)-1] != name || name != "progress" {
				got = append(got, name)
			}
		}
		// Checkpoints at the end of each of the 2 epochs (steps 10 and 20),
		// each uploaded through URLs asked for first.
		want := "started stage:download urls:dataset urls:checkpoint_download stage:load stage:train progress " +
			"urls:checkpoint checkpoint:10 progress urls:checkpoint checkpoint:20 stage:save stage:upload urls:artifact artifact artifact completed"
		if strings.Join(got, " ") != want {
			t.Errorf("callback sequence =\n%s\nwant\n%s", strings.Join(got, " "), want)
		}
	})

	t.Run("started names the RunPod job and worker", func(t *testing.T) {
		s := cbs[0].payload.(*contract.Started)
		if s.RunPodJobID != id || s.WorkerID != js.WorkerID || s.GPU == nil {
			t.Errorf("started = %+v, want runpod job %s worker %s", s, id, js.WorkerID)
		}
	})

	t.Run("progress follows the trainer: steps, falling loss, warmup then cosine", func(t *testing.T) {
		progress := ofType(cbs, contract.TypeProgress)
		var steps []int64
		for _, c := range progress {
			steps = append(steps, c.payload.(*contract.Progress).Step)
		}
		if fmt.Sprint(steps) != "[1 6 11 16 20]" {
			t.Errorf("progress steps = %v, want [1 6 11 16 20] (every 5 steps, first and last)", steps)
		}
		first, last := progress[0].payload.(*contract.Progress), progress[len(progress)-1].payload.(*contract.Progress)
		if last.TotalSteps != 20 || last.Epoch != 2 {
			t.Errorf("last progress = %+v, want 20 total steps, epoch 2", last)
		}
		if !(first.Loss > 2 && last.Loss < 0.6 && last.Loss > 0.3) {
			t.Errorf("loss went from %v to %v, want from above 2 to about 0.45", first.Loss, last.Loss)
		}
		// warmup of ceil(0.1 × 20) = 2 steps: step 1 is half the rate; then cosine to 0 at step 20.
		if first.LearningRate != 1e-4 || progress[1].payload.(*contract.Progress).LearningRate >= 2e-4 || last.LearningRate != 0 {
			t.Errorf("learning rates = %v … %v, want 1e-4 at step 1 falling to 0", first.LearningRate, last.LearningRate)
		}
		if first.ElapsedSeconds == nil || first.ETASeconds == nil || first.TokensPerSecond <= 0 {
			t.Errorf("progress lacks elapsed, eta or tokens/s: %+v", first)
		}
	})

	t.Run("the artifacts are a peft adapter whose shapes match the rank", func(t *testing.T) {
		var cfg map[string]any
		if err := json.Unmarshal(uploads["adapter_config.json"], &cfg); err != nil {
			t.Fatalf("adapter_config.json: %v", err)
		}
		for k, want := range map[string]any{"r": 8.0, "lora_alpha": 16.0, "lora_dropout": 0.05, "peft_type": "LORA",
			"task_type": "CAUSAL_LM", "bias": "none", "base_model_name_or_path": spec.BaseModel.ID} {
			if cfg[k] != want {
				t.Errorf("adapter_config.json %s = %v, want %v", k, cfg[k], want)
			}
		}
		if n := len(cfg["target_modules"].([]any)); n != 10 {
			t.Errorf("target_modules has %d entries, want 10", n)
		}
		tensors, meta, err := runpodemu.ParseSafetensors(uploads["adapter_model.safetensors"])
		if err != nil {
			t.Fatalf("ParseSafetensors = %v", err)
		}
		if meta["format"] != "pt" {
			t.Errorf("metadata = %v", meta)
		}
		// Tiny Qwen3-Next: 4 layers, layer 3 full attention (q, k, v, o),
		// layers 0-2 linear attention (qkvz, ba, out), shared expert everywhere.
		if len(tensors) != 2*(4+3*3+4*3) {
			t.Errorf("%d tensors, want 50", len(tensors))
		}
		name := regexp.MustCompile(`^base_model\.model\.model\.layers\.(\d+)\.(self_attn|linear_attn|mlp\.shared_expert)\.[a-z_]+\.lora_(A|B)\.weight$`)
		for n, ti := range tensors {
			m := name.FindStringSubmatch(n)
			if m == nil {
				t.Errorf("tensor %s is not named as peft names it", n)
				continue
			}
			if len(ti.Shape) != 2 || ti.DType != "F32" {
				t.Errorf("tensor %s: %s %v", n, ti.DType, ti.Shape)
				continue
			}
			if m[3] == "A" && ti.Shape[0] != 8 || m[3] == "B" && ti.Shape[1] != 8 {
				t.Errorf("tensor %s has shape %v, want rank 8 (A [r, in], B [out, r])", n, ti.Shape)
			}
		}
		q := tensors["base_model.model.model.layers.3.self_attn.q_proj.lora_B.weight"]
		if fmt.Sprint(q.Shape) != "[128 8]" {
			t.Errorf("layer 3 q_proj lora_B shape = %v, want [128 8] (gated q of 4 heads × 16 × 2)", q.Shape)
		}
		if len(uploads["adapter_model.safetensors"]) > 400<<10 {
			t.Errorf("adapter is %d bytes, want a tiny one", len(uploads["adapter_model.safetensors"]))
		}
	})

	t.Run("artifact callbacks and the output describe the uploads", func(t *testing.T) {
		arts := ofType(cbs, contract.TypeArtifact)
		for _, a := range arts {
			p := a.payload.(*contract.Artifact)
			sum := sha256.Sum256(uploads[p.Name])
			if p.SizeBytes != int64(len(uploads[p.Name])) || p.SHA256 != hex.EncodeToString(sum[:]) {
				t.Errorf("artifact %s: %d bytes %s, uploaded %d bytes %x", p.Name, p.SizeBytes, p.SHA256, len(uploads[p.Name]), sum)
			}
		}
		var out struct {
			Status    string              `json:"status"`
			JobID     string              `json:"job_id"`
			Steps     int64               `json:"steps"`
			Artifacts []contract.Artifact `json:"artifacts"`
		}
		if err := json.Unmarshal(js.Output, &out); err != nil || out.Status != "completed" || out.JobID != "job_e2e" || out.Steps != 20 || len(out.Artifacts) != 2 {
			t.Errorf("output = %s (%v)", js.Output, err)
		}
		done := ofType(cbs, contract.TypeCompleted)[0].payload.(*contract.Completed)
		if done.Steps != 20 || done.TokensTrained != 3000 || done.Metrics.LoRAModules != 25 || done.Metrics.TrainableParameters <= 0 {
			t.Errorf("completed = %+v", done)
		}
	})

	t.Run("the completion webhook carries the status, input and webhook", func(t *testing.T) {
		wh := webhooks[0]
		if wh["id"] != id || wh["status"] != "COMPLETED" || wh["output"] == nil || wh["webhook"] != e.cp.srv.URL+"/webhook" {
			t.Errorf("webhook body = %v", wh)
		}
		if in, _ := wh["input"].(map[string]any); in["job_id"] != "job_e2e" {
			t.Errorf("webhook input = %v", wh["input"])
		}
	})

	t.Run("status reports times and the worker", func(t *testing.T) {
		if js.WorkerID == "" || js.ExecutionTime <= 0 || js.Retries != 0 {
			t.Errorf("status = %+v", js)
		}
	})
}

func TestCancelStopsTheWorkerWithinOneProgressInterval(t *testing.T) {
	cfg := fast()
	cfg.StepsPerSecond = 100
	e := newEnv(t, cfg)
	spec := e.cp.spec("job_cancel")
	spec.Dataset.Examples = 2000 // 2000 steps: 20 s if never stopped
	id := e.submit(t, spec, true)
	waitFor(t, "the second progress callback", func() bool {
		cbs, _, _ := e.cp.snapshot()
		return len(ofType(cbs, contract.TypeProgress)) >= 2
	})
	js, err := e.client.Cancel(context.Background(), id)
	if err != nil || js.Status != runpod.StatusCancelled {
		t.Fatalf("Cancel = %+v, %v", js, err)
	}
	cbs, _, _ := e.cp.snapshot()
	before := len(ofType(cbs, contract.TypeProgress))
	waitFor(t, "the failed callback", func() bool { cbs, _, _ := e.cp.snapshot(); return len(ofType(cbs, contract.TypeFailed)) == 1 })
	time.Sleep(100 * time.Millisecond) // 10 steps: two progress intervals
	cbs, _, webhooks := e.cp.snapshot()
	if after := len(ofType(cbs, contract.TypeProgress)); after > before+1 {
		t.Errorf("%d progress callbacks after cancel, want at most 1", after-before)
	}
	f := ofType(cbs, contract.TypeFailed)[0].payload.(*contract.Failed)
	if f.Code != contract.CodeCancelled || f.Stage != contract.StageTrain {
		t.Errorf("failed = %+v, want cancelled during train", f)
	}
	if js, _ := e.client.Status(context.Background(), id); js.Status != runpod.StatusCancelled {
		t.Errorf("status = %s, want CANCELLED", js.Status)
	}
	if len(webhooks) != 0 {
		t.Errorf("%d webhooks for a cancelled job, want none", len(webhooks))
	}
	e.cp.checkNoProblems(t)
}

func TestACallbackAnswerStopsTheWorker(t *testing.T) {
	tests := []struct {
		name       string
		status     int
		reply      string
		wantFailed bool   // a failed callback follows
		wantError  string // prefix of RunPod's error
	}{
		{"a stop action cancels the job", 200, `{"action":"stop","reason":"cancelled by the user"}`, true, "cancelled: The job was cancelled during train"},
		{"a 409 supersedes the attempt", 409, `{"error":{"code":"conflict","message":"attempt 1 was superseded"}}`, false, "superseded: The server refused this attempt"},
		{"a 410 supersedes the attempt", 410, ``, false, "superseded:"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cfg := fast()
			cfg.StepsPerSecond = 200
			e := newEnv(t, cfg)
			e.cp.answer = func(r received, n int) (int, string) {
				if p, ok := r.payload.(*contract.Progress); ok && p.Step > 1 {
					return tt.status, tt.reply
				}
				return 0, ""
			}
			spec := e.cp.spec("job_stop")
			spec.Dataset.Examples = 2000
			id := e.submit(t, spec, false)
			js := e.waitStatus(t, id, func(js runpod.JobStatus) bool { return js.Status.Terminal() })
			if js.Status != runpod.StatusFailed || !strings.HasPrefix(js.Error, tt.wantError) {
				t.Errorf("status = %s %q, want FAILED %q…", js.Status, js.Error, tt.wantError)
			}
			cbs, _, _ := e.cp.snapshot()
			progress := ofType(cbs, contract.TypeProgress)
			if last := progress[len(progress)-1]; last.payload.(*contract.Progress).Step != 6 {
				t.Errorf("last progress at step %d, want 6 (the answered one)", last.payload.(*contract.Progress).Step)
			}
			if got := len(ofType(cbs, contract.TypeFailed)) == 1; got != tt.wantFailed {
				t.Errorf("failed callback sent = %v, want %v", got, tt.wantFailed)
			}
			e.cp.checkNoProblems(t)
		})
	}
}

func TestAJobPastItsExecutionTimeoutTimesOut(t *testing.T) {
	clock := runpodemu.NewManualClock(time.Now())
	cfg := fast()
	cfg.Clock = clock
	cfg.Faults = runpodemu.FaultsByJobID(map[string]runpodemu.Fault{"job_hang": {HangAtStep: 3}})
	e := newEnv(t, cfg)
	js, err := e.client.Run(context.Background(), runpod.RunRequest{Input: e.cp.spec("job_hang"), Webhook: e.cp.srv.URL + "/webhook",
		Policy: runpod.Policy{ExecutionTimeout: 6 * time.Second, TTL: time.Hour}})
	if err != nil {
		t.Fatal(err)
	}
	e.waitStatus(t, js.ID, is(runpod.StatusInProgress))
	clock.Advance(5 * time.Second)
	time.Sleep(20 * time.Millisecond)
	if st, _ := e.client.Status(context.Background(), js.ID); st.Status != runpod.StatusInProgress {
		t.Fatalf("status after 5 s = %s, want IN_PROGRESS", st.Status)
	}
	clock.Advance(2 * time.Second)
	st := e.waitStatus(t, js.ID, is(runpod.StatusTimedOut))
	if st.ExecutionTime < 6000 {
		t.Errorf("executionTime = %d ms, want at least 6000", st.ExecutionTime)
	}
	time.Sleep(50 * time.Millisecond)
	if _, _, wh := e.cp.snapshot(); len(wh) != 0 {
		t.Errorf("%d webhooks for TIMED_OUT, want none (not documented for it)", len(wh))
	}
}

func TestRunPodsDefaultExecutionTimeoutIsTenMinutes(t *testing.T) {
	clock := runpodemu.NewManualClock(time.Now())
	cfg := fast()
	cfg.Clock = clock
	cfg.Faults = func(runpodemu.JobInfo) runpodemu.Fault { return runpodemu.Fault{HangAtStep: 2} }
	e := newEnv(t, cfg)
	// A raw request without a policy, as a careless dispatcher would send it.
	b, _ := json.Marshal(map[string]any{"input": e.cp.spec("job_default")})
	id := rawRun(t, e, b)
	e.waitStatus(t, id, is(runpod.StatusInProgress))
	clock.Advance(10*time.Minute + time.Second)
	e.waitStatus(t, id, is(runpod.StatusTimedOut))
}

func TestATTLDeletesTheJobWhateverItsState(t *testing.T) {
	clock := runpodemu.NewManualClock(time.Now())
	cfg := fast()
	cfg.Clock = clock
	cfg.Workers = 1
	cfg.StepsPerSecond = 20
	e := newEnv(t, cfg)
	spec := e.cp.spec("job_ttl")
	spec.Dataset.Examples = 2000
	pol := runpod.Policy{ExecutionTimeout: 6 * time.Second, TTL: 10 * time.Second}
	running, err := e.client.Run(context.Background(), runpod.RunRequest{Input: spec, Policy: pol})
	if err != nil {
		t.Fatal(err)
	}
	queued, err := e.client.Run(context.Background(), runpod.RunRequest{Input: e.cp.spec("job_ttl2"), Policy: runpod.Policy{ExecutionTimeout: 6 * time.Second, TTL: 10 * time.Second}})
	if err != nil {
		t.Fatal(err)
	}
	e.waitStatus(t, running.ID, is(runpod.StatusInProgress))
	if st, _ := e.client.Status(context.Background(), queued.ID); st.Status != runpod.StatusInQueue {
		t.Fatalf("second job = %s, want IN_QUEUE behind the only worker", st.Status)
	}
	clock.Advance(10 * time.Second)
	for _, id := range []string{running.ID, queued.ID} {
		if _, err := e.client.Status(context.Background(), id); !notFound(err) {
			t.Errorf("Status(%s) after the ttl = %v, want ErrNotFound", id, err)
		}
	}
}

func TestResultsAreKeptThirtyMinutes(t *testing.T) {
	clock := runpodemu.NewManualClock(time.Now())
	cfg := fast()
	cfg.Clock = clock
	e := newEnv(t, cfg)
	id := e.submit(t, e.cp.spec("job_keep"), false)
	e.waitStatus(t, id, is(runpod.StatusCompleted))
	clock.Advance(29 * time.Minute)
	if js, err := e.client.Status(context.Background(), id); err != nil || js.Status != runpod.StatusCompleted {
		t.Fatalf("Status after 29 min = %+v, %v; want COMPLETED", js, err)
	}
	clock.Advance(time.Minute)
	_, err := e.client.Status(context.Background(), id)
	if !notFound(err) || !strings.Contains(err.Error(), "result is lost") {
		t.Errorf("Status after 30 min = %v, want ErrNotFound (result lost)", err)
	}
}

func TestFailureKnobs(t *testing.T) {
	tests := []struct {
		name  string
		fault runpodemu.Fault
		check func(t *testing.T, e *env, js runpod.JobStatus, cbs []received)
	}{
		{"failing at step 3 with oom fails the job with advice", runpodemu.Fault{FailAtStep: 3}, func(t *testing.T, e *env, js runpod.JobStatus, cbs []received) {
			f := lastFailed(t, cbs)
			if js.Status != runpod.StatusFailed || !strings.HasPrefix(js.Error, "oom: ") || f.Code != contract.CodeOOM || f.Stage != contract.StageTrain || !strings.Contains(f.Advice, "batch_size from 2 to 1") {
				t.Errorf("status %s %q, failed %+v", js.Status, js.Error, f)
			}
			var out map[string]any
			if json.Unmarshal(js.Output, &out) != nil || out["code"] != "oom" || out["job_id"] != "job_knob" {
				t.Errorf("output = %s", js.Output)
			}
			waitFor(t, "the FAILED webhook", func() bool { _, _, wh := e.cp.snapshot(); return len(wh) == 1 && wh[0]["status"] == "FAILED" })
		}},
		{"another failure code is reported as given", runpodemu.Fault{FailAtStep: 2, FailCode: contract.CodeInternal}, func(t *testing.T, e *env, js runpod.JobStatus, cbs []received) {
			if f := lastFailed(t, cbs); f.Code != contract.CodeInternal || !strings.HasPrefix(js.Error, "internal: ") {
				t.Errorf("failed = %+v, error %q", f, js.Error)
			}
		}},
		{"a NaN loss fails with nan_loss", runpodemu.Fault{NaNAtStep: 4}, func(t *testing.T, e *env, js runpod.JobStatus, cbs []received) {
			f := lastFailed(t, cbs)
			if f.Code != contract.CodeNaNLoss || !strings.Contains(f.Advice, "from 0.0002 to 5e-05") {
				t.Errorf("failed = %+v", f)
			}
		}},
		{"a crash re-runs the job from scratch on a new worker", runpodemu.Fault{CrashAtStep: 7}, func(t *testing.T, e *env, js runpod.JobStatus, cbs []received) {
			if js.Status != runpod.StatusCompleted || js.Retries != 1 {
				t.Errorf("status = %s with %d retries, want COMPLETED after 1", js.Status, js.Retries)
			}
			started := ofType(cbs, contract.TypeStarted)
			if len(started) != 2 || started[0].cb.Seq != 1 || started[1].cb.Seq != 1 ||
				started[0].payload.(*contract.Started).WorkerID == started[1].payload.(*contract.Started).WorkerID {
				t.Errorf("started callbacks = %d, want 2 from different workers, each with seq 1", len(started))
			}
			if len(ofType(cbs, contract.TypeFailed)) != 0 {
				t.Errorf("a crashed worker sent a failed callback")
			}
			if h, _ := e.client.Health(context.Background()); h.Jobs.Retried != 1 || h.Jobs.Completed != 1 {
				t.Errorf("health = %+v", h.Jobs)
			}
		}},
		{"crashing twice retries twice", runpodemu.Fault{CrashAtStep: 2, Crashes: 2}, func(t *testing.T, e *env, js runpod.JobStatus, cbs []received) {
			if js.Status != runpod.StatusCompleted || js.Retries != 2 || len(ofType(cbs, contract.TypeStarted)) != 3 {
				t.Errorf("status = %s, retries %d, %d starts", js.Status, js.Retries, len(ofType(cbs, contract.TypeStarted)))
			}
		}},
		{"a dropped webhook is never sent", runpodemu.Fault{DropWebhook: true}, func(t *testing.T, e *env, js runpod.JobStatus, cbs []received) {
			time.Sleep(50 * time.Millisecond)
			if _, _, wh := e.cp.snapshot(); js.Status != runpod.StatusCompleted || len(wh) != 0 {
				t.Errorf("status %s, %d webhooks; want COMPLETED and none", js.Status, len(wh))
			}
		}},
		{"a slow start shows in delayTime", runpodemu.Fault{StartDelay: 120 * time.Millisecond}, func(t *testing.T, e *env, js runpod.JobStatus, cbs []received) {
			if js.Status != runpod.StatusCompleted || js.DelayTime < 120 {
				t.Errorf("status %s, delayTime %d ms; want COMPLETED after at least 120", js.Status, js.DelayTime)
			}
		}},
		{"a failing upload fails with upload", runpodemu.Fault{FailUpload: true}, func(t *testing.T, e *env, js runpod.JobStatus, cbs []received) {
			if f := lastFailed(t, cbs); f.Code != contract.CodeUpload || f.Stage != contract.StageUpload || len(ofType(cbs, contract.TypeArtifact)) != 0 {
				t.Errorf("failed = %+v", f)
			}
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cfg := fast()
			cfg.Faults = runpodemu.FaultsByJobID(map[string]runpodemu.Fault{"job_knob": tt.fault})
			e := newEnv(t, cfg)
			id := e.submit(t, e.cp.spec("job_knob"), true)
			js := e.waitStatus(t, id, func(js runpod.JobStatus) bool { return js.Status.Terminal() })
			cbs, _, _ := e.cp.snapshot()
			tt.check(t, e, js, cbs)
			e.cp.checkNoProblems(t)
		})
	}
}

func lastFailed(t *testing.T, cbs []received) *contract.Failed {
	t.Helper()
	f := ofType(cbs, contract.TypeFailed)
	if len(f) == 0 {
		t.Fatalf("no failed callback")
	}
	return f[len(f)-1].payload.(*contract.Failed)
}

func TestTheWorkerChecksWhatItIsGiven(t *testing.T) {
	tests := []struct {
		name     string
		mutate   func(cp *controlPlane, s *contract.JobSpec)
		wantCode contract.FailureCode
		wantMsg  string
	}{
		{"a dataset that does not match its sha256 fails the download", func(cp *controlPlane, s *contract.JobSpec) {
			cp.data = append(bytes.Clone(dataset[:len(dataset)-2]), 'x', '\n')
		}, contract.CodeDatasetDownload, "does not match its checksum"},
		{"a dataset of another size fails the download", func(cp *controlPlane, s *contract.JobSpec) { s.Dataset.SizeBytes++ }, contract.CodeDatasetDownload, "expected"},
		{"a missing dataset fails the download", func(cp *controlPlane, s *contract.JobSpec) {
			cp.urlsStatus = http.StatusBadRequest // the spec's URL is used
			s.Dataset.URL = cp.srv.URL + "/nothing"
		}, contract.CodeDatasetDownload, "HTTP 40"},
		{"a line that is not chat JSON is an invalid dataset", func(cp *controlPlane, s *contract.JobSpec) {
			bad := []byte("{\"messages\":[{\"role\":\"user\",\"content\":\"hi\"}]}\n{\"messages\":[{\"role\":\"señor\",\"content\":\"x\"}]}\n")
			cp.data = bad
			sum := sha256.Sum256(bad)
			s.Dataset.SHA256, s.Dataset.SizeBytes = hex.EncodeToString(sum[:]), int64(len(bad))
		}, contract.CodeDatasetInvalid, `line 2: messages[0].role must be one of system, user, assistant, got "señor"`},
		{"targets that match no module fail the model load", func(cp *controlPlane, s *contract.JobSpec) { s.BaseModel.LoRATargets = []string{"q_proj", "c_attn"} }, contract.CodeModelLoad, "[c_attn]"},
		{"an invalid spec fails with spec_invalid", func(cp *controlPlane, s *contract.JobSpec) { s.Hyperparameters.LoRARank = 2 }, contract.CodeSpecInvalid, "hyperparameters.lora_rank"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			e := newEnv(t, fast())
			spec := e.cp.spec("job_check")
			tt.mutate(e.cp, &spec)
			id := e.submit(t, spec, false)
			js := e.waitStatus(t, id, func(js runpod.JobStatus) bool { return js.Status.Terminal() })
			cbs, _, _ := e.cp.snapshot()
			f := lastFailed(t, cbs)
			if js.Status != runpod.StatusFailed || f.Code != tt.wantCode || !strings.Contains(f.Message, tt.wantMsg) {
				t.Errorf("status %s; failed %s %q; want %s containing %q", js.Status, f.Code, f.Message, tt.wantCode, tt.wantMsg)
			}
			if !strings.HasPrefix(js.Error, string(tt.wantCode)+": ") {
				t.Errorf("error = %q", js.Error)
			}
			e.cp.checkNoProblems(t)
		})
	}
}

func TestJobsBeyondTheWorkersWaitInTheQueue(t *testing.T) {
	cfg := fast()
	cfg.Workers = 1
	cfg.StepsPerSecond = 200
	e := newEnv(t, cfg)
	first := e.submit(t, e.cp.spec("job_q1"), false)
	second := e.submit(t, e.cp.spec("job_q2"), false)
	e.waitStatus(t, first, is(runpod.StatusInProgress))
	h, err := e.client.Health(context.Background())
	if err != nil || h.Workers.Running != 1 || h.Workers.Idle != 0 || h.Jobs.InQueue != 1 || h.Jobs.InProgress != 1 {
		t.Errorf("Health = %+v, %v", h, err)
	}
	js := e.waitStatus(t, second, is(runpod.StatusCompleted))
	if js.DelayTime <= 0 {
		t.Errorf("the queued job's delayTime = %d, want > 0", js.DelayTime)
	}
	if h, _ := e.client.Health(context.Background()); h.Jobs.Completed != 2 {
		t.Errorf("completed = %d, want 2", h.Jobs.Completed)
	}
}

func TestRetryAndPurgeQueue(t *testing.T) {
	cfg := fast()
	cfg.Workers = 1
	cfg.Faults = runpodemu.FaultsByJobID(map[string]runpodemu.Fault{"job_fail": {FailAtStep: 2}, "job_slow": {HangAtStep: 2}})
	e := newEnv(t, cfg)
	ctx := context.Background()

	failed := e.submit(t, e.cp.spec("job_fail"), false)
	e.waitStatus(t, failed, is(runpod.StatusFailed))
	if _, err := e.client.Retry(ctx, failed); err != nil {
		t.Fatalf("Retry(FAILED) = %v", err)
	}
	e.waitStatus(t, failed, is(runpod.StatusFailed)) // it fails again, as configured
	if h, _ := e.client.Health(ctx); h.Jobs.Retried != 1 || h.Jobs.Failed != 2 {
		t.Errorf("health jobs = %+v, want 1 retried, 2 failed", h.Jobs)
	}
	done := e.submit(t, e.cp.spec("job_done"), false)
	e.waitStatus(t, done, is(runpod.StatusCompleted))
	if _, err := e.client.Retry(ctx, done); !errors.Is(err, runpod.ErrBadRequest) {
		t.Errorf("Retry(COMPLETED) = %v, want ErrBadRequest", err)
	}

	slow := e.submit(t, e.cp.spec("job_slow"), false)
	e.waitStatus(t, slow, is(runpod.StatusInProgress))
	q1, q2 := e.submit(t, e.cp.spec("job_p1"), false), e.submit(t, e.cp.spec("job_p2"), false)
	r, err := e.client.PurgeQueue(ctx)
	if err != nil || r.Removed != 2 || r.Status != "completed" {
		t.Fatalf("PurgeQueue = %+v, %v", r, err)
	}
	for _, id := range []string{q1, q2} {
		if _, err := e.client.Status(ctx, id); !notFound(err) {
			t.Errorf("Status(purged) = %v, want ErrNotFound", err)
		}
	}
	if st, _ := e.client.Status(ctx, slow); st.Status != runpod.StatusInProgress {
		t.Errorf("the running job is %s, want IN_PROGRESS (purge leaves it)", st.Status)
	}
}

func TestInjectedAPIErrorsAreRetriedByTheClient(t *testing.T) {
	e := newEnv(t, fast())
	ctx := context.Background()
	e.emu.RateLimit(2)
	if _, err := e.client.Health(ctx); err != nil {
		t.Errorf("Health after 2 injected 429s = %v, want success on the third try", err)
	}
	e.emu.InjectAPIErrors(1, http.StatusServiceUnavailable, 0)
	id := e.submit(t, e.cp.spec("job_503"), false)
	e.waitStatus(t, id, is(runpod.StatusCompleted))
	if h, _ := e.client.Health(ctx); h.Jobs.Completed != 1 {
		t.Errorf("completed = %d, want exactly 1 job after a retried /run", h.Jobs.Completed)
	}
	e.emu.InjectAPIErrors(10, http.StatusTooManyRequests, time.Second)
	resp := rawDo(t, e, http.MethodGet, "/v2/ep/health", nil, "Bearer emu-key")
	if resp.StatusCode != http.StatusTooManyRequests || resp.Header.Get("Retry-After") != "1" {
		t.Errorf("injected answer = %d with Retry-After %q", resp.StatusCode, resp.Header.Get("Retry-After"))
	}
}

func TestTheCompletionWebhookIsRetried(t *testing.T) {
	e := newEnv(t, fast())
	e.cp.webhookStatus = func(n int) int {
		if n < 3 {
			return http.StatusInternalServerError
		}
		return http.StatusOK
	}
	id := e.submit(t, e.cp.spec("job_wh"), true)
	e.waitStatus(t, id, is(runpod.StatusCompleted))
	waitFor(t, "three webhook tries", func() bool { _, _, wh := e.cp.snapshot(); return len(wh) == 3 })
	time.Sleep(60 * time.Millisecond)
	if d := e.emu.Webhooks(); len(d) != 3 || d[2].StatusCode != 200 {
		t.Errorf("deliveries = %+v, want 3 ending in 200", d)
	}
}

func TestTheAPIRefusesBadRequests(t *testing.T) {
	e := newEnv(t, fast())
	validInput, _ := json.Marshal(map[string]any{"input": map[string]any{"x": 1}})
	tests := []struct {
		name   string
		method string
		path   string
		body   string
		auth   string
		want   int
	}{
		{"no key is unauthorized", "GET", "/v2/ep/health", "", "", 401},
		{"a wrong key is unauthorized", "GET", "/v2/ep/health", "", "Bearer nope", 401},
		{"the bare key is accepted, as RunPod's examples send it", "GET", "/v2/ep/health", "", "emu-key", 200},
		{"another endpoint is not found", "GET", "/v2/other/health", "", "Bearer emu-key", 404},
		{"an unknown job is not found", "GET", "/v2/ep/status/nope", "", "Bearer emu-key", 404},
		{"cancelling an unknown job is not found", "POST", "/v2/ep/cancel/nope", "", "Bearer emu-key", 404},
		{"a run without input is a bad request", "POST", "/v2/ep/run", `{"webhook":"http://x"}`, "Bearer emu-key", 400},
		{"a run that is not JSON is a bad request", "POST", "/v2/ep/run", `{`, "Bearer emu-key", 400},
		{"an execution timeout of 5000 ms is a bad request", "POST", "/v2/ep/run", `{"input":{},"policy":{"executionTimeout":5000}}`, "Bearer emu-key", 400},
		{"a ttl of 9 s is a bad request", "POST", "/v2/ep/run", `{"input":{},"policy":{"executionTimeout":600000,"ttl":9000}}`, "Bearer emu-key", 400},
		{"a body over 10 MB is a bad request", "POST", "/v2/ep/run", `{"input":"` + strings.Repeat("x", 10<<20) + `"}`, "Bearer emu-key", 400},
		{"a valid run is accepted", "POST", "/v2/ep/run", string(validInput), "Bearer emu-key", 200},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			resp := rawDo(t, e, tt.method, tt.path, []byte(tt.body), tt.auth)
			if resp.StatusCode != tt.want {
				t.Errorf("%s %s = %d, want %d", tt.method, tt.path, resp.StatusCode, tt.want)
			}
		})
	}
	if _, err := runpod.New("", "ep", "k"); err != nil {
		t.Fatal(err)
	}
}

func TestAnInputThatIsNotASpecFailsTheJob(t *testing.T) {
	e := newEnv(t, fast())
	js, err := e.client.Run(context.Background(), runpod.RunRequest{Input: map[string]any{"prompt": "hi"}, Policy: policy})
	if err != nil {
		t.Fatal(err)
	}
	st := e.waitStatus(t, js.ID, func(js runpod.JobStatus) bool { return js.Status.Terminal() })
	if st.Status != runpod.StatusFailed || !strings.HasPrefix(st.Error, "spec_invalid: Invalid job spec") {
		t.Errorf("status = %s %q, want FAILED spec_invalid", st.Status, st.Error)
	}
}

func TestFullSizeQwen3NextMatchesTheCatalog(t *testing.T) {
	// 300 wrapped modules and Σ(in + out) = 1,440,000 per rank, as in
	// shared/catalog; checked through the adapter of a full-size job would
	// cost 92 MB, so the shape arithmetic is checked instead.
	mods, perRank := runpodemu.AdapterModules("Qwen/Qwen3-Next-80B-A3B-Instruct", []string{"q_proj", "k_proj", "v_proj", "o_proj",
		"in_proj_qkvz", "in_proj_ba", "out_proj", "shared_expert.gate_proj", "shared_expert.up_proj", "shared_expert.down_proj"})
	if mods != 300 || perRank != 1_440_000 {
		t.Errorf("AdapterModules = %d modules, %d per rank; want 300 and 1440000", mods, perRank)
	}
}

func rawDo(t *testing.T, e *env, method, path string, body []byte, auth string) *http.Response {
	t.Helper()
	srv := e.url
	req, err := http.NewRequest(method, srv+path, bytes.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	if auth != "" {
		req.Header.Set("Authorization", auth)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	return resp
}

func rawRun(t *testing.T, e *env, body []byte) string {
	t.Helper()
	srv := e.url
	req, _ := http.NewRequest(http.MethodPost, srv+"/v2/ep/run", bytes.NewReader(body))
	req.Header.Set("Authorization", "Bearer emu-key")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var js runpod.JobStatus
	if err := json.NewDecoder(resp.Body).Decode(&js); err != nil || js.ID == "" {
		t.Fatalf("raw run: %d %v", resp.StatusCode, err)
	}
	return js.ID
}

func TestCloseStopsRunningWorkersPromptly(t *testing.T) {
	cfg := fast()
	cfg.StepsPerSecond = 10
	cfg.APIKey = "emu-key"
	emu, err := runpodemu.New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	cp := newControlPlane(t, realClock{})
	spec := cp.spec("job_close")
	spec.Dataset.Examples = 2000
	body, _ := json.Marshal(map[string]any{"input": spec, "policy": map[string]any{"executionTimeout": 3600000}})
	req, _ := http.NewRequest(http.MethodPost, "/v2/ep/run", bytes.NewReader(body))
	req.Header.Set("Authorization", "Bearer emu-key")
	rec := httptest.NewRecorder()
	emu.ServeHTTP(rec, req)
	if rec.Code != 200 {
		t.Fatalf("run = %d %s", rec.Code, rec.Body)
	}
	waitFor(t, "training to start", func() bool { cbs, _, _ := cp.snapshot(); return len(ofType(cbs, contract.TypeProgress)) > 0 })
	start := time.Now()
	emu.Close()
	if d := time.Since(start); d > time.Second {
		t.Errorf("Close took %s, want well under a second", d)
	}
	if cbs, _, _ := cp.snapshot(); len(ofType(cbs, contract.TypeFailed)) != 0 {
		t.Errorf("a worker stopped by Close reported failure")
	}
}
