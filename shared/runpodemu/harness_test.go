package runpodemu_test

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/brightrun/brightrun/shared/contract"
	"github.com/brightrun/brightrun/shared/runpod"
	"github.com/brightrun/brightrun/shared/runpodemu"
)

var quiet = slog.New(slog.DiscardHandler)

const masterSecret = "test-master-secret"

// dataset is a small valid chat JSONL file.
var dataset = func() []byte {
	var b strings.Builder
	for i := 0; i < 20; i++ {
		fmt.Fprintf(&b, `{"messages":[{"role":"user","content":"question %d"},{"role":"assistant","content":"answer %d"}]}`+"\n", i, i)
	}
	return []byte(b.String())
}()

// refusal is an S3 error answer.
type refusal struct {
	status int
	body   string
}

// s3Error is S3's XML error body with code.
func s3Error(code, message string) string {
	return `<?xml version="1.0" encoding="UTF-8"?><Error><Code>` + code + `</Code><Message>` + message + `</Message></Error>`
}

// received is one verified callback.
type received struct {
	cb      *contract.Callback
	payload contract.Payload
	id      string
}

// controlPlane fakes the server side: it serves the dataset, verifies and
// records callbacks, answers urls callbacks with URLs of its own object
// store (as shared/pipeline's AnswerURLs does), stores uploads and records
// completion webhooks.
type controlPlane struct {
	t     *testing.T
	srv   *httptest.Server
	clock runpodemu.Clock

	mu        sync.Mutex
	data      []byte // served at /dataset
	callbacks []received
	uploads   map[string][]byte
	uploadHdr map[string]http.Header
	objects   map[string][]byte // checkpoint files, by "job_id/step-N/name"
	puts      int               // PUTs received, artifacts and checkpoint files
	webhooks  []map[string]any
	problems  []string
	// answer decides the reply to a verified callback; status 0 (or a nil
	// answer) gives the default: urls answered, others 200 {}.
	answer func(r received, n int) (int, string)
	// urlsStatus, when set, answers every urls callback with it (400: a
	// server that hands out no URLs).
	urlsStatus int
	// refuseDataset answers the next GETs of the dataset, one each.
	refuseDataset []refusal
	// webhookStatus decides the reply to the n-th webhook try (default 200).
	webhookStatus func(n int) int
}

func newControlPlane(t *testing.T, clock runpodemu.Clock) *controlPlane {
	cp := &controlPlane{t: t, clock: clock, data: dataset, uploads: map[string][]byte{}, uploadHdr: map[string]http.Header{}, objects: map[string][]byte{}}
	mux := http.NewServeMux()
	mux.HandleFunc("GET /dataset", func(w http.ResponseWriter, r *http.Request) {
		cp.mu.Lock()
		d := cp.data
		var refuse *refusal
		if len(cp.refuseDataset) > 0 {
			refuse, cp.refuseDataset = &cp.refuseDataset[0], cp.refuseDataset[1:]
		}
		cp.mu.Unlock()
		if refuse != nil {
			w.Header().Set("Content-Type", "application/xml")
			w.WriteHeader(refuse.status)
			io.WriteString(w, refuse.body)
			return
		}
		w.Write(d)
	})
	mux.HandleFunc("POST /callbacks", cp.handleCallback)
	mux.HandleFunc("PUT /artifacts/{name}", func(w http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(r.Body)
		cp.mu.Lock()
		cp.uploads[r.PathValue("name")] = b
		cp.uploadHdr[r.PathValue("name")] = r.Header.Clone()
		cp.puts++
		cp.mu.Unlock()
	})
	mux.HandleFunc("PUT /objects/{job}/{step}/{name}", func(w http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(r.Body)
		cp.mu.Lock()
		cp.objects[r.PathValue("job")+"/"+r.PathValue("step")+"/"+r.PathValue("name")] = b
		cp.puts++
		cp.mu.Unlock()
	})
	mux.HandleFunc("GET /objects/{job}/{step}/{name}", func(w http.ResponseWriter, r *http.Request) {
		cp.mu.Lock()
		b, ok := cp.objects[r.PathValue("job")+"/"+r.PathValue("step")+"/"+r.PathValue("name")]
		cp.mu.Unlock()
		if !ok {
			http.Error(w, "NoSuchKey", http.StatusNotFound)
			return
		}
		w.Write(b)
	})
	mux.HandleFunc("POST /webhook", func(w http.ResponseWriter, r *http.Request) {
		var body map[string]any
		_ = json.NewDecoder(r.Body).Decode(&body)
		cp.mu.Lock()
		cp.webhooks = append(cp.webhooks, body)
		n := len(cp.webhooks)
		status := http.StatusOK
		if cp.webhookStatus != nil {
			status = cp.webhookStatus(n)
		}
		cp.mu.Unlock()
		w.WriteHeader(status)
	})
	cp.srv = httptest.NewServer(mux)
	t.Cleanup(cp.srv.Close)
	return cp
}

func (cp *controlPlane) handleCallback(w http.ResponseWriter, r *http.Request) {
	body, _ := io.ReadAll(r.Body)
	cb, p, err := contract.ParseCallback(body)
	if err != nil {
		cp.problem("invalid callback: %v", err)
		w.WriteHeader(http.StatusBadRequest)
		return
	}
	key := contract.DeriveSecret([]byte(masterSecret), cb.JobID)
	if err := contract.Verify(key, r.Header, body, cp.clock.Now()); err != nil {
		cp.problem("callback %s seq %d: %v", cb.Type, cb.Seq, err)
		w.WriteHeader(http.StatusUnauthorized)
		return
	}
	id := r.Header.Get(contract.HeaderID)
	if jobID, attempt, seq, err := contract.ParseWebhookID(id); err != nil || jobID != cb.JobID || attempt != cb.Attempt || seq != cb.Seq {
		cp.problem("webhook-id %q does not match the body: %v", id, err)
	}
	rec := received{cb: cb, payload: p, id: id}
	cp.mu.Lock()
	cp.callbacks = append(cp.callbacks, rec)
	n := len(cp.callbacks)
	answer := cp.answer
	cp.mu.Unlock()
	status, reply := 0, ""
	if answer != nil {
		status, reply = answer(rec, n)
	}
	if status == 0 {
		status, reply = cp.defaultAnswer(rec)
	}
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	io.WriteString(w, reply)
}

// defaultAnswer answers urls callbacks with presigned-like URLs of the
// control plane (the dataset, checkpoint objects by step, the artifacts)
// and every other callback with 200 {}.
func (cp *controlPlane) defaultAnswer(r received) (int, string) {
	req, ok := r.payload.(*contract.URLRequest)
	if !ok {
		return http.StatusOK, `{}`
	}
	cp.mu.Lock()
	defer cp.mu.Unlock()
	if cp.urlsStatus != 0 {
		return cp.urlsStatus, `{"error":{"code":"invalid","message":"unknown callback type urls"}}`
	}
	ans := contract.URLAnswer{Action: "continue", URLs: map[string]contract.PresignedURL{}, ExpiresAt: cp.clock.Now().Add(15 * time.Minute)}
	put := func(name, url string, size int64) {
		ans.URLs[name] = contract.PresignedURL{URL: url, Method: "PUT", Headers: map[string]string{"Content-Length": fmt.Sprint(size)}}
	}
	switch req.Purpose {
	case contract.PurposeDataset:
		for _, f := range req.Files {
			ans.URLs[f.Name] = contract.PresignedURL{URL: cp.srv.URL + "/dataset", Method: "GET"}
		}
	case contract.PurposeCheckpoint:
		for _, f := range req.Files {
			put(f.Name, fmt.Sprintf("%s/objects/%s/step-%d/%s", cp.srv.URL, r.cb.JobID, req.Step, f.Name), f.SizeBytes)
		}
	case contract.PurposeArtifact:
		for _, f := range req.Files {
			put(f.Name, cp.srv.URL+"/artifacts/"+f.Name, f.SizeBytes)
		}
	case contract.PurposeCheckpointDownload: // the job's checkpoint of the step asked for, or its latest
		var found *contract.Checkpoint
		for i := len(cp.callbacks) - 1; i >= 0 && found == nil; i-- {
			if c, ok := cp.callbacks[i].payload.(*contract.Checkpoint); ok && cp.callbacks[i].cb.JobID == r.cb.JobID && (req.Step == 0 || c.Step == req.Step) {
				found = c
			}
		}
		if found != nil {
			ans.Checkpoint = &contract.CheckpointManifest{Step: found.Step, CheckpointID: fmt.Sprintf("ck_%d_1", found.Step), Attempt: 1, Files: found.Files}
			for _, f := range found.Files {
				ans.URLs[f.Name] = contract.PresignedURL{URL: fmt.Sprintf("%s/objects/%s/step-%d/%s", cp.srv.URL, r.cb.JobID, found.Step, f.Name), Method: "GET"}
			}
		}
	}
	b, _ := json.Marshal(ans)
	return http.StatusOK, string(b)
}

func (cp *controlPlane) problem(format string, args ...any) {
	cp.mu.Lock()
	defer cp.mu.Unlock()
	cp.problems = append(cp.problems, fmt.Sprintf(format, args...))
}

func (cp *controlPlane) snapshot() ([]received, map[string][]byte, []map[string]any) {
	cp.mu.Lock()
	defer cp.mu.Unlock()
	ups := make(map[string][]byte, len(cp.uploads))
	for k, v := range cp.uploads {
		ups[k] = v
	}
	return append([]received(nil), cp.callbacks...), ups, append([]map[string]any(nil), cp.webhooks...)
}

func (cp *controlPlane) checkNoProblems(t *testing.T) {
	t.Helper()
	cp.mu.Lock()
	defer cp.mu.Unlock()
	for _, p := range cp.problems {
		t.Errorf("control plane: %s", p)
	}
}

// ofType returns the callbacks of one type.
func ofType(cbs []received, typ contract.CallbackType) []received {
	var out []received
	for _, c := range cbs {
		if c.cb.Type == typ {
			out = append(out, c)
		}
	}
	return out
}

// spec returns a valid job spec whose URLs point at the control plane:
// 20 examples, batch 2 × accumulation 1, 2 epochs → 20 steps.
func (cp *controlPlane) spec(jobID string) contract.JobSpec {
	sum := sha256.Sum256(dataset)
	return contract.JobSpec{
		Version: 1,
		JobID:   jobID,
		Attempt: 1,
		BaseModel: contract.BaseModel{
			ID:           "Qwen/Qwen3-Next-80B-A3B-Instruct",
			VolumePath:   "/runpod-volume/models/Qwen/Qwen3-Next-80B-A3B-Instruct-bnb-nf4",
			Quantization: contract.QuantizationNF4,
			ChatRule:     contract.ChatRuleChatMLNoThink,
			LoRATargets: []string{"q_proj", "k_proj", "v_proj", "o_proj", "in_proj_qkvz", "in_proj_ba", "out_proj",
				"shared_expert.gate_proj", "shared_expert.up_proj", "shared_expert.down_proj"},
		},
		Dataset: contract.Dataset{
			URL: cp.srv.URL + "/dataset", SHA256: hex.EncodeToString(sum[:]), SizeBytes: int64(len(dataset)),
			Format: contract.DatasetFormatChatJSONL, Examples: 20, TokensTotal: 4000, TokensTrained: 1500,
		},
		Hyperparameters: contract.Hyperparameters{
			LearningRate: 2e-4, BatchSize: 2, GradientAccumulation: 1, Epochs: 2,
			LoRARank: 8, LoRAAlpha: 16, LoRADropout: 0.05, MaxSeqLength: 2048, WarmupRatio: 0.1,
		},
		Callback: contract.CallbackTarget{
			URL:                cp.srv.URL + "/callbacks",
			Secret:             contract.FormatSecret(contract.DeriveSecret([]byte(masterSecret), jobID)),
			ProgressEverySteps: 5, ProgressEverySeconds: 30,
		},
		Artifacts: contract.Artifacts{
			AdapterConfig: contract.Upload{URL: cp.srv.URL + "/artifacts/adapter_config.json", Method: "PUT", Headers: map[string]string{"Content-Type": "application/json"}},
			AdapterModel:  contract.Upload{URL: cp.srv.URL + "/artifacts/adapter_model.safetensors", Method: "PUT"},
		},
		TimeLimitSeconds: 3600,
	}
}

// env is an emulator behind a server, a client for it and a control plane.
type env struct {
	emu    *runpodemu.Emulator
	url    string // the emulator's server
	client *runpod.Client
	cp     *controlPlane
	clock  runpodemu.Clock
}

// fast is the base config of the tests: quick steps and retries.
func fast() runpodemu.Config {
	return runpodemu.Config{
		APIKey:               "emu-key",
		EndpointID:           "ep",
		Logger:               quiet,
		StepsPerSecond:       1000,
		CallbackRetryDelay:   5 * time.Millisecond,
		WebhookRetryInterval: 20 * time.Millisecond,
		SweepInterval:        5 * time.Millisecond,
	}
}

func newEnv(t *testing.T, cfg runpodemu.Config) *env {
	t.Helper()
	if cfg.Clock == nil {
		cfg.Clock = realClock{}
	}
	emu, err := runpodemu.New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	ts := httptest.NewServer(emu)
	t.Cleanup(func() { ts.Close(); emu.Close() })
	c, err := runpod.New(ts.URL+"/v2", "ep", "emu-key", runpod.WithLogger(quiet),
		runpod.WithRetryPolicy(runpod.RetryPolicy{BaseDelay: 2 * time.Millisecond, MaxDelay: 10 * time.Millisecond}))
	if err != nil {
		t.Fatal(err)
	}
	return &env{emu: emu, url: ts.URL, client: c, cp: newControlPlane(t, cfg.Clock), clock: cfg.Clock}
}

type realClock struct{}

func (realClock) Now() time.Time { return time.Now() }

// policy is a valid training policy for the tests.
var policy = runpod.Policy{ExecutionTimeout: time.Hour, TTL: 2 * time.Hour}

func (e *env) submit(t *testing.T, spec contract.JobSpec, webhook bool) string {
	t.Helper()
	req := runpod.RunRequest{Input: spec, Policy: policy}
	if webhook {
		req.Webhook = e.cp.srv.URL + "/webhook"
	}
	js, err := e.client.Run(context.Background(), req)
	if err != nil {
		t.Fatalf("Run = %v", err)
	}
	return js.ID
}

// waitStatus polls /status until cond holds (5 s at most).
func (e *env) waitStatus(t *testing.T, id string, cond func(runpod.JobStatus) bool) runpod.JobStatus {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for {
		js, err := e.client.Status(context.Background(), id)
		if err == nil && cond(js) {
			return js
		}
		if time.Now().After(deadline) {
			t.Fatalf("job %s: condition not met in 5 s; last status %+v, %v", id, js, err)
		}
		time.Sleep(3 * time.Millisecond)
	}
}

func is(s runpod.Status) func(runpod.JobStatus) bool {
	return func(js runpod.JobStatus) bool { return js.Status == s }
}

// waitFor polls f until it is true (5 s at most).
func waitFor(t *testing.T, what string, f func() bool) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for !f() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(3 * time.Millisecond)
	}
}

func notFound(err error) bool { return errors.Is(err, runpod.ErrNotFound) }
