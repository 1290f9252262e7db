package contract_test

import (
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/brightrun/brightrun/shared/contract"
)

// fixtures is where the contracts live, relative to this package.
const fixtures = "../../testdata/contracts"

func readFixture(tb testing.TB, name string) []byte {
	tb.Helper()
	b, err := os.ReadFile(filepath.Join(fixtures, name))
	if err != nil {
		tb.Fatalf("read fixture: %v", err)
	}
	return b
}

func globFixtures(tb testing.TB, pattern string) []string {
	tb.Helper()
	paths, err := filepath.Glob(filepath.Join(fixtures, pattern))
	if err != nil {
		tb.Fatal(err)
	}
	var out []string
	for _, p := range paths {
		if !strings.Contains(p, ".schema.") {
			out = append(out, filepath.Base(p))
		}
	}
	if len(out) == 0 {
		tb.Fatalf("no fixtures match %s in %s", pattern, fixtures)
	}
	return out
}

func TestEveryJobSpecFixtureParsesAndValidates(t *testing.T) {
	for _, name := range globFixtures(t, "job_spec.*.json") {
		t.Run(name+" parses and validates", func(t *testing.T) {
			s, err := contract.ParseJobSpec(readFixture(t, name))
			if err != nil {
				t.Fatalf("ParseJobSpec(%s) = %v, want no error", name, err)
			}
			if err := s.Validate(); err != nil {
				t.Errorf("Validate() = %v, want nil", err)
			}
			if s.Artifacts.AdapterConfig.Method != "PUT" || s.Artifacts.AdapterModel.URL == "" {
				t.Errorf("artifacts not decoded: %+v", s.Artifacts)
			}
			// Encoding and decoding again gives the same spec.
			b, err := json.Marshal(s)
			if err != nil {
				t.Fatal(err)
			}
			again, err := contract.ParseJobSpec(b)
			if err != nil {
				t.Fatalf("ParseJobSpec(Marshal(spec)) = %v", err)
			}
			if !reflect.DeepEqual(s, again) {
				t.Errorf("round trip changed the spec:\n got %+v\nwant %+v", again, s)
			}
		})
	}
}

func TestTotalStepsFollowTheTrainer(t *testing.T) {
	s, err := contract.ParseJobSpec(readFixture(t, "job_spec.example.json"))
	if err != nil {
		t.Fatal(err)
	}
	// 12000 examples, batch 2 × accumulation 8 → 750 steps per epoch, 3 epochs:
	// the 2250 of callback.completed.json.
	if got := s.Hyperparameters.TotalSteps(s.Dataset.Examples); got != 2250 {
		t.Errorf("TotalSteps(12000) = %d, want 2250", got)
	}
	h := contract.Hyperparameters{BatchSize: 4, GradientAccumulation: 2, Epochs: 2}
	if got := h.TotalSteps(9); got != 4 { // ceil(9/8) = 2 per epoch
		t.Errorf("TotalSteps(9) = %d, want 4", got)
	}
}

// mutate decodes the example spec as a generic map, applies f, re-encodes.
func mutate(t *testing.T, f func(m map[string]any)) []byte {
	t.Helper()
	var m map[string]any
	if err := json.Unmarshal(readFixture(t, "job_spec.example.json"), &m); err != nil {
		t.Fatal(err)
	}
	f(m)
	b, err := json.Marshal(m)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func obj(m map[string]any, key string) map[string]any { return m[key].(map[string]any) }

func TestInvalidJobSpecsAreRefusedWithTheField(t *testing.T) {
	tests := []struct {
		name   string
		mutate func(m map[string]any)
		field  string
	}{
		{"a missing job id is refused", func(m map[string]any) { delete(m, "job_id") }, "job_id"},
		{"a null dataset is refused", func(m map[string]any) { m["dataset"] = nil }, "dataset"},
		{"a missing nested property is refused", func(m map[string]any) { delete(obj(m, "hyperparameters"), "warmup_ratio") }, "hyperparameters.warmup_ratio"},
		{"a missing artifact URL is refused", func(m map[string]any) { delete(obj(obj(m, "artifacts"), "adapter_config.json"), "url") }, "artifacts.adapter_config.json.url"},
		{"version 2 is refused", func(m map[string]any) { m["version"] = 2 }, "version"},
		{"attempt 0 is refused", func(m map[string]any) { m["attempt"] = 0 }, "attempt"},
		{"a fractional batch size is refused", func(m map[string]any) { obj(m, "hyperparameters")["batch_size"] = 1.5 }, "hyperparameters.batch_size"},
		{"a string learning rate is refused", func(m map[string]any) { obj(m, "hyperparameters")["learning_rate"] = "1e-4" }, "hyperparameters.learning_rate"},
		{"a learning rate above the bound is refused", func(m map[string]any) { obj(m, "hyperparameters")["learning_rate"] = 0.01 }, "hyperparameters.learning_rate"},
		{"rank 256 is refused", func(m map[string]any) { obj(m, "hyperparameters")["lora_rank"] = 256 }, "hyperparameters.lora_rank"},
		{"the router as a target is refused", func(m map[string]any) { obj(m, "base_model")["lora_targets"] = []string{"q_proj", "mlp.gate"} }, "base_model.lora_targets[1]"},
		{"a routed expert as a target is refused", func(m map[string]any) { obj(m, "base_model")["lora_targets"] = []string{"experts.0.up_proj"} }, "base_model.lora_targets[0]"},
		{"a repeated target is refused", func(m map[string]any) { obj(m, "base_model")["lora_targets"] = []string{"q_proj", "q_proj"} }, "base_model.lora_targets[1]"},
		{"no targets are refused", func(m map[string]any) { obj(m, "base_model")["lora_targets"] = []string{} }, "base_model.lora_targets"},
		{"an unknown quantization is refused", func(m map[string]any) { obj(m, "base_model")["quantization"] = "int8" }, "base_model.quantization"},
		{"a relative volume path is refused", func(m map[string]any) { obj(m, "base_model")["volume_path"] = "models/x" }, "base_model.volume_path"},
		{"an upper-case sha256 is refused", func(m map[string]any) { obj(m, "dataset")["sha256"] = strings.Repeat("A", 64) }, "dataset.sha256"},
		{"an ftp dataset URL is refused", func(m map[string]any) { obj(m, "dataset")["url"] = "ftp://x/y" }, "dataset.url"},
		{"a secret without its prefix is refused", func(m map[string]any) { obj(m, "callback")["secret"] = "o63m/voxxkyAs3VGCDLuLQZ+fzWcUPCLnhOsRQMrsS4=" }, "callback.secret"},
		{"a short secret is refused", func(m map[string]any) { obj(m, "callback")["secret"] = "whsec_c2hvcnQ=" }, "callback.secret"},
		{"progress every half second is refused", func(m map[string]any) { obj(m, "callback")["progress_every_seconds"] = 0.5 }, "callback.progress_every_seconds"},
		{"a POST artifact is refused", func(m map[string]any) { obj(obj(m, "artifacts"), "adapter_model.safetensors")["method"] = "POST" }, "artifacts.adapter_model.safetensors.method"},
		{"a time limit over 7 days is refused", func(m map[string]any) { m["time_limit_seconds"] = contract.MaxTimeLimitSeconds + 1 }, "time_limit_seconds"},
		{"a micro-batch budget below max_seq_length is refused", func(m map[string]any) { obj(m, "hyperparameters")["micro_batch_tokens"] = 2048 }, "hyperparameters.micro_batch_tokens"},
		{"a micro-batch budget over 65536 is refused", func(m map[string]any) { obj(m, "hyperparameters")["micro_batch_tokens"] = 65537 }, "hyperparameters.micro_batch_tokens"},
		{"a zero micro-batch budget is refused", func(m map[string]any) { obj(m, "hyperparameters")["micro_batch_tokens"] = 0 }, "hyperparameters.micro_batch_tokens"},
		{"a fractional micro-batch budget is refused", func(m map[string]any) { obj(m, "hyperparameters")["micro_batch_tokens"] = 8192.5 }, "hyperparameters.micro_batch_tokens"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := contract.ParseJobSpec(mutate(t, tt.mutate))
			var ve *contract.ValidationError
			if !errors.As(err, &ve) {
				t.Fatalf("ParseJobSpec = %v, want a *ValidationError", err)
			}
			if !errors.Is(err, contract.ErrInvalid) {
				t.Errorf("errors.Is(err, ErrInvalid) = false")
			}
			if !ve.Has(tt.field) {
				t.Errorf("ParseJobSpec = %v, want a problem with %s", err, tt.field)
			}
		})
	}
}

func TestMicroBatchTokensIsOptional(t *testing.T) {
	// Each fixture's budget is what the estimator plans for its preset on
	// an 80 GB card (example, qlora) or a 141 GB one (bf16), and at least
	// its max_seq_length.
	for name, want := range map[string]int{"job_spec.example.json": 8192, "job_spec.qlora.json": 8192, "job_spec.bf16.json": 16384} {
		s, err := contract.ParseJobSpec(readFixture(t, name))
		if err != nil {
			t.Fatal(err)
		}
		if b := s.Hyperparameters.MicroBatchTokens; b == nil || *b != want || *b < s.Hyperparameters.MaxSeqLength {
			t.Errorf("%s micro_batch_tokens = %v, want %d (≥ max_seq_length %d)", name, b, want, s.Hyperparameters.MaxSeqLength)
		}
	}
	s, err := contract.ParseJobSpec(mutate(t, func(m map[string]any) { delete(obj(m, "hyperparameters"), "micro_batch_tokens") }))
	if err != nil || s.Hyperparameters.MicroBatchTokens != nil {
		t.Fatalf("ParseJobSpec(no micro_batch_tokens) = %+v, %v; want it accepted, unset", s, err)
	}
	b, err := json.Marshal(s)
	if err != nil {
		t.Fatal(err)
	}
	if strings.Contains(string(b), "micro_batch_tokens") {
		t.Errorf("Marshal(spec without a budget) = %s, want no micro_batch_tokens", b)
	}
}

func TestTargetsMayNameLayerNumbers(t *testing.T) {
	b := mutate(t, func(m map[string]any) {
		obj(m, "base_model")["lora_targets"] = []string{"layers.0.self_attn.q_proj", "mlp.shared_expert.up_proj"}
	})
	if _, err := contract.ParseJobSpec(b); err != nil {
		t.Errorf("ParseJobSpec(targets with layer numbers) = %v, want nil", err)
	}
	b = mutate(t, func(m map[string]any) { obj(m, "base_model")["lora_targets"] = []string{"0.q_proj"} })
	if _, err := contract.ParseJobSpec(b); !errors.Is(err, contract.ErrInvalid) {
		t.Errorf("ParseJobSpec(target starting with a digit) = %v, want ErrInvalid", err)
	}
}

func TestEveryProblemIsReportedAtOnce(t *testing.T) {
	b := mutate(t, func(m map[string]any) {
		obj(m, "hyperparameters")["epochs"] = 0
		obj(m, "hyperparameters")["batch_size"] = 65
		obj(m, "dataset")["format"] = "csv"
	})
	_, err := contract.ParseJobSpec(b)
	var ve *contract.ValidationError
	if !errors.As(err, &ve) || len(ve.Problems) != 3 {
		t.Fatalf("ParseJobSpec = %v, want exactly 3 problems", err)
	}
	if !strings.Contains(err.Error(), "hyperparameters.epochs: must be between 1 and 20, got 0") {
		t.Errorf("error %q does not name the field and the reason", err)
	}
}

func TestNonObjectsAreRefused(t *testing.T) {
	for _, body := range []string{``, `[]`, `null`, `"spec"`, `{"version":`} {
		t.Run("the body "+strings.TrimSpace(body+" ")+" is refused", func(t *testing.T) {
			if _, err := contract.ParseJobSpec([]byte(body)); !errors.Is(err, contract.ErrInvalid) {
				t.Errorf("ParseJobSpec(%q) = %v, want ErrInvalid", body, err)
			}
			if _, _, err := contract.ParseCallback([]byte(body)); !errors.Is(err, contract.ErrInvalid) {
				t.Errorf("ParseCallback(%q) = %v, want ErrInvalid", body, err)
			}
		})
	}
}

func TestEveryCallbackFixtureParsesAndValidates(t *testing.T) {
	for _, name := range globFixtures(t, "callback.*.json") {
		t.Run(name+" parses and validates", func(t *testing.T) {
			cb, p, err := contract.ParseCallback(readFixture(t, name))
			if err != nil {
				t.Fatalf("ParseCallback(%s) = %v", name, err)
			}
			want := strings.TrimSuffix(strings.TrimPrefix(name, "callback."), ".json")
			if string(cb.Type) != want || p.CallbackType() != cb.Type {
				t.Errorf("type = %s / payload %T, want %s", cb.Type, p, want)
			}
			if err := cb.Validate(); err != nil {
				t.Errorf("Validate() = %v", err)
			}
			if cb.SentAt.IsZero() || cb.Seq < 1 {
				t.Errorf("envelope not decoded: %+v", cb)
			}
		})
	}
}

func TestCallbackPayloadsDecodeTheFixtureValues(t *testing.T) {
	_, p, err := contract.ParseCallback(readFixture(t, "callback.progress.json"))
	if err != nil {
		t.Fatal(err)
	}
	pr := p.(*contract.Progress)
	if pr.Step != 40 || pr.TotalSteps != 2250 || pr.Loss != 1.2841 || pr.GradNorm == nil || *pr.GradNorm != 0.4127 {
		t.Errorf("progress = %+v", pr)
	}
	_, p, err = contract.ParseCallback(readFixture(t, "callback.completed.json"))
	if err != nil {
		t.Fatal(err)
	}
	c := p.(*contract.Completed)
	if c.FinalLoss == nil || *c.FinalLoss != 0.8312 || c.Metrics.StageSeconds["train"] != 27880.6 || c.Metrics.LoRAModules != 480 {
		t.Errorf("completed = %+v", c)
	}
	if m := c.Metrics; m.MicroBatches != 4512 || m.PaddedTokensSeen != 31_449_516 || m.SecondsPerMicroBatch != 6.1792 || m.LoadSeconds != 412.7 || m.TokensPerSecond != 1058.19 {
		t.Errorf("completed metrics = %d micro-batches, %d padded tokens, %v s each, load %v s, %v tokens/s; want the fixture's 4512, 31449516, 6.1792, 412.7, 1058.19",
			m.MicroBatches, m.PaddedTokensSeen, m.SecondsPerMicroBatch, m.LoadSeconds, m.TokensPerSecond)
	}
	_, p, err = contract.ParseCallback(readFixture(t, "callback.failed.json"))
	if err != nil {
		t.Fatal(err)
	}
	if f := p.(*contract.Failed); f.Code != contract.CodeOOM || f.Stage != contract.StageTrain {
		t.Errorf("failed = %+v", f)
	}
}

func TestInvalidCallbacksAreRefusedWithTheField(t *testing.T) {
	tests := []struct {
		name  string
		body  string
		field string
	}{
		{"an unknown type is refused", `{"version":1,"type":"heartbeat","job_id":"j","attempt":1,"seq":1,"sent_at":"2026-11-25T12:00:00Z","data":{}}`, "type"},
		{"seq 0 is refused", `{"version":1,"type":"stage","job_id":"j","attempt":1,"seq":0,"sent_at":"2026-11-25T12:00:00Z","data":{"stage":"load"}}`, "seq"},
		{"a missing sent_at is refused", `{"version":1,"type":"stage","job_id":"j","attempt":1,"seq":1,"data":{"stage":"load"}}`, "sent_at"},
		{"a date without time is refused", `{"version":1,"type":"stage","job_id":"j","attempt":1,"seq":1,"sent_at":"2026-11-25","data":{"stage":"load"}}`, "sent_at"},
		{"an unknown stage is refused", `{"version":1,"type":"stage","job_id":"j","attempt":1,"seq":1,"sent_at":"2026-11-25T12:00:00Z","data":{"stage":"eval"}}`, "data.stage"},
		{"progress without loss is refused", `{"version":1,"type":"progress","job_id":"j","attempt":1,"seq":2,"sent_at":"2026-11-25T12:00:00Z","data":{"step":1,"total_steps":2,"epoch":0,"learning_rate":0,"tokens_per_second":0,"gpu_memory_bytes":0}}`, "data.loss"},
		{"progress at step 0 is refused", `{"version":1,"type":"progress","job_id":"j","attempt":1,"seq":2,"sent_at":"2026-11-25T12:00:00Z","data":{"step":0,"total_steps":2,"epoch":0,"loss":1,"learning_rate":0,"tokens_per_second":0,"gpu_memory_bytes":0}}`, "data.step"},
		{"an artifact of another name is refused", `{"version":1,"type":"artifact","job_id":"j","attempt":1,"seq":2,"sent_at":"2026-11-25T12:00:00Z","data":{"name":"model.bin","size_bytes":1,"sha256":"` + strings.Repeat("0", 64) + `"}}`, "data.name"},
		{"completed without final_loss is refused", `{"version":1,"type":"completed","job_id":"j","attempt":1,"seq":2,"sent_at":"2026-11-25T12:00:00Z","data":{"steps":1,"train_seconds":1,"tokens_trained":1,"metrics":{}}}`, "data.final_loss"},
		{"completed with negative micro-batches is refused", `{"version":1,"type":"completed","job_id":"j","attempt":1,"seq":2,"sent_at":"2026-11-25T12:00:00Z","data":{"final_loss":1,"steps":1,"train_seconds":1,"tokens_trained":1,"metrics":{"micro_batches":-1}}}`, "data.metrics.micro_batches"},
		{"completed with negative padded tokens is refused", `{"version":1,"type":"completed","job_id":"j","attempt":1,"seq":2,"sent_at":"2026-11-25T12:00:00Z","data":{"final_loss":1,"steps":1,"train_seconds":1,"tokens_trained":1,"metrics":{"padded_tokens_seen":-5}}}`, "data.metrics.padded_tokens_seen"},
		{"failed with an unknown code is refused", `{"version":1,"type":"failed","job_id":"j","attempt":1,"seq":2,"sent_at":"2026-11-25T12:00:00Z","data":{"code":"segfault","message":"m","advice":"a"}}`, "data.code"},
		{"failed without advice is refused", `{"version":1,"type":"failed","job_id":"j","attempt":1,"seq":2,"sent_at":"2026-11-25T12:00:00Z","data":{"code":"oom","message":"m","advice":""}}`, "data.advice"},
		{"data that is not an object is refused", `{"version":1,"type":"stage","job_id":"j","attempt":1,"seq":1,"sent_at":"2026-11-25T12:00:00Z","data":[]}`, "data"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, _, err := contract.ParseCallback([]byte(tt.body))
			var ve *contract.ValidationError
			if !errors.As(err, &ve) || !ve.Has(tt.field) {
				t.Errorf("ParseCallback = %v, want a problem with %s", err, tt.field)
			}
		})
	}
}

func TestACompletedCallbackMayHaveANullFinalLoss(t *testing.T) {
	body := `{"version":1,"type":"completed","job_id":"j","attempt":1,"seq":2,"sent_at":"2026-11-25T12:00:00+01:00","data":{"final_loss":null,"steps":0,"train_seconds":0,"tokens_trained":0,"metrics":{"initial_loss":null}}}`
	_, p, err := contract.ParseCallback([]byte(body))
	if err != nil {
		t.Fatalf("ParseCallback = %v", err)
	}
	if p.(*contract.Completed).FinalLoss != nil {
		t.Errorf("final_loss = %v, want nil", *p.(*contract.Completed).FinalLoss)
	}
}

func TestNewCallbackBuildsAValidEnvelope(t *testing.T) {
	at := time.Date(2026, 11, 25, 12, 0, 0, 123456789, time.FixedZone("x", 3600))
	cb, err := contract.NewCallback("job_1", 2, 7, at, &contract.StageChange{Stage: contract.StageTrain})
	if err != nil {
		t.Fatal(err)
	}
	b, err := json.Marshal(cb)
	if err != nil {
		t.Fatal(err)
	}
	if want := `{"version":1,"type":"stage","job_id":"job_1","attempt":2,"seq":7,"sent_at":"2026-11-25T11:00:00.123Z","data":{"stage":"train"}}`; string(b) != want {
		t.Errorf("Marshal(NewCallback) =\n%s\nwant\n%s", b, want)
	}
	if _, err := contract.NewCallback("job_1", 1, 1, at, &contract.Failed{Code: "nope"}); !errors.Is(err, contract.ErrInvalid) {
		t.Errorf("NewCallback(bad failed) = %v, want ErrInvalid", err)
	}
}
