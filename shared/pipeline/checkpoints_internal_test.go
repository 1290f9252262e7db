package pipeline

import (
	"fmt"
	"testing"

	"github.com/brightrun/brightrun/shared/contract"
)

func TestAJobKeepsItsLastCheckpointsAndItsLastEpochEnd(t *testing.T) {
	ck := func(step int64, attempt int, reason string) Checkpoint {
		return Checkpoint{ID: CheckpointID(step, attempt), Step: step, Attempt: attempt, Reason: reason}
	}
	iv, ee := contract.CheckpointInterval, contract.CheckpointEpochEnd
	tests := []struct {
		name       string
		adds       []Checkpoint
		wantKept   string
		wantPruned string
	}{
		{"the last three are kept", []Checkpoint{ck(10, 1, iv), ck(20, 1, iv), ck(30, 1, iv), ck(40, 1, iv)}, "[ck_20_1 ck_30_1 ck_40_1]", "[ck_10_1]"},
		{"the last epoch end is kept beside them", []Checkpoint{ck(10, 1, ee), ck(20, 1, iv), ck(30, 1, iv), ck(40, 1, iv), ck(50, 1, iv)}, "[ck_10_1 ck_30_1 ck_40_1 ck_50_1]", "[ck_20_1]"},
		{"only the last epoch end is kept", []Checkpoint{ck(10, 1, ee), ck(20, 1, ee), ck(30, 1, iv), ck(40, 1, iv), ck(50, 1, iv)}, "[ck_20_1 ck_30_1 ck_40_1 ck_50_1]", "[ck_10_1]"},
		{"a late lower step is pruned at once", []Checkpoint{ck(20, 1, iv), ck(30, 1, iv), ck(40, 1, iv), ck(10, 1, iv)}, "[ck_20_1 ck_30_1 ck_40_1]", "[ck_10_1]"},
		{"a repeat replaces itself", []Checkpoint{ck(10, 1, iv), ck(10, 1, iv)}, "[ck_10_1]", "[]"},
		{"of one step the later attempt is the latest", []Checkpoint{ck(10, 2, iv), ck(10, 1, iv)}, "[ck_10_1 ck_10_2]", "[]"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			j := &Job{}
			var pruned []string
			for _, c := range tt.adds {
				for _, p := range j.addCheckpoint(c) {
					pruned = append(pruned, p.ID)
				}
			}
			var kept []string
			for _, c := range j.Checkpoints {
				kept = append(kept, c.ID)
			}
			if fmt.Sprint(kept) != tt.wantKept || fmt.Sprint(pruned) != tt.wantPruned {
				t.Errorf("kept %v, pruned %v; want %s and %s", kept, pruned, tt.wantKept, tt.wantPruned)
			}
			if l := j.LatestCheckpoint(); l == nil || l.ID != j.Checkpoints[len(j.Checkpoints)-1].ID {
				t.Errorf("LatestCheckpoint = %+v, want the last kept", l)
			}
		})
	}
}
