// Package runpodemu is a RunPod Serverless emulator: an http.Handler that
// speaks RunPod's job API for one endpoint and runs a simulated GPU worker
// that follows the worker contract (testdata/contracts) exactly, so the
// control plane can be tested end to end — and the local stack can run —
// with no RunPod account and no GPU. It is an emulator, not RunPod: use it
// for tests and local runs only.
//
// # The job API
//
// Mount it on a server and point a runpod.Client at server URL + "/v2":
//
//	POST /v2/{endpoint}/run            {input, webhook?, policy?} → {id, status: IN_QUEUE}
//	GET  /v2/{endpoint}/status/{id}    {id, status, delayTime, executionTime, output, error, retries, workerId}
//	POST /v2/{endpoint}/cancel/{id}    {id, status: CANCELLED}
//	POST /v2/{endpoint}/retry/{id}     FAILED or TIMED_OUT only → {id, status: IN_QUEUE}
//	POST /v2/{endpoint}/purge-queue    {removed, status: "completed"}
//	GET  /v2/{endpoint}/health         {jobs: {completed, failed, inProgress, inQueue, retried}, workers: {idle, running}}
//
// with RunPod's documented semantics: "Authorization: Bearer <key>" (401
// otherwise); statuses IN_QUEUE → IN_PROGRESS → COMPLETED / FAILED /
// CANCELLED / TIMED_OUT; policy.executionTimeout (default 10 minutes, over
// 5 s, at most 7 days) counted from the start → TIMED_OUT; policy.ttl
// (default 24 h, 10 s to 7 days) counted from submission → the job is
// deleted whatever its state; results kept Retention (30 minutes) after
// the end, then 404; at most Config.Workers jobs run at once, the rest wait
// in order; the completion webhook (the /status body plus input and
// webhook) POSTed for COMPLETED and FAILED, tried up to 3 times 10 s apart
// until it gets a 200. A worker that dies sends the job back to the queue
// with retries + 1.
//
// Clock-driven rules read Config.Clock: with a ManualClock a test advances
// time past an executionTimeout, a ttl or the retention and the emulator
// applies the rule at its next sweep (every SweepInterval) or API call.
//
// # The simulated worker
//
// One goroutine per run, doing what gpu-image does, through the same
// contract: parse the job spec (invalid → failed spec_invalid when the
// callback target is readable, and FAILED); POST signed callbacks
// (Standard Webhooks, shared/contract) started → stage download → (ask
// for the dataset's URLs, GET it, check size and sha256: any mismatch is
// failed dataset_download; lines that are not chat JSON are
// dataset_invalid; then ask for the checkpoint to resume) → stage load
// (LoRA targets that match no module are model_load) → stage train →
// progress every progress_every_steps steps or progress_every_seconds
// seconds (falling loss 2.2·e^(−3·step/total) + 0.35 + deterministic
// noise seeded by the job id, learning rate with linear warmup then cosine
// decay, epoch, tokens/s, ETA), total steps ceil(examples / (batch_size ×
// gradient_accumulation)) × epochs at Config.StepsPerSecond, with
// checkpoints → stage save → stage upload (PUT adapter_config.json, peft's
// LoraConfig, and adapter_model.safetensors, lora_A [r, in] and lora_B
// [out, r] under peft's tensor names) → artifact ×2 → completed; the
// RunPod output is {status, job_id, attempt, final_loss, steps,
// artifacts}. A failure is a failed callback and the output {code,
// advice, job_id, attempt} with error "code: message", as the RunPod SDK
// makes of gpu-image's return value.
//
// URLs are asked for when needed, as gpu-image's urls.py does: a signed
// urls callback (purpose dataset, checkpoint_download, checkpoint,
// artifact) whose 200 body carries presigned URLs with their method and
// headers, sent as given. A server that answers 400, 404, 405 or 501 hands
// out none: the worker says so once, uses the job spec's URLs (dataset,
// artifacts, resume.urls) and stores no checkpoints. An upload whose URL
// is refused, or a download whose URL has expired (401, 403, or S3's 400
// ExpiredToken when the signing credentials expired), asks again with the
// request's retry (1, 2) and uses the fresh URL: three rounds, then failed
// upload (or dataset_download). Network errors, 429 and 5xx are retried on
// the same URL.
//
// Checkpoints are four files as gpu-image's checkpoint.py names them: the
// adapter (the final one's tensors, a usable partial adapter),
// training_state.safetensors (optimizer moments per trainable tensor and
// an RNG state) and trainer_state.json (format 1, the step, the position
// in the data order, the running loss figures and a fingerprint of the
// model, hyperparameters, data and split). One is written at each epoch's
// end and every checkpoint_every_seconds (default 600) of training time.
// Training time is emulated: a step takes 1/StepsPerSecond seconds, so the
// interval is ceil(checkpoint_every_seconds × StepsPerSecond) steps (a
// test that wants one every 4 steps at 1000 steps/s sets 0.004), the same
// steps however loaded the machine. The checkpoint is uploaded through
// URLs asked for with purpose checkpoint before training goes on (gpu-image
// uploads it in the background), then announced with a checkpoint
// callback listing each file's size and sha256. A checkpoint that cannot
// be stored never fails the job.
//
// Evaluation follows gpu-image too: the spec's validation share (or the
// default: none below 200 examples, else 10 %, at most max_examples) is
// held out and the rest trained, or up to max_examples of a second
// dataset are evaluated; the evaluation loss (a little above the training
// loss) goes with the progress of every every_steps-th step (default:
// about ten a run) and of the last, and into the completed metrics.
//
// At start the worker asks checkpoint_download: for the spec's resume
// checkpoint, or, with no resume in the spec (RunPod running the same
// attempt again after a crash), for the job's latest. It downloads the
// files, checks their sizes and sha256 and trainer_state.json's format and
// fingerprint, and continues at the step after the checkpoint's with its
// loss figures: progress resumes at step+1, and the completed callback
// has the steps, final and mean loss of an uninterrupted run, with
// resumed_from_step. A checkpoint that cannot be used (missing, corrupt,
// of other settings) means training from step 1, with resume_skipped
// saying why.
//
// The worker stops at its next step (so within one progress interval) on
// RunPod's stop signal (/cancel, executionTimeout, ttl: failed cancelled,
// as gpu-image reports the SDK's cancellation), on a callback answer
// {"action": "stop"} (failed cancelled), on HTTP 409 or 410 (superseded:
// no further callback) and past the spec's time_limit_seconds (failed
// timeout).
//
// Adapter shapes come from a table keyed by base model id (Qwen3-Next-80B:
// 48 layers, hidden 2048, three linear-attention layers then one
// full-attention layer; Qwen3-30B-A3B and Qwen3-8B approximate; anything
// else a generic dense decoder). By default every model gets its tiny shape
// (gpu-image's tiny Qwen3-Next checkpoint: 4 layers, hidden 64), which
// keeps an adapter near 200 KB; Config.FullSizeAdapters writes the real
// sizes.
//
// # Failure injection
//
// Config.Faults returns a Fault per submitted job (FaultsByJobID matches the
// spec's job_id): FailAtStep with FailCode (default oom), NaNAtStep,
// CrashAtStep with Crashes (the worker dies, RunPod re-runs the same
// attempt on a new worker id, retries grows; the re-run resumes from the
// job's last checkpoint before the crash, or from step 1 without one),
// HangAtStep (a silent worker until executionTimeout), FailUpload (every
// PUT answers 403), ExpireURLs (the spec's URLs and the first URL answered
// for each upload have expired: the emulator answers 403 "Request has
// expired" for S3, and the worker asks again), DropWebhook, StartDelay (a
// slow start, seen in delayTime). InjectAPIErrors / RateLimit make the
// next K API calls answer 429 (or any status).
//
// Not emulated: /runsync, /stream, /status?ttl=, RunPod's own rate limits,
// lowPriority scaling, progress_update in /status.
package runpodemu
