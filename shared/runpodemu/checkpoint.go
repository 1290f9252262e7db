package runpodemu

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"math/rand/v2"
	"slices"
	"time"

	"github.com/brightrun/brightrun/shared/contract"
)

// Checkpoints, as gpu-image's checkpoint.py writes them: four files, the
// adapter (adapter_config.json, adapter_model.safetensors: a usable,
// partial adapter), training_state.safetensors (the optimizer's moments
// per trainable tensor, optimizer.<index>.exp_avg and .exp_avg_sq, and an
// RNG state) and trainer_state.json (format, the run's fingerprint, the
// step, the position in the data order and the running figures). The
// emulator's files are synthetic but have the real names, formats and
// fields, so the control plane stores, lists and hands them back as it
// would a real worker's.
//
// A checkpoint is written at each epoch's end and every
// checkpoint_every_seconds (default 600) of training time. The emulator's
// training time is emulated: a step takes 1/StepsPerSecond seconds, so an
// interval checkpoint comes every ceil(checkpoint_every_seconds ×
// StepsPerSecond) steps, at the same steps on every machine however loaded.
// It is uploaded before training goes on (gpu-image uploads in the
// background), then announced with a checkpoint callback.

const (
	checkpointFormat = 1
	// defaultCheckpointEverySeconds is the worker's default interval.
	defaultCheckpointEverySeconds = 600.0
)

// checkpointFiles are the files every checkpoint has.
var checkpointFiles = []string{contract.ArtifactAdapterConfig, contract.ArtifactAdapterModel, contract.CheckpointTrainingState, contract.CheckpointTrainerState}

// trainerState is trainer_state.json: what a resumed run continues from.
type trainerState struct {
	Format          int      `json:"format"`
	Fingerprint     string   `json:"fingerprint"`
	Step            int64    `json:"step"`
	TotalSteps      int64    `json:"total_steps"`
	Epoch           float64  `json:"epoch"`
	NextEpoch       int      `json:"next_epoch"`
	NextStepInEpoch int64    `json:"next_step_in_epoch"`
	Reason          string   `json:"reason"`
	TrainSeconds    float64  `json:"train_seconds"`
	TokensSeen      int64    `json:"tokens_seen"`
	MicroBatches    int64    `json:"micro_batches"`
	LossSum         float64  `json:"loss_sum"`
	LossCount       int64    `json:"loss_count"`
	InitialLoss     *float64 `json:"initial_loss"`
	LastLoss        *float64 `json:"last_loss"`
	WorkerVersion   string   `json:"worker_version"`
	EmulatedBy      string   `json:"emulated_by"`
}

// fingerprint is what must be equal for a checkpoint to continue a run:
// the base model and its targets, the hyperparameters that shape the run,
// the data and its held-out part (gpu-image's checkpoint.fingerprint; the
// emulator has no per-example lengths, so the dataset's counts stand in).
func fingerprint(spec *contract.JobSpec) string {
	h, bm, ds := spec.Hyperparameters, spec.BaseModel, spec.Dataset
	// The held-out part by what it is, never by its presigned URL (a new
	// attempt gets a new one).
	ev := evaluationOf(spec)
	validation := []any{ev.trainExamples, ev.examples, ev.everySteps}
	if v := spec.Validation; v != nil && v.Dataset != nil {
		validation = append(validation, v.Dataset.SHA256)
	}
	if v := spec.Validation; v != nil && v.Seed != nil {
		validation = append(validation, *v.Seed)
	}
	doc := map[string]any{
		"format":          checkpointFormat,
		"base_model":      []any{bm.ID, bm.Quantization, bm.ChatRule, bm.LoRATargets},
		"hyperparameters": []any{h.LearningRate, h.BatchSize, h.GradientAccumulation, h.Epochs, h.LoRARank, h.LoRAAlpha, h.LoRADropout, h.MaxSeqLength, h.WarmupRatio},
		"dataset":         []any{ds.SHA256, ds.Examples, ds.TokensTotal, ds.TokensTrained},
		"validation":      validation,
	}
	b, _ := json.Marshal(doc) // map keys come out sorted
	sum := sha256.Sum256(b)
	return hex.EncodeToString(sum[:])
}

// checkpointEverySteps is the interval in emulated steps.
func (w *simWorker) checkpointEverySteps() int64 {
	every := defaultCheckpointEverySeconds
	if v := w.spec.CheckpointEverySeconds; v != nil {
		every = *v
	}
	return max(1, int64(math.Ceil(every*w.e.cfg.StepsPerSecond-1e-9)))
}

// checkpointFilesOf writes the files of the checkpoint st describes.
func (w *simWorker) checkpointFilesOf(st trainerState) ([]file, error) {
	tensors := make([]Tensor, 0, 4*len(w.mods)+1)
	rng := rand.New(rand.NewPCG(uint64(st.Step), 0x5851f42d4c957f2d))
	r := int64(w.spec.Hyperparameters.LoRARank)
	for i, m := range w.mods {
		for j, shape := range [][]int64{{r, m.in}, {m.out, r}} {
			n := shape[0] * shape[1]
			idx := 2*i + j
			tensors = append(tensors,
				Tensor{Name: fmt.Sprintf("optimizer.%d.exp_avg", idx), DType: "F32", Shape: shape, Data: fill(rng, "F32", n, 1e-3)},
				Tensor{Name: fmt.Sprintf("optimizer.%d.exp_avg_sq", idx), DType: "F32", Shape: shape, Data: fill(rng, "F32", n, 1e-6)})
		}
	}
	seed := make([]byte, 16)
	for i := range seed {
		seed[i] = byte(rng.Uint32())
	}
	tensors = append(tensors, Tensor{Name: "rng.torch_cpu", DType: "U8", Shape: []int64{16}, Data: seed})
	var state bytes.Buffer
	if err := WriteSafetensors(&state, tensors, map[string]string{"format": fmt.Sprint(checkpointFormat)}); err != nil {
		return nil, err
	}
	js, err := json.Marshal(st)
	if err != nil {
		return nil, err
	}
	return []file{
		{contract.ArtifactAdapterConfig, w.adapter.config},
		{contract.ArtifactAdapterModel, w.adapter.model},
		{contract.CheckpointTrainingState, state.Bytes()},
		{contract.CheckpointTrainerState, append(js, '\n')},
	}, nil
}

// readTrainerState checks a downloaded checkpoint (gpu-image's
// checkpoint.read_state): every file there, trainer_state.json of format
// 1 with its step, position and fingerprint, the tensors readable.
func readTrainerState(files map[string][]byte) (*trainerState, error) {
	var missing []string
	for _, n := range checkpointFiles {
		if _, ok := files[n]; !ok {
			missing = append(missing, n)
		}
	}
	if len(missing) > 0 {
		return nil, fmt.Errorf("the checkpoint lacks %v", missing)
	}
	var raw map[string]json.RawMessage
	if err := json.Unmarshal(files[contract.CheckpointTrainerState], &raw); err != nil {
		return nil, fmt.Errorf("%s is unreadable (%v)", contract.CheckpointTrainerState, err)
	}
	var st trainerState
	if err := json.Unmarshal(files[contract.CheckpointTrainerState], &st); err != nil || st.Format != checkpointFormat {
		return nil, fmt.Errorf("%s is not a format %d checkpoint", contract.CheckpointTrainerState, checkpointFormat)
	}
	for _, k := range []string{"step", "next_epoch", "next_step_in_epoch", "fingerprint"} {
		if _, ok := raw[k]; !ok {
			return nil, fmt.Errorf("%s lacks %s", contract.CheckpointTrainerState, k)
		}
	}
	for _, n := range []string{contract.ArtifactAdapterModel, contract.CheckpointTrainingState} {
		if _, _, err := ParseSafetensors(files[n]); err != nil {
			return nil, fmt.Errorf("the checkpoint's tensors are unreadable (%v)", err)
		}
	}
	return &st, nil
}

// checkpoint writes, uploads and announces the checkpoint st describes. A
// checkpoint never fails the job: one that cannot be stored is logged and
// skipped, and once the server says it hands out no URLs, checkpoints stop.
// Only a stop (cancel, time limit, superseded) is returned.
func (w *simWorker) checkpoint(ctx context.Context, st trainerState, loss float64) error {
	t0 := time.Now()
	files, err := w.checkpointFilesOf(st)
	if err != nil {
		w.log.Error("checkpoint not written", "step", st.Step, "error", err)
		return nil
	}
	written := time.Since(t0).Seconds()
	t1 := time.Now()
	refs, err := w.uploadFiles(ctx, contract.PurposeCheckpoint, files, nil, st.Step)
	var werr *workerError
	switch {
	case errors.Is(err, errNoUploadURLs):
		w.checkpointsOff = true
		w.log.Warn("checkpoints are not uploaded in this attempt", "error", err)
		return nil
	case errors.As(err, &werr) && werr.code == contract.CodeUpload:
		w.log.Warn("checkpoint not stored (training goes on)", "step", st.Step, "error", werr.message)
		return nil
	case err != nil:
		return err
	}
	uploaded := time.Since(t1).Seconds()
	var size int64
	for _, r := range refs {
		size += r.SizeBytes
	}
	w.ckpt.count++
	w.ckpt.bytes += size
	w.ckpt.seconds += written + uploaded
	ws, us := round(written, 3), round(uploaded, 3)
	w.cb.send(ctx, &contract.Checkpoint{
		Step:          st.Step,
		TotalSteps:    st.TotalSteps,
		Epoch:         round(st.Epoch, 4),
		Position:      contract.Position{Epoch: st.NextEpoch, StepInEpoch: st.NextStepInEpoch},
		Reason:        st.Reason,
		Partial:       st.Step < st.TotalSteps,
		Files:         refs,
		SizeBytes:     size,
		TrainSeconds:  round(st.TrainSeconds, 3),
		TokensSeen:    st.TokensSeen,
		Loss:          &loss,
		WriteSeconds:  &ws,
		UploadSeconds: &us,
	})
	w.log.Info("checkpoint stored", "step", st.Step, "reason", st.Reason, "bytes", size)
	return nil
}

// resumePoint is a downloaded checkpoint a run continues from.
type resumePoint struct {
	state *trainerState
}

// downloadCheckpoint returns the checkpoint to continue from, downloaded
// and checked, or nil (gpu-image's job._download_checkpoint). It asks for
// the spec's resume checkpoint or, with no resume in the spec (a RunPod
// re-run of an attempt that stored checkpoints), for the job's latest. Any
// failure but a stop means: train from step 0, with a note in the
// completed callback.
func (w *simWorker) downloadCheckpoint(ctx context.Context) (*resumePoint, error) {
	r := w.spec.Resume
	if r == nil && w.urls.unsupported() {
		return nil, nil
	}
	var asked []contract.URLFile
	var step int64
	var id string
	if r != nil {
		for _, f := range r.Files {
			asked = append(asked, contract.URLFile{Name: f.Name})
		}
		step, id = r.Step, r.CheckpointID
	}
	g := w.urls.ask(ctx, contract.PurposeCheckpointDownload, asked, step, id, 0)
	var files []contract.FileRef
	switch {
	case g != nil && g.checkpoint != nil:
		step, files, id = g.checkpoint.Step, g.checkpoint.Files, g.checkpoint.CheckpointID
	case r != nil:
		step, files, id = r.Step, r.Files, r.CheckpointID
	default:
		return nil, nil // no checkpoint stored for this job
	}
	urls := map[string]contract.PresignedURL{}
	if r != nil && (g == nil || g.checkpoint == nil) {
		for n, u := range r.URLs {
			urls[n] = u
		}
	}
	if g != nil {
		for n, u := range g.urls {
			urls[n] = u
		}
	}
	var missing []string
	for _, n := range checkpointFiles {
		if !slices.ContainsFunc(files, func(f contract.FileRef) bool { return f.Name == n }) {
			missing = append(missing, n)
		}
	}
	noURL := slices.ContainsFunc(files, func(f contract.FileRef) bool { _, ok := urls[f.Name]; return !ok })
	if len(missing) > 0 || noURL {
		why := "its files or their URLs could not be had"
		if len(missing) > 0 {
			why += fmt.Sprintf(" (missing %v)", missing)
		}
		w.skipResume(step, why)
		return nil, nil
	}
	got := map[string][]byte{}
	for _, f := range files {
		if !slices.Contains(checkpointFiles, f.Name) {
			continue
		}
		u := urls[f.Name]
		first := g
		if g != nil {
			if _, ok := g.urls[f.Name]; !ok {
				first = nil
			}
		}
		data, err := w.fetch(ctx, contract.PurposeCheckpointDownload, f, "checkpoint file "+f.Name, &u, first, step, id)
		if err != nil {
			if stopping(err) {
				return nil, err
			}
			var werr *workerError
			if errors.As(err, &werr) {
				w.skipResume(step, werr.message)
			} else {
				w.skipResume(step, err.Error())
			}
			return nil, nil
		}
		got[f.Name] = data
	}
	st, err := readTrainerState(got)
	if err != nil {
		w.skipResume(step, err.Error())
		return nil, nil
	}
	w.log.Info("checkpoint downloaded", "step", st.Step)
	return &resumePoint{state: st}, nil
}

// checkResume drops a checkpoint of another run (gpu-image's
// job._check_resume): other settings or data.
func (w *simWorker) checkResume(rp *resumePoint) *resumePoint {
	if rp == nil {
		return nil
	}
	st := rp.state
	if st.Fingerprint != fingerprint(w.spec) {
		w.skipResume(st.Step, "it belongs to a run with other settings or data")
		return nil
	}
	if st.Step < 1 || st.Step > w.total || st.NextEpoch < 0 || st.NextStepInEpoch < 0 {
		w.skipResume(st.Step, "its position does not fit this run")
		return nil
	}
	return rp
}

func (w *simWorker) skipResume(step int64, why string) {
	at := ""
	if step > 0 {
		at = fmt.Sprintf(" at step %d", step)
	}
	w.resumeNote = fmt.Sprintf("the checkpoint%s was not used: %s", at, why)
	w.log.Warn("training from step 0", "why", w.resumeNote)
}

// stopping reports whether err means the worker must stop (cancel, time
// limit, superseded, RunPod's stop signal, shutdown).
func stopping(err error) bool {
	var werr *workerError
	if errors.As(err, &werr) {
		return werr.code == contract.CodeCancelled || werr.code == contract.CodeTimeout || werr.code == codeSuperseded
	}
	return err != nil
}
