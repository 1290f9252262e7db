package runpodemu

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"hash/fnv"
	"log/slog"
	"math"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/brightrun/brightrun/shared/contract"
)

// runInfo is what a worker gets from RunPod: the job id and input.
type runInfo struct {
	runpodID string
	workerID string
	input    json.RawMessage
	fault    Fault
	crash    bool // this run dies at fault.CrashAtStep
}

// runResult is what the handler returns to RunPod.
type runResult struct {
	output  json.RawMessage
	err     string // non-empty: the job FAILED with this error
	crashed bool   // the worker process died: RunPod re-runs the job
}

// workerError is a classified failure (gpu-image's WorkerError).
type workerError struct {
	code       contract.FailureCode // or codeSuperseded
	message    string
	advice     string
	httpStatus int  // a transfer refused by its URL: the status
	urlExpired bool // that refusal says the URL expired: a fresh one may work
}

func (e *workerError) Error() string { return string(e.code) + ": " + e.message }

// codeSuperseded is never sent: the server refused the attempt.
const codeSuperseded contract.FailureCode = "superseded"

var errCrash = errors.New("the worker process died")

func failure(code contract.FailureCode, advice string, format string, args ...any) *workerError {
	if advice == "" {
		advice = defaultAdvice[code]
	}
	return &workerError{code: code, message: fmt.Sprintf(format, args...), advice: advice}
}

// defaultAdvice mirrors gpu-image's errors.default_advice.
var defaultAdvice = map[contract.FailureCode]string{
	contract.CodeOOM:             "Lower batch_size, lora_rank or max_seq_length, or choose a GPU with more memory.",
	contract.CodeNaNLoss:         "Lower learning_rate and retry.",
	contract.CodeDatasetDownload: "Check that the dataset still exists and retry the job.",
	contract.CodeDatasetInvalid:  "Fix the listed lines, upload the dataset again and retry.",
	contract.CodeModelLoad:       "Check that the base model is cached on the network volume at the configured path, then retry.",
	contract.CodeTimeout:         "Raise time_limit_seconds, or train fewer epochs or on fewer examples.",
	contract.CodeCancelled:       "No action needed: the job was cancelled.",
	contract.CodeSpecInvalid:     "Retry the job; if it fails again, report it with the job id.",
	contract.CodeUpload:          "Retry the job; the trained adapter could not be uploaded.",
	contract.CodeInternal:        "Retry the job; if it fails again, report it with the job id.",
	codeSuperseded:               "No action needed: a newer attempt of this job is running.",
}

// simulate runs the simulated handler for one run of a job. It never
// panics on bad input: every failure is classified, reported with a failed
// callback (when the spec says where) and returned as RunPod's error.
func (e *Emulator) simulate(ctx context.Context, run runInfo) runResult {
	log := e.log.With("runpod_job", run.runpodID, "worker", run.workerID)
	spec, err := contract.ParseJobSpec(run.input)
	if err != nil {
		werr := failure(contract.CodeSpecInvalid, "", "Invalid job spec: %s.", strings.TrimPrefix(err.Error(), "invalid job spec: "))
		log.Warn("invalid job spec", "error", err)
		if cb := e.bestEffortCallbacks(run.input); cb != nil {
			cb.send(context.WithoutCancel(ctx), &contract.Failed{Code: werr.code, Message: werr.message, Advice: werr.advice})
		}
		return errorResult(werr, nil)
	}
	key, _ := contract.ParseSecret(spec.Callback.Secret) // valid: ParseJobSpec checked it
	cb := e.newCallbacks(spec.Callback.URL, key, spec.JobID, spec.Attempt)
	wlog := log.With("job_id", spec.JobID, "attempt", spec.Attempt)
	w := &simWorker{
		e:       e,
		run:     run,
		spec:    spec,
		log:     wlog,
		started: time.Now(),
		stageT:  time.Now(),
		seconds: map[string]float64{},
		cb:      cb,
		urls:    &urlBroker{cb: cb, log: wlog},
	}
	if run.fault.NoURLRequests {
		// Known unsupported from the start: no urls callback is sent.
		w.urls.known, w.urls.supported = true, false
	}
	out, err := w.execute(ctx)
	if err == nil {
		return runResult{output: out}
	}
	var werr *workerError
	switch {
	case errors.Is(err, errCrash):
		log.Info("emulated worker crashed", "step", run.fault.CrashAtStep)
		return runResult{crashed: true}
	case errors.Is(err, errShutdown) || e.ctx.Err() != nil:
		return runResult{err: "worker stopped: " + errShutdown.Error()}
	case errors.Is(err, errStopSignal):
		// The SDK cancelled the handler (RunPod cancel, executionTimeout or
		// ttl): like gpu-image, report it as cancelled.
		werr = failure(contract.CodeCancelled, "", "The job was cancelled%s (RunPod stop signal).", w.where())
	case errors.As(err, &werr):
	default:
		werr = failure(contract.CodeInternal, "", "An unexpected error stopped the worker (%v).", err)
	}
	log.Info("emulated worker failed", "code", werr.code, "message", werr.message)
	if werr.code != codeSuperseded {
		fctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 30*time.Second)
		w.cb.send(fctx, &contract.Failed{Code: werr.code, Message: werr.message, Advice: werr.advice, Stage: w.stage})
		cancel()
	}
	return errorResult(werr, spec)
}

// errorResult is the handler's error output, as gpu-image returns it:
// {"error": "code: message", "code", "advice", "job_id", "attempt"}. The
// RunPod SDK moves "error" to the job's error and keeps the rest as output.
func errorResult(werr *workerError, spec *contract.JobSpec) runResult {
	out := map[string]any{"code": werr.code, "advice": werr.advice}
	if spec != nil {
		out["job_id"], out["attempt"] = spec.JobID, spec.Attempt
	}
	b, _ := json.Marshal(out)
	return runResult{output: b, err: werr.Error()}
}

func (e *Emulator) newCallbacks(url string, key []byte, jobID string, attempt int) *callbacks {
	return &callbacks{
		url: url, key: key, jobID: jobID, attempt: attempt,
		hc: e.cfg.HTTPClient, clock: e.cfg.Clock, retries: e.cfg.CallbackRetries, delay: e.cfg.CallbackRetryDelay,
		log: e.log.With("job_id", jobID, "attempt", attempt),
	}
}

// bestEffortCallbacks reads just enough of a broken spec to report it
// (gpu-image's callback_target).
func (e *Emulator) bestEffortCallbacks(input json.RawMessage) *callbacks {
	var raw struct {
		JobID    string `json:"job_id"`
		Attempt  int    `json:"attempt"`
		Callback struct {
			URL    string `json:"url"`
			Secret string `json:"secret"`
		} `json:"callback"`
	}
	if json.Unmarshal(input, &raw) != nil || !contract.ValidJobID(raw.JobID) || raw.Attempt < 1 ||
		!(strings.HasPrefix(raw.Callback.URL, "http://") || strings.HasPrefix(raw.Callback.URL, "https://")) {
		return nil
	}
	key, err := contract.ParseSecret(raw.Callback.Secret)
	if err != nil {
		return nil
	}
	return e.newCallbacks(raw.Callback.URL, key, raw.JobID, raw.Attempt)
}

// simWorker is one run of the simulated training job.
type simWorker struct {
	e       *Emulator
	run     runInfo
	spec    *contract.JobSpec
	cb      *callbacks
	urls    *urlBroker
	log     *slog.Logger
	started time.Time // real time: elapsed_seconds, the spec's time limit

	stage   contract.Stage
	stageT  time.Time
	seconds map[string]float64
	step    int64
	total   int64
	eval    evaluation

	mods           []wrapped    // the modules LoRA wraps
	adapter        adapterFiles // the adapter, as checkpoints and the final upload carry it
	checkpointsOff bool         // the server hands out no checkpoint URLs
	ckpt           struct {     // checkpoints stored by this run
		count, bytes int64
		seconds      float64
	}
	resumeNote string // why a checkpoint was not resumed from
}

func (w *simWorker) where() string {
	s := ""
	if w.stage != "" {
		s = " during " + string(w.stage)
	}
	if w.stage == contract.StageTrain && w.total > 0 {
		s += fmt.Sprintf(" (step %d of %d)", w.step, w.total)
	}
	return s
}

// check returns why the worker must stop now, if it must.
func (w *simWorker) check(ctx context.Context) error {
	if ctx.Err() != nil {
		return context.Cause(ctx)
	}
	stop, superseded, why := w.cb.stopped()
	switch {
	case superseded:
		return failure(codeSuperseded, "", "The server refused this attempt%s: %s.", w.where(), why)
	case stop:
		return failure(contract.CodeCancelled, "", "The job was cancelled%s: %s.", w.where(), why)
	case time.Since(w.started) > time.Duration(w.spec.TimeLimitSeconds)*time.Second:
		return failure(contract.CodeTimeout, "", "The job ran past its time limit of %d seconds%s.", w.spec.TimeLimitSeconds, w.where())
	}
	return nil
}

func (w *simWorker) enter(ctx context.Context, s contract.Stage) error {
	now := time.Now()
	if w.stage != "" {
		w.seconds[string(w.stage)] = round(now.Sub(w.stageT).Seconds(), 3)
	}
	w.stage, w.stageT = s, now
	w.cb.send(ctx, &contract.StageChange{Stage: s})
	return w.check(ctx)
}

// pause spends the configured stage delay, stopping early when told.
func (w *simWorker) pause(ctx context.Context) error {
	if err := sleepCtx(ctx, w.e.cfg.StageDelay); err != nil {
		return err
	}
	return w.check(ctx)
}

func (w *simWorker) execute(ctx context.Context) (json.RawMessage, error) {
	spec, cfg := w.spec, w.e.cfg
	w.cb.send(ctx, &contract.Started{
		WorkerID:      w.run.workerID,
		RunPodJobID:   w.run.runpodID,
		WorkerVersion: cfg.WorkerVersion,
		GPU:           &contract.GPU{Name: "NVIDIA H100 80GB HBM3 (emulated)", MemoryBytes: 85520809984, Count: 1},
	})
	if err := w.check(ctx); err != nil {
		return nil, err
	}

	if err := w.enter(ctx, contract.StageDownload); err != nil {
		return nil, err
	}
	if err := w.downloadDatasets(ctx); err != nil {
		return nil, err
	}
	resume, err := w.downloadCheckpoint(ctx)
	if err != nil {
		return nil, err
	}
	if err := w.pause(ctx); err != nil {
		return nil, err
	}

	if err := w.enter(ctx, contract.StageLoad); err != nil {
		return nil, err
	}
	loadStart := time.Now()
	shape := w.e.shapeFor(spec.BaseModel.ID)
	mods, unmatched := shape.matchTargets(spec.BaseModel.LoRATargets)
	if len(unmatched) > 0 {
		return nil, failure(contract.CodeModelLoad, "Check the model registry's LoRA targets for this base model.",
			"The LoRA targets %v match no module of the base model.", unmatched)
	}
	w.mods = mods
	// The adapter's tensors do not depend on the step: the emulator writes
	// them once, for its checkpoints and for the final upload.
	if w.adapter, err = buildAdapter(spec, mods); err != nil {
		return nil, failure(contract.CodeInternal, "", "Saving the adapter failed (%v).", err)
	}
	w.eval = evaluationOf(spec)
	w.total = spec.Hyperparameters.TotalSteps(w.eval.trainExamples)
	resume = w.checkResume(resume)
	if err := w.pause(ctx); err != nil {
		return nil, err
	}
	loadSeconds := time.Since(loadStart).Seconds()

	if err := w.enter(ctx, contract.StageTrain); err != nil {
		return nil, err
	}
	tr, err := w.train(ctx, resume)
	if err != nil {
		return nil, err
	}

	if err := w.enter(ctx, contract.StageSave); err != nil {
		return nil, err
	}
	files := w.adapter
	if err := w.pause(ctx); err != nil {
		return nil, err
	}

	if err := w.enter(ctx, contract.StageUpload); err != nil {
		return nil, err
	}
	fallback := map[string]contract.PresignedURL{}
	for _, name := range []string{contract.ArtifactAdapterConfig, contract.ArtifactAdapterModel} {
		up, _ := spec.Artifacts.ByName(name)
		fallback[name] = contract.PresignedURL{URL: up.URL, Method: http.MethodPut, Headers: up.Headers}
	}
	refs, err := w.uploadFiles(ctx, contract.PurposeArtifact, []file{
		{contract.ArtifactAdapterConfig, files.config}, {contract.ArtifactAdapterModel, files.model},
	}, fallback, 0)
	var werr *workerError
	switch {
	case errors.As(err, &werr) && werr.code == contract.CodeUpload:
		return nil, failure(contract.CodeUpload, "Retry the job: it resumes from its last checkpoint instead of training again; "+
			"the trained adapter is also kept on the worker's volume.", "%s", werr.message)
	case errors.Is(err, errNoUploadURLs):
		return nil, failure(contract.CodeUpload, "", "Uploading the adapter failed (%v).", err)
	case err != nil:
		return nil, err
	}
	var artifacts []contract.Artifact
	for _, r := range refs {
		a := contract.Artifact{Name: r.Name, SizeBytes: r.SizeBytes, SHA256: r.SHA256}
		artifacts = append(artifacts, a)
		w.cb.send(ctx, &a)
	}
	w.seconds[string(contract.StageUpload)] = round(time.Since(w.stageT).Seconds(), 3)

	h, ds := spec.Hyperparameters, spec.Dataset
	final, initial, mean := tr.finalLoss, tr.initialLoss, tr.meanLoss
	completed := &contract.Completed{
		FinalLoss:     &final,
		Steps:         tr.steps,
		TrainSeconds:  round(tr.seconds, 3),
		TokensTrained: ds.TokensTrained * int64(h.Epochs),
		Metrics: contract.CompletedMetrics{
			InitialLoss:          &initial,
			TrainLossMean:        &mean,
			TotalSteps:           tr.steps,
			Epochs:               h.Epochs,
			Examples:             ds.Examples,
			ExamplesUsed:         ds.Examples,
			TrainExamples:        w.eval.trainExamples,
			DatasetTokensTotal:   ds.TokensTotal,
			DatasetTokensTrained: ds.TokensTrained,
			TokensSeen:           ds.TokensTotal * int64(h.Epochs),
			TokensPerSecond:      round(tr.tokensPerSecond, 2),
			PeakGPUMemoryBytes:   gpuMemory(spec),
			LoadSeconds:          round(loadSeconds, 3),
			StageSeconds:         w.seconds,
			TotalSeconds:         round(time.Since(w.started).Seconds(), 3),
			Device:               "emulated", // not a GPU: the control plane must not learn from it
			Quantization:         spec.BaseModel.Quantization,
			TrainableParameters:  files.trainable,
			LoRAModules:          files.modules,
			Checkpoints:          w.ckpt.count,
			CheckpointBytes:      w.ckpt.bytes,
			CheckpointSeconds:    round(w.ckpt.seconds, 3),
			ResumeSkipped:        w.resumeNote,
		},
	}
	if w.eval.examples > 0 {
		// Evaluations of the whole run (a resumed one's included): every
		// due step up to the last.
		var n int64
		for s := int64(1); s <= w.total; s++ {
			if w.eval.due(s, w.total) {
				n++
			}
		}
		completed.Metrics.EvalLoss, completed.Metrics.EvalExamples, completed.Metrics.Evaluations = tr.evalLoss, w.eval.examples, n
	}
	if tr.resumedFrom > 0 {
		completed.Metrics.ResumedFromStep = tr.resumedFrom
		completed.Metrics.RunTrainSeconds = round(tr.runSeconds, 3)
	}
	if !w.cb.send(ctx, completed) {
		if err := w.check(ctx); err != nil {
			return nil, err
		}
	}
	out, _ := json.Marshal(map[string]any{
		"status":      "completed",
		"job_id":      spec.JobID,
		"attempt":     spec.Attempt,
		"final_loss":  final,
		"steps":       tr.steps,
		"artifacts":   artifacts,
		"emulated_by": "runpodemu",
	})
	return out, nil
}

// downloadDatasets fetches the dataset (and a validation dataset) through
// URLs asked for at once, the spec's as the fallback, and checks their
// lines.
func (w *simWorker) downloadDatasets(ctx context.Context) error {
	ds := w.spec.Dataset
	type item struct {
		ref      contract.FileRef
		what     string
		fallback string
	}
	items := []item{{contract.FileRef{Name: contract.FileDataset, SizeBytes: ds.SizeBytes, SHA256: ds.SHA256}, "dataset", ds.URL}}
	if v := w.spec.Validation; v != nil && v.Dataset != nil {
		items = append(items, item{contract.FileRef{Name: contract.FileValidation, SizeBytes: v.Dataset.SizeBytes, SHA256: v.Dataset.SHA256}, "validation dataset", v.Dataset.URL})
	}
	asked := make([]contract.URLFile, len(items))
	for i, it := range items {
		asked[i] = contract.URLFile{Name: it.ref.Name}
	}
	g := w.urls.ask(ctx, contract.PurposeDataset, asked, 0, "", 0)
	for _, it := range items {
		data, err := w.fetch(ctx, contract.PurposeDataset, it.ref, it.what, &contract.PresignedURL{URL: it.fallback, Method: http.MethodGet}, g, 0, "")
		if err != nil {
			return err
		}
		if err := checkDataset(data); err != nil {
			return err
		}
		if err := w.check(ctx); err != nil {
			return err
		}
	}
	return nil
}

// checkDataset is a light version of the worker's reading of chat JSONL:
// every non-blank line is {"messages": [{"role", "content"}, ...]}.
func checkDataset(data []byte) error {
	var bad []string
	n, lineNo := 0, 0
	sc := bufio.NewScanner(bytes.NewReader(data))
	sc.Buffer(make([]byte, 0, 64<<10), 64<<20)
	for sc.Scan() {
		lineNo++
		line := bytes.TrimSpace(sc.Bytes())
		if len(line) == 0 {
			continue
		}
		if problem := checkLine(line); problem != "" {
			n++
			if len(bad) < 5 {
				bad = append(bad, fmt.Sprintf("line %d: %s", lineNo, problem))
			}
		}
	}
	if err := sc.Err(); err != nil {
		return failure(contract.CodeDatasetInvalid, "", "The dataset could not be read (%v).", err)
	}
	if n > 0 {
		s := "s"
		if n == 1 {
			s = ""
		}
		return failure(contract.CodeDatasetInvalid, "", "The dataset has %d invalid line%s: %s.", n, s, strings.Join(bad, "; "))
	}
	if lineNo == 0 {
		return failure(contract.CodeDatasetInvalid, "", "The dataset is empty.")
	}
	return nil
}

func checkLine(line []byte) string {
	var doc struct {
		Messages []struct {
			Role    string `json:"role"`
			Content *string
		} `json:"messages"`
	}
	if err := json.Unmarshal(line, &doc); err != nil {
		return "not a JSON object with a messages list"
	}
	if len(doc.Messages) == 0 {
		return "messages must be a non-empty list"
	}
	for i, m := range doc.Messages {
		if m.Role != "system" && m.Role != "user" && m.Role != "assistant" {
			return fmt.Sprintf("messages[%d].role must be one of system, user, assistant, got %q", i, m.Role)
		}
		if m.Content == nil {
			return fmt.Sprintf("messages[%d].content must be a string", i)
		}
	}
	return ""
}

type trainResult struct {
	steps                            int64
	initialLoss, finalLoss, meanLoss float64
	seconds, tokensPerSecond         float64 // seconds: the run's, earlier attempts included
	resumedFrom                      int64   // the checkpoint's step, 0 when trained from step 0
	runSeconds                       float64 // this run's own training seconds
	evalLoss                         *float64
	evaluations                      int64 // this run's
}

// train runs the steps: ceil(examples / (batch × accumulation)) per epoch,
// StepsPerSecond of them per second, reporting progress every
// progress_every_steps steps or progress_every_seconds seconds (and on the
// first and last step), writing checkpoints, and stopping at the next step
// when told to. From a checkpoint it continues at the step after it, with
// the loss curve and running figures the checkpoint holds: a resumed run
// ends with the steps and curve of an uninterrupted one.
func (w *simWorker) train(ctx context.Context, resume *resumePoint) (trainResult, error) {
	spec, fault := w.spec, w.run.fault
	h := spec.Hyperparameters
	perEpoch := h.StepsPerEpoch(w.eval.trainExamples)
	total := w.total
	warmup := int64(math.Ceil(h.WarmupRatio * float64(total)))
	tokensPerStep := float64(spec.Dataset.TokensTotal) / float64(perEpoch)
	stepTime := time.Duration(float64(time.Second) / w.e.cfg.StepsPerSecond)
	every := int64(spec.Callback.ProgressEverySteps)
	everyT := time.Duration(spec.Callback.ProgressEverySeconds * float64(time.Second))
	ckptEvery := w.checkpointEverySteps()
	k := 3.0 / float64(total) // the loss falls to about 5% of its excess by the end
	// The curve is the job's, not the attempt's: a resumed attempt goes on
	// with the same one.
	seed := fnv.New64a()
	fmt.Fprint(seed, spec.JobID)
	noiseSeed := seed.Sum64()

	start := time.Now()
	var res trainResult
	var sum, prior float64
	var count int64
	first := int64(1)
	if resume != nil {
		st := resume.state
		first, res.resumedFrom = st.Step+1, st.Step
		sum, count, prior = st.LossSum, st.LossCount, st.TrainSeconds
		res.steps = st.Step
		if st.InitialLoss != nil {
			res.initialLoss = *st.InitialLoss
		}
		if st.LastLoss != nil {
			res.finalLoss = *st.LastLoss
		}
		w.step = st.Step
		w.log.Info("resuming", "step", st.Step, "of", total, "epoch", st.NextEpoch, "step_in_epoch", st.NextStepInEpoch)
	}
	lastStep, lastTime, lastTrain, sent := first-1, start, time.Duration(0), false
	lastCkpt := first - 1
	for step := first; step <= total; step++ {
		if err := sleepCtx(ctx, stepTime); err != nil {
			return res, err
		}
		w.step = step
		if err := w.check(ctx); err != nil {
			return res, err
		}
		switch step {
		case fault.CrashAtStep:
			if w.run.crash {
				return res, errCrash
			}
		case fault.HangAtStep:
			<-ctx.Done() // silent until RunPod gives up on the job
			return res, context.Cause(ctx)
		case fault.NaNAtStep:
			return res, failure(contract.CodeNaNLoss, nanAdvice(h), "The training loss became nan at step %d; the run diverged.", step)
		case fault.FailAtStep:
			return res, stepFailure(fault.FailCode, h, step)
		}
		x := float64(step)
		loss := round(2.2*math.Exp(-k*x)+0.35+0.04*(noise(noiseSeed, step)-0.5), 4)
		if step == 1 {
			res.initialLoss = loss
		}
		sum += loss
		count++
		res.finalLoss, res.steps = loss, step
		var evalLoss *float64
		if w.eval.due(step, total) {
			// Held-out loss: a little above the training loss, and falling.
			v := round(loss*1.06+0.02+0.03*(noise(noiseSeed^0x5eed, step)-0.5), 4)
			evalLoss = &v
			res.evalLoss, res.evaluations = evalLoss, res.evaluations+1
		}
		now := time.Now()
		if !sent || step == total || step-lastStep >= every || now.Sub(lastTime) >= everyT || evalLoss != nil {
			trained := now.Sub(start)
			dt := (trained - lastTrain).Seconds()
			tps := 0.0
			if dt > 0 {
				tps = float64(step-lastStep) * tokensPerStep / dt
			}
			elapsed := round(now.Sub(w.started).Seconds(), 3)
			eta := round(float64(total-step)*trained.Seconds()/float64(step-first+1), 1)
			grad := round(0.25+1.2*math.Exp(-k*x)+0.05*noise(noiseSeed^0xabcdef, step), 4)
			w.cb.send(ctx, &contract.Progress{
				Step:            step,
				TotalSteps:      total,
				Epoch:           round(x/float64(perEpoch), 4),
				Loss:            loss,
				LearningRate:    learningRate(h.LearningRate, step, warmup, total),
				TokensPerSecond: round(tps, 2),
				GPUMemoryBytes:  gpuMemory(spec),
				ElapsedSeconds:  &elapsed,
				ETASeconds:      &eta,
				GradNorm:        &grad,
				EvalLoss:        evalLoss,
			})
			lastStep, lastTime, lastTrain, sent = step, now, trained, true
		}
		if w.checkpointsOff || w.urls.unsupported() {
			continue
		}
		reason := ""
		switch {
		case step%perEpoch == 0:
			reason = contract.CheckpointEpochEnd
		case step-lastCkpt >= ckptEvery:
			reason = contract.CheckpointInterval
		}
		if reason == "" {
			continue
		}
		lastCkpt = step
		epoch, inEpoch := int((step-1)/perEpoch), (step-1)%perEpoch+1 // the epoch (0-based) and its steps done
		next, nextIn := epoch, inEpoch
		if inEpoch == perEpoch {
			next, nextIn = epoch+1, 0
		}
		initial, last := res.initialLoss, loss
		st := trainerState{
			Format: checkpointFormat, Fingerprint: fingerprint(spec), Step: step, TotalSteps: total,
			Epoch: float64(epoch) + float64(inEpoch)/float64(perEpoch), NextEpoch: next, NextStepInEpoch: nextIn,
			Reason: reason, TrainSeconds: prior + time.Since(start).Seconds(), TokensSeen: int64(x * tokensPerStep),
			MicroBatches: step * int64(h.GradientAccumulation), LossSum: sum, LossCount: count,
			InitialLoss: &initial, LastLoss: &last, WorkerVersion: w.e.cfg.WorkerVersion, EmulatedBy: "runpodemu",
		}
		if err := w.checkpoint(ctx, st, loss); err != nil {
			return res, err
		}
	}
	res.runSeconds = time.Since(start).Seconds()
	res.seconds = prior + res.runSeconds
	res.meanLoss = round(sum/float64(max(count, 1)), 4)
	if res.runSeconds > 0 {
		res.tokensPerSecond = float64(total-first+1) * tokensPerStep / res.runSeconds
	}
	return res, nil
}

// learningRate follows transformers' linear warmup then cosine decay to 0.
func learningRate(base float64, step, warmup, total int64) float64 {
	var f float64
	if step < warmup {
		f = float64(step) / float64(max(warmup, 1))
	} else {
		p := float64(step-warmup) / float64(max(total-warmup, 1))
		f = 0.5 * (1 + math.Cos(math.Pi*p))
	}
	v, _ := strconv.ParseFloat(strconv.FormatFloat(base*f, 'g', 6, 64), 64) // six significant digits
	return v
}

// noise is a deterministic value in [0, 1) for (seed, step).
func noise(seed uint64, step int64) float64 {
	x := seed ^ uint64(step)*0x9e3779b97f4a7c15
	x ^= x >> 30
	x *= 0xbf58476d1ce4e5b9
	x ^= x >> 27
	x *= 0x94d049bb133111eb
	x ^= x >> 31
	return float64(x>>11) / (1 << 53)
}

func round(v float64, digits int) float64 {
	p := math.Pow(10, float64(digits))
	return math.Round(v*p) / p
}

// gpuMemory is a plausible peak for the spec (constant through the run).
func gpuMemory(spec *contract.JobSpec) int64 {
	base := int64(45_000_000_000) // NF4 Qwen3-Next: weights ≈ 42 GB
	if spec.BaseModel.Quantization == contract.QuantizationBF16 {
		base = 125_000_000_000
	}
	h := spec.Hyperparameters
	return base + int64(h.BatchSize)*int64(h.MaxSeqLength)*400_000 + int64(h.LoRARank)*30_000_000
}

func stepFailure(code contract.FailureCode, h contract.Hyperparameters, step int64) error {
	switch code {
	case "", contract.CodeOOM:
		return failure(contract.CodeOOM, oomAdvice(h), "The GPU ran out of memory during training (Tried to allocate 2.00 GiB) at step %d.", step)
	case contract.CodeNaNLoss:
		return failure(code, nanAdvice(h), "The training loss became nan at step %d; the run diverged.", step)
	}
	return failure(code, "", "The worker failed at step %d (%s injected by the emulator).", step, code)
}

// oomAdvice mirrors gpu-image's errors.oom_advice.
func oomAdvice(h contract.Hyperparameters) string {
	var opts []string
	if h.BatchSize > 1 {
		nb := h.BatchSize / 2
		ga := int(math.Ceil(float64(h.GradientAccumulation) * float64(h.BatchSize) / float64(nb)))
		opts = append(opts, fmt.Sprintf("lower batch_size from %d to %d (and raise gradient_accumulation from %d to %d to keep the same effective batch)", h.BatchSize, nb, h.GradientAccumulation, ga))
	}
	if h.LoRARank > 4 {
		opts = append(opts, fmt.Sprintf("lora_rank from %d to %d", h.LoRARank, max(4, h.LoRARank/2)))
	}
	if h.MaxSeqLength > 256 {
		opts = append(opts, fmt.Sprintf("max_seq_length from %d to %d", h.MaxSeqLength, max(256, h.MaxSeqLength/2)))
	}
	if len(opts) == 0 {
		return "The run does not fit this GPU even at the smallest settings: choose a GPU with more memory."
	}
	if !strings.HasPrefix(opts[0], "lower") {
		opts[0] = "lower " + opts[0]
	}
	text := strings.Join(opts, ", or ")
	return strings.ToUpper(text[:1]) + text[1:] + "."
}

// nanAdvice mirrors gpu-image's errors.nan_advice.
func nanAdvice(h contract.Hyperparameters) string {
	if h.LearningRate <= 1e-5*1.0001 {
		return "learning_rate is already at its minimum: check the dataset for corrupt or extremely long examples, or lower lora_alpha."
	}
	lr := math.Max(1e-5, h.LearningRate/4)
	lr, _ = strconv.ParseFloat(strconv.FormatFloat(lr, 'g', 2, 64), 64)
	return fmt.Sprintf("Lower learning_rate from %s to %s and retry.", strconv.FormatFloat(h.LearningRate, 'g', 6, 64), strconv.FormatFloat(lr, 'g', 6, 64))
}

// shapeFor returns the adapter shape of a base model: Config.Models, then
// the built-in table, then a generic dense decoder; tiny unless
// Config.FullSizeAdapters.
func (e *Emulator) shapeFor(modelID string) ModelShape {
	s, ok := e.cfg.Models[modelID]
	if !ok {
		s, ok = defaultShapes[modelID]
	}
	if !ok {
		e.log.Warn("unknown base model: using a generic dense shape", "model", modelID)
		s = genericShape
	}
	if e.cfg.FullSizeAdapters {
		return s
	}
	return s.Tiny()
}
