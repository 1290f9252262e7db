package contract_test

import (
	"encoding/json"
	"errors"
	"strings"
	"testing"

	"github.com/brightrun/brightrun/shared/contract"
)

func TestTheCheckpointAndURLsFixturesDecodeTheirValues(t *testing.T) {
	_, p, err := contract.ParseCallback(readFixture(t, "callback.checkpoint.json"))
	if err != nil {
		t.Fatal(err)
	}
	ck := p.(*contract.Checkpoint)
	if ck.Step != 300 || !ck.Partial || ck.Reason != contract.CheckpointInterval || len(ck.Files) != 4 || ck.Position.StepInEpoch != 300 || ck.EvalLoss == nil || *ck.EvalLoss != 1.1518 {
		t.Errorf("checkpoint = %+v, want the fixture's step 300, partial, interval, 4 files, eval loss 1.1518", ck)
	}
	_, p, err = contract.ParseCallback(readFixture(t, "callback.urls.json"))
	if err != nil {
		t.Fatal(err)
	}
	if u := p.(*contract.URLRequest); u.Purpose != contract.PurposeCheckpoint || u.Step != 300 || len(u.Files) != 4 || u.Files[1].SizeBytes != 92227400 {
		t.Errorf("urls = %+v, want the fixture's checkpoint request for step 300", u)
	}
}

func TestEveryURLAnswerFixtureDecodes(t *testing.T) {
	for _, name := range globFixtures(t, "urls_response.*.json") {
		if strings.HasSuffix(name, ".schema.json") {
			continue
		}
		t.Run(name+" decodes", func(t *testing.T) {
			var a contract.URLAnswer
			if err := json.Unmarshal(readFixture(t, name), &a); err != nil {
				t.Fatalf("Unmarshal(%s) = %v", name, err)
			}
			if a.Action != "continue" || len(a.URLs) == 0 || a.ExpiresAt.IsZero() {
				t.Errorf("answer = %+v, want continue with URLs and an expiry", a)
			}
			for file, u := range a.URLs {
				if !contract.ValidFileName(file) || (u.Method != "GET" && u.Method != "PUT") || !strings.HasPrefix(u.URL, "https://") {
					t.Errorf("urls[%s] = %+v", file, u)
				}
			}
			if strings.Contains(name, "checkpoint_download") && (a.Checkpoint == nil || a.Checkpoint.Step != 300 || len(a.Checkpoint.Files) != 4) {
				t.Errorf("checkpoint = %+v, want the manifest of step 300", a.Checkpoint)
			}
		})
	}
}

func TestTheResumeSpecCarriesItsCheckpointAndValidation(t *testing.T) {
	s, err := contract.ParseJobSpec(readFixture(t, "job_spec.resume.json"))
	if err != nil {
		t.Fatal(err)
	}
	if s.Resume == nil || s.Resume.Step != 300 || len(s.Resume.Files) != 4 || s.CheckpointEverySeconds == nil || *s.CheckpointEverySeconds != 600 {
		t.Errorf("resume = %+v, checkpoint every %v, want step 300 with 4 files every 600 s", s.Resume, s.CheckpointEverySeconds)
	}
	if v := s.Validation; v == nil || v.Split == nil || *v.Split != 0.05 || v.EverySteps == nil || *v.EverySteps != 225 {
		t.Errorf("validation = %+v, want split 0.05 every 225 steps", v)
	}
	s, err = contract.ParseJobSpec(readFixture(t, "job_spec.validation_dataset.json"))
	if err != nil {
		t.Fatal(err)
	}
	if v := s.Validation; v == nil || v.Dataset == nil || v.Dataset.SizeBytes != 812344 || v.Split != nil {
		t.Errorf("validation = %+v, want a second dataset of 812344 bytes", v)
	}
}

func TestInvalidOptionalSpecFieldsAreRefusedWithTheField(t *testing.T) {
	tests := []struct {
		name   string
		mutate func(m map[string]any)
		field  string
	}{
		{"a zero checkpoint interval is refused", func(m map[string]any) { m["checkpoint_every_seconds"] = 0 }, "checkpoint_every_seconds"},
		{"resume at step 0 is refused", func(m map[string]any) { m["resume"] = map[string]any{"step": 0} }, "resume.step"},
		{"resume without a step is refused", func(m map[string]any) { m["resume"] = map[string]any{} }, "resume.step"},
		{"a resume file without a hash is refused", func(m map[string]any) {
			m["resume"] = map[string]any{"step": 3, "files": []any{map[string]any{"name": "a.json", "size_bytes": 1, "sha256": "x"}}}
		}, "resume.files[0].sha256"},
		{"a split above one half is refused", func(m map[string]any) { m["validation"] = map[string]any{"split": 0.6} }, "validation.split"},
		{"a validation dataset without its hash is refused", func(m map[string]any) {
			m["validation"] = map[string]any{"dataset": map[string]any{"url": "https://x/y", "size_bytes": 1, "format": "chat-jsonl"}}
		}, "validation.dataset.sha256"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := contract.ParseJobSpec(mutate(t, tt.mutate))
			var ve *contract.ValidationError
			if !errors.As(err, &ve) || !ve.Has(tt.field) {
				t.Errorf("ParseJobSpec = %v, want a problem with %s", err, tt.field)
			}
		})
	}
}

func TestInvalidCheckpointAndURLsCallbacksAreRefusedWithTheField(t *testing.T) {
	const env = `{"version":1,"job_id":"j","attempt":1,"seq":3,"sent_at":"2026-11-25T12:00:00Z",`
	file := `{"name":"adapter_config.json","size_bytes":10,"sha256":"` + strings.Repeat("a", 64) + `"}`
	tests := []struct {
		name  string
		body  string
		field string
	}{
		{"a checkpoint without files is refused", env + `"type":"checkpoint","data":{"step":1,"total_steps":2,"epoch":0.5,"position":{"epoch":0,"step_in_epoch":1},"reason":"interval","partial":true,"train_seconds":1}}`, "data.files"},
		{"a checkpoint of an unknown reason is refused", env + `"type":"checkpoint","data":{"step":1,"total_steps":2,"epoch":0.5,"position":{"epoch":0,"step_in_epoch":1},"reason":"whim","partial":true,"files":[` + file + `],"train_seconds":1}}`, "data.reason"},
		{"a checkpoint at step 0 is refused", env + `"type":"checkpoint","data":{"step":0,"total_steps":2,"epoch":0.5,"position":{"epoch":0,"step_in_epoch":1},"reason":"interval","partial":true,"files":[` + file + `],"train_seconds":1}}`, "data.step"},
		{"urls without a purpose is refused", env + `"type":"urls","data":{}}`, "data.purpose"},
		{"urls of an unknown purpose is refused", env + `"type":"urls","data":{"purpose":"logs"}}`, "data.purpose"},
		{"urls for a file with a slash is refused", env + `"type":"urls","data":{"purpose":"artifact","files":[{"name":"../x"}]}}`, "data.files[0].name"},
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
