package runpodemu_test

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"net/http"
	"slices"
	"strings"
	"testing"

	"github.com/brightrun/brightrun/shared/contract"
	"github.com/brightrun/brightrun/shared/runpod"
	"github.com/brightrun/brightrun/shared/runpodemu"
)

// everyFourSteps is a checkpoint interval of 4 steps at fast()'s 1000 steps/s.
var everyFourSteps = 0.004

// run submits spec with fault and waits for its end.
func run(t *testing.T, e *env, spec contract.JobSpec) (runpod.JobStatus, []received) {
	t.Helper()
	id := e.submit(t, spec, false)
	js := e.waitStatus(t, id, func(js runpod.JobStatus) bool { return js.Status.Terminal() })
	cbs, _, _ := e.cp.snapshot()
	var mine []received
	for _, c := range cbs {
		if c.cb.JobID == spec.JobID && c.cb.Attempt == spec.Attempt {
			mine = append(mine, c)
		}
	}
	return js, mine
}

func checkpoints(cbs []received) []*contract.Checkpoint {
	var out []*contract.Checkpoint
	for _, c := range ofType(cbs, contract.TypeCheckpoint) {
		out = append(out, c.payload.(*contract.Checkpoint))
	}
	return out
}

func completed(t *testing.T, cbs []received) *contract.Completed {
	t.Helper()
	c := ofType(cbs, contract.TypeCompleted)
	if len(c) == 0 {
		t.Fatalf("no completed callback")
	}
	return c[len(c)-1].payload.(*contract.Completed)
}

// progressSteps are the steps of the progress callbacks, and the loss by step.
func progressSteps(cbs []received) ([]int64, map[int64]float64) {
	var steps []int64
	loss := map[int64]float64{}
	for _, c := range ofType(cbs, contract.TypeProgress) {
		p := c.payload.(*contract.Progress)
		steps = append(steps, p.Step)
		loss[p.Step] = p.Loss
	}
	return steps, loss
}

func TestCheckpointsAreUploadedThenAnnounced(t *testing.T) {
	e := newEnv(t, fast())
	spec := e.cp.spec("job_ckpt")
	spec.CheckpointEverySeconds = &everyFourSteps
	js, cbs := run(t, e, spec)
	if js.Status != runpod.StatusCompleted {
		t.Fatalf("status = %s %q, want COMPLETED", js.Status, js.Error)
	}
	e.cp.checkNoProblems(t)
	cks := checkpoints(cbs)
	var got []string
	for _, c := range cks {
		got = append(got, fmt.Sprintf("%d:%s", c.Step, c.Reason))
	}
	// Every 4 steps of training, and at the end of each 10-step epoch (which
	// starts the interval again).
	if want := "4:interval 8:interval 10:epoch_end 14:interval 18:interval 20:epoch_end"; strings.Join(got, " ") != want {
		t.Fatalf("checkpoints = %s, want %s", strings.Join(got, " "), want)
	}
	e.cp.mu.Lock()
	objects := e.cp.objects
	e.cp.mu.Unlock()
	for _, c := range cks {
		t.Run(fmt.Sprintf("the checkpoint of step %d matches what was stored", c.Step), func(t *testing.T) {
			var names []string
			var size int64
			for _, f := range c.Files {
				names = append(names, f.Name)
				data, ok := objects[fmt.Sprintf("job_ckpt/step-%d/%s", c.Step, f.Name)]
				sum := sha256.Sum256(data)
				if !ok || int64(len(data)) != f.SizeBytes || hex.EncodeToString(sum[:]) != f.SHA256 {
					t.Errorf("%s: stored %v, %d bytes, sha256 %x; the callback says %d bytes, %s", f.Name, ok, len(data), sum, f.SizeBytes, f.SHA256)
				}
				size += f.SizeBytes
			}
			if want := []string{"adapter_config.json", "adapter_model.safetensors", "training_state.safetensors", "trainer_state.json"}; !slices.Equal(names, want) {
				t.Errorf("files = %v, want %v", names, want)
			}
			if c.SizeBytes != size || c.TotalSteps != 20 || c.Partial != (c.Step < 20) || c.Loss == nil || c.TrainSeconds < 0 {
				t.Errorf("checkpoint = %+v, want size %d, 20 total steps, partial before step 20, a loss", c, size)
			}
			wantPos := contract.Position{Epoch: int((c.Step - 1) / 10), StepInEpoch: (c.Step-1)%10 + 1}
			if wantPos.StepInEpoch == 10 {
				wantPos = contract.Position{Epoch: wantPos.Epoch + 1}
			}
			if c.Position != wantPos || c.Epoch != float64(c.Step)/10 {
				t.Errorf("position %+v, epoch %v; want %+v, %v", c.Position, c.Epoch, wantPos, float64(c.Step)/10)
			}
			var st map[string]any
			if err := json.Unmarshal(objects[fmt.Sprintf("job_ckpt/step-%d/trainer_state.json", c.Step)], &st); err != nil {
				t.Fatalf("trainer_state.json: %v", err)
			}
			if st["format"] != 1.0 || st["step"] != float64(c.Step) || st["loss_count"] != float64(c.Step) || st["last_loss"] != *c.Loss || len(st["fingerprint"].(string)) != 64 {
				t.Errorf("trainer_state.json = %v", st)
			}
			tensors, _, err := runpodemu.ParseSafetensors(objects[fmt.Sprintf("job_ckpt/step-%d/training_state.safetensors", c.Step)])
			if err != nil || tensors["optimizer.0.exp_avg"].DType != "F32" || tensors["rng.torch_cpu"].DType != "U8" {
				t.Errorf("training_state.safetensors: %v, %v", tensors, err)
			}
		})
	}
	if m := completed(t, cbs).Metrics; m.Checkpoints != 6 || m.CheckpointBytes <= 0 || m.ResumedFromStep != 0 {
		t.Errorf("completed metrics: %d checkpoints of %d bytes, resumed from %d; want 6, some bytes, not resumed", m.Checkpoints, m.CheckpointBytes, m.ResumedFromStep)
	}
}

func TestAResumedRunContinuesTheCurveOfAnUninterruptedOne(t *testing.T) {
	// The uninterrupted run of the same job.
	base := newEnv(t, fast())
	spec := base.cp.spec("job_resume")
	spec.CheckpointEverySeconds = &everyFourSteps
	js, whole := run(t, base, spec)
	if js.Status != runpod.StatusCompleted {
		t.Fatalf("uninterrupted run: %s %q", js.Status, js.Error)
	}
	_, wholeLoss := progressSteps(whole)
	want := completed(t, whole)

	tests := []struct {
		name  string
		fault runpodemu.Fault
		// prepare runs before the job: it may store checkpoints and change the spec.
		prepare       func(t *testing.T, e *env, spec *contract.JobSpec)
		from          int64 // the step resumed from; 0: from step 1
		skipped       string
		wantFirstStep int64 // of the resumed run's progress
	}{
		{"a crash re-runs from the last checkpoint before it", runpodemu.Fault{CrashAtStep: 13}, nil, 10, "", 11},
		{"two crashes resume twice", runpodemu.Fault{CrashAtStep: 7, Crashes: 2}, nil, 4, "", 5},
		{"a crash before any checkpoint re-runs from step 1", runpodemu.Fault{CrashAtStep: 3}, nil, 0, "", 1},
		{"a spec's resume continues from that checkpoint", runpodemu.Fault{}, func(t *testing.T, e *env, spec *contract.JobSpec) {
			run(t, e, *spec)
			spec.Attempt = 2
			spec.Resume = &contract.Resume{Step: 8, CheckpointID: "ck_8_1"}
		}, 8, "", 9},
		{"a checkpoint of other settings is not used", runpodemu.Fault{}, func(t *testing.T, e *env, spec *contract.JobSpec) {
			other := *spec
			other.Hyperparameters.LoRADropout = 0.1
			run(t, e, other)
			spec.Attempt = 2
			spec.Resume = &contract.Resume{Step: 8}
		}, 0, "the checkpoint at step 8 was not used: it belongs to a run with other settings or data", 1},
		{"a checkpoint file that does not match its sha256 is not used", runpodemu.Fault{}, func(t *testing.T, e *env, spec *contract.JobSpec) {
			run(t, e, *spec)
			e.cp.mu.Lock()
			b := slices.Clone(e.cp.objects["job_resume/step-8/trainer_state.json"])
			b[0] = ' ' // same size, other bytes
			e.cp.objects["job_resume/step-8/trainer_state.json"] = b
			e.cp.mu.Unlock()
			spec.Attempt = 2
			spec.Resume = &contract.Resume{Step: 8}
		}, 0, "does not match its checksum", 1},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cfg := fast()
			cfg.Faults = runpodemu.FaultsByJobID(map[string]runpodemu.Fault{"job_resume": tt.fault})
			e := newEnv(t, cfg)
			spec := e.cp.spec("job_resume")
			spec.CheckpointEverySeconds = &everyFourSteps
			if tt.prepare != nil {
				tt.prepare(t, e, &spec)
			}
			js, cbs := run(t, e, spec)
			if js.Status != runpod.StatusCompleted {
				t.Fatalf("status = %s %q, want COMPLETED", js.Status, js.Error)
			}
			e.cp.checkNoProblems(t)
			// The last run's callbacks: from its started callback on (a
			// crashed run has ended before RunPod runs the job again).
			lastRun := cbs
			for i, c := range cbs {
				if c.cb.Type == contract.TypeStarted {
					lastRun = cbs[i:]
				}
			}
			steps, loss := progressSteps(lastRun)
			if len(steps) == 0 || steps[0] != tt.wantFirstStep || steps[len(steps)-1] != 20 {
				t.Errorf("the last run's progress steps = %v, want %d … 20", steps, tt.wantFirstStep)
			}
			for s, l := range loss {
				if l != wholeLoss[s] && wholeLoss[s] != 0 {
					t.Errorf("loss at step %d = %v, the uninterrupted run's %v", s, l, wholeLoss[s])
				}
			}
			got := completed(t, cbs)
			if got.Metrics.ResumedFromStep != tt.from || !strings.Contains(got.Metrics.ResumeSkipped, tt.skipped) || (tt.skipped == "") != (got.Metrics.ResumeSkipped == "") {
				t.Errorf("resumed from %d (skipped %q), want %d (%q)", got.Metrics.ResumedFromStep, got.Metrics.ResumeSkipped, tt.from, tt.skipped)
			}
			if tt.skipped == "" && (got.Steps != want.Steps || *got.FinalLoss != *want.FinalLoss ||
				*got.Metrics.InitialLoss != *want.Metrics.InitialLoss || *got.Metrics.TrainLossMean != *want.Metrics.TrainLossMean) {
				t.Errorf("completed: %d steps, loss %v → %v, mean %v; the uninterrupted run's %d, %v → %v, mean %v",
					got.Steps, *got.Metrics.InitialLoss, *got.FinalLoss, *got.Metrics.TrainLossMean,
					want.Steps, *want.Metrics.InitialLoss, *want.FinalLoss, *want.Metrics.TrainLossMean)
			}
		})
	}
}

func TestURLsAreAskedForWhenNeeded(t *testing.T) {
	// urlRetries are the retry fields of the urls requests, by purpose (and step).
	urlRetries := func(cbs []received) map[string][]int {
		retries := map[string][]int{}
		for _, c := range ofType(cbs, contract.TypeURLs) {
			r := c.payload.(*contract.URLRequest)
			key := r.Purpose
			if r.Step > 0 {
				key += fmt.Sprintf("@%d", r.Step)
			}
			retries[key] = append(retries[key], r.Retry)
		}
		return retries
	}
	tests := []struct {
		name       string
		urlsStatus int
		refuse     []refusal // the dataset's next GETs
		fault      runpodemu.Fault
		wantStatus runpod.Status
		check      func(t *testing.T, e *env, cbs []received)
	}{
		{"a fresh URL is asked for each transfer", 0, nil, runpodemu.Fault{}, runpod.StatusCompleted, func(t *testing.T, e *env, cbs []received) {
			var got []string
			for _, c := range ofType(cbs, contract.TypeURLs) {
				r := c.payload.(*contract.URLRequest)
				got = append(got, fmt.Sprintf("%s/%d/%d", r.Purpose, r.Step, len(r.Files)))
			}
			want := "dataset/0/1 checkpoint_download/0/0 checkpoint/10/4 checkpoint/20/4 artifact/0/2"
			if strings.Join(got, " ") != want {
				t.Errorf("urls requests (purpose/step/files) = %s, want %s", strings.Join(got, " "), want)
			}
		}},
		{"a server that answers 400 gets the spec's URLs and no checkpoints", http.StatusBadRequest, nil, runpodemu.Fault{}, runpod.StatusCompleted, func(t *testing.T, e *env, cbs []received) {
			if n := len(ofType(cbs, contract.TypeURLs)); n != 1 {
				t.Errorf("%d urls requests, want 1: the worker remembers the refusal", n)
			}
			if n := len(ofType(cbs, contract.TypeCheckpoint)); n != 0 {
				t.Errorf("%d checkpoint callbacks, want none", n)
			}
			_, uploads, _ := e.cp.snapshot()
			if len(uploads) != 2 {
				t.Errorf("uploads to the spec's artifact URLs = %d, want 2", len(uploads))
			}
		}},
		{"a worker older than URL requests asks for none: the spec's URLs, no checkpoints", 0, nil, runpodemu.Fault{NoURLRequests: true}, runpod.StatusCompleted, func(t *testing.T, e *env, cbs []received) {
			if n, c := len(ofType(cbs, contract.TypeURLs)), len(ofType(cbs, contract.TypeCheckpoint)); n != 0 || c != 0 {
				t.Errorf("%d urls requests, %d checkpoint callbacks; want none", n, c)
			}
			if _, uploads, _ := e.cp.snapshot(); len(uploads) != 2 {
				t.Errorf("uploads to the spec's artifact URLs = %d, want 2", len(uploads))
			}
		}},
		{"404 means no URLs too", http.StatusNotFound, nil, runpodemu.Fault{}, runpod.StatusCompleted, nil},
		{"405 means no URLs too", http.StatusMethodNotAllowed, nil, runpodemu.Fault{}, runpod.StatusCompleted, nil},
		{"501 means no URLs too", http.StatusNotImplemented, nil, runpodemu.Fault{}, runpod.StatusCompleted, nil},
		{"an expired URL is asked for again and the fresh one works", 0, nil, runpodemu.Fault{ExpireURLs: true}, runpod.StatusCompleted, func(t *testing.T, e *env, cbs []received) {
			retries := urlRetries(cbs)
			for _, k := range []string{"checkpoint@10", "checkpoint@20", "artifact"} {
				if fmt.Sprint(retries[k]) != "[0 1]" {
					t.Errorf("%s: urls retries %v, want [0 1] (the first URL expired)", k, retries[k])
				}
			}
			if fmt.Sprint(retries["dataset"]) != "[0]" {
				t.Errorf("dataset: urls retries %v, want [0] (an answered download URL is fresh)", retries["dataset"])
			}
			if n := len(checkpoints(cbs)); n != 2 {
				t.Errorf("%d checkpoints stored, want 2", n)
			}
			e.cp.mu.Lock()
			puts := e.cp.puts
			e.cp.mu.Unlock()
			if puts != 2*4+2 {
				t.Errorf("%d PUTs reached the server, want 10: the expired ones are answered by the emulated S3", puts)
			}
		}},
		{"expired spec URLs fail the download when the server hands out none", http.StatusBadRequest, nil, runpodemu.Fault{ExpireURLs: true}, runpod.StatusFailed, func(t *testing.T, e *env, cbs []received) {
			if f := lastFailed(t, cbs); f.Code != contract.CodeDatasetDownload || !strings.Contains(f.Message, "HTTP 403 (the download link may have expired)") {
				t.Errorf("failed = %+v", f)
			}
		}},
		{"a download refused with S3's 400 ExpiredToken is asked for again", 0, []refusal{{http.StatusBadRequest, s3Error("ExpiredToken", "The provided token has expired.")}},
			runpodemu.Fault{}, runpod.StatusCompleted, func(t *testing.T, e *env, cbs []received) {
				if got := urlRetries(cbs)["dataset"]; fmt.Sprint(got) != "[0 1]" {
					t.Errorf("dataset: urls retries %v, want [0 1]", got)
				}
			}},
		{"a download refused with another 400 is not", 0, []refusal{{http.StatusBadRequest, s3Error("InvalidArgument", "Bad request.")}},
			runpodemu.Fault{}, runpod.StatusFailed, func(t *testing.T, e *env, cbs []received) {
				if f := lastFailed(t, cbs); f.Code != contract.CodeDatasetDownload || !strings.HasSuffix(f.Message, "HTTP 400.") {
					t.Errorf("failed = %+v", f)
				}
				if got := urlRetries(cbs)["dataset"]; fmt.Sprint(got) != "[0]" {
					t.Errorf("dataset: urls retries %v, want [0]", got)
				}
			}},
		{"uploads that always fail end in failed upload after three rounds", 0, nil, runpodemu.Fault{FailUpload: true}, runpod.StatusFailed, func(t *testing.T, e *env, cbs []received) {
			f := lastFailed(t, cbs)
			if f.Code != contract.CodeUpload || !strings.Contains(f.Message, "adapter_config.json, adapter_model.safetensors failed after 3 rounds of fresh URLs (last: HTTP 403)") {
				t.Errorf("failed = %+v", f)
			}
			if n := len(checkpoints(cbs)); n != 0 {
				t.Errorf("%d checkpoints announced, want none (they are not stored)", n)
			}
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cfg := fast()
			cfg.Faults = runpodemu.FaultsByJobID(map[string]runpodemu.Fault{"job_urls": tt.fault})
			e := newEnv(t, cfg)
			e.cp.urlsStatus, e.cp.refuseDataset = tt.urlsStatus, tt.refuse
			js, cbs := run(t, e, e.cp.spec("job_urls"))
			if js.Status != tt.wantStatus {
				t.Fatalf("status = %s %q, want %s", js.Status, js.Error, tt.wantStatus)
			}
			if tt.check != nil {
				tt.check(t, e, cbs)
			}
			e.cp.checkNoProblems(t)
		})
	}
}
