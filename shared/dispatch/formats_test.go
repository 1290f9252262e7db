package dispatch_test

import (
	"context"
	"strings"
	"testing"

	"github.com/brightrun/brightrun/shared/pipeline"
)

// A dataset uploaded as ShareGPT or Alpaca is trained on in its converted
// form: the spec names that file, its size and its digest, for the
// training dataset and for a second, validation dataset alike.
func TestTheSpecNamesTheConvertedFileOfADatasetInAnotherFormat(t *testing.T) {
	e := newEnv(t)
	ctx := context.Background()
	e.validationDataset(t, "ds_eval", pipeline.DatasetReady)
	for id, sha := range map[string]string{"ds_1": strings.Repeat("ef", 32), "ds_eval": strings.Repeat("12", 32)} {
		if _, err := pipeline.UpdateDataset(ctx, e.store, "alice", id, func(d *pipeline.Dataset) error {
			d.Format = pipeline.FormatShareGPT
			d.Converted = &pipeline.StoredFile{Key: pipeline.ConvertedKey(d.ObjectKey), SizeBytes: 9876, SHA256: sha}
			return nil
		}); err != nil {
			t.Fatal(err)
		}
	}
	spec := e.submittedSpec(t, e.jobWithValidation(t, &pipeline.JobValidation{DatasetID: "ds_eval"}))
	if d := spec.Dataset; d.SHA256 != strings.Repeat("ef", 32) || d.SizeBytes != 9876 || !strings.Contains(d.URL, "ds_1.messages.jsonl") {
		t.Errorf("spec dataset = %s %d %s, want ds_1's converted file (ds_1.messages.jsonl, 9876 bytes, efef…)", d.URL, d.SizeBytes, d.SHA256)
	}
	if v := spec.Validation.Dataset; v.SHA256 != strings.Repeat("12", 32) || v.SizeBytes != 9876 || !strings.Contains(v.URL, "ds_eval.messages.jsonl") {
		t.Errorf("spec validation dataset = %s %d %s, want ds_eval's converted file", v.URL, v.SizeBytes, v.SHA256)
	}
}
