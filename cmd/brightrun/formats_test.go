package main

import (
	"bytes"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/brightrun/brightrun/shared/api"
	"github.com/brightrun/brightrun/shared/dataset"
	"github.com/brightrun/brightrun/shared/pipeline"
)

const (
	shareGPTFile = "../../testdata/datasets/sample.sharegpt.jsonl"
	alpacaFile   = "../../testdata/datasets/sample.alpaca.jsonl"
)

func TestValidateAFileInAnotherFormat(t *testing.T) {
	sharegpt := shareGPTFile
	tests := []struct {
		name     string
		args     []string
		wantCode int
		wantOut  []string
	}{
		{"a ShareGPT file is valid as sharegpt", []string{"validate", "--format", "sharegpt", sharegpt}, 0, []string{"valid", "40 valid"}},
		{"an Alpaca file is valid as alpaca", []string{"validate", "--format", "alpaca", alpacaFile}, 0, []string{"valid", "35 valid"}},
		{"a ShareGPT file read as messages has no messages", []string{"validate", sharegpt}, 1, []string{"INVALID", "missing_messages"}},
		{"a messages file read as ShareGPT has no conversations", []string{"validate", "--format", "sharegpt", sampleFile}, 1, []string{"INVALID", "sharegpt_missing_conversations"}},
		{"an Alpaca file read as ShareGPT is refused by line", []string{"validate", "--format", "sharegpt", alpacaFile}, 1, []string{"line 1", "sharegpt_missing_conversations"}},
		{"an unknown format is a usage error", []string{"validate", "--format", "openai", sampleFile}, 2, nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := cli(t, tt.args...)
			if r.code != tt.wantCode {
				t.Fatalf("exit %d, want %d\n%s", r.code, tt.wantCode, r)
			}
			for _, want := range tt.wantOut {
				if !strings.Contains(r.stdout, want) {
					t.Errorf("stdout lacks %q\n%s", want, r)
				}
			}
		})
	}

	t.Run("a ShareGPT file counts and converts as its messages file", func(t *testing.T) {
		dir := t.TempDir()
		var got, want dataset.Report
		r := cli(t, "validate", "--format", "sharegpt", sharegpt, "--json", "--converted", filepath.Join(dir, "got.jsonl"))
		decode(t, r, &got)
		r = cli(t, "validate", sampleFile, "--json", "--converted", filepath.Join(dir, "want.jsonl"))
		decode(t, r, &want)
		if got.Tokens != want.Tokens || got.Examples != want.Examples {
			t.Errorf("sharegpt counts %d examples, %+v; the messages file %d, %+v", got.Examples, got.Tokens, want.Examples, want.Tokens)
		}
		g, err1 := os.ReadFile(filepath.Join(dir, "got.jsonl"))
		w, err2 := os.ReadFile(filepath.Join(dir, "want.jsonl"))
		if err1 != nil || err2 != nil || len(g) == 0 || !bytes.Equal(g, w) {
			t.Errorf("--converted files differ (%v, %v): %d and %d bytes", err1, err2, len(g), len(w))
		}
	})
}

func TestUploadAFileInAnotherFormat(t *testing.T) {
	var local dataset.Report
	decode(t, cli(t, "validate", "--format", "alpaca", alpacaFile, "--json"), &local)

	r := cli(t, "datasets", "upload", "--format", "alpaca", alpacaFile, "--name", "alpaca chats")
	if r.code != 0 || !strings.Contains(r.stdout, "ready") || !strings.Contains(r.stdout, "35 valid") || !strings.Contains(r.stdout, "alpaca") {
		t.Fatalf("upload --format alpaca: want exit 0 and a ready summary naming the format\n%s", r)
	}
	id := strings.Fields(r.stdout)[0]
	var d api.DatasetView
	decode(t, cli(t, "datasets", "show", id, "--json"), &d)
	if d.Format != pipeline.FormatAlpaca || d.Status != pipeline.DatasetReady || d.Validation == nil ||
		d.Validation.Tokens.Total != local.Tokens.Total || d.Validation.Tokens.Trained != local.Tokens.Trained {
		t.Errorf("show --json = %+v, want alpaca, ready, and the local counts %+v", d, local.Tokens)
	}

	// The emulated worker downloads the dataset through the URLs it asks
	// for, checks its size and sha256 against the spec and reads every line
	// as messages: it trains only on the converted file.
	t.Run("a job trains on the converted file", func(t *testing.T) {
		var job api.JobView
		decode(t, cli(t, "jobs", "create", id, "--name", "alpaca job", "--json"), &job)
		r := cli(t, "jobs", "watch", job.ID, "--interval", "500ms")
		if r.code != 0 || !strings.Contains(r.stdout, "completed") {
			t.Fatalf("watch: want exit 0 and completed\n%s", r)
		}
	})
	t.Run("an upload without the format is invalid", func(t *testing.T) {
		r := cli(t, "datasets", "upload", alpacaFile, "--name", "alpaca as messages")
		if r.code != 1 || !strings.Contains(r.stdout, "missing_messages") {
			t.Errorf("upload without --format: want exit 1 and missing_messages\n%s", r)
		}
	})
	if r := cli(t, "datasets", "delete", id); r.code != 0 {
		t.Errorf("delete\n%s", r)
	}
}
