package main

import (
	"context"
	"strings"
	"testing"
)

func TestTheCommandsPrintTheirFigures(t *testing.T) {
	tests := []struct {
		args []string
		want []string
	}{
		{[]string{"model"}, []string{"callback progress", "WCU", "index key changes"}},
		{[]string{"day", "-running", "200", "-created", "2000", "-owners", "20", "-window", "30s", "-top", "3"},
			[]string{"Simulated: 200 jobs running", "p50", "Busiest partitions"}},
		{[]string{"cost", "-running", "50"}, []string{"$0.625 per million write request units", "running jobs"}},
	}
	for _, tt := range tests {
		t.Run(strings.Join(tt.args, " "), func(t *testing.T) {
			var out strings.Builder
			if err := run(context.Background(), tt.args, &out); err != nil {
				t.Fatalf("run(%q) = %v", tt.args, err)
			}
			for _, w := range tt.want {
				if !strings.Contains(out.String(), w) {
					t.Errorf("run(%q) printed %q, want it to hold %q", tt.args, out.String(), w)
				}
			}
		})
	}
}

func TestBadArgumentsAreRefused(t *testing.T) {
	for _, args := range [][]string{nil, {"nope"}, {"cost", "-running", "0"}, {"day", "-owners", "0"}} {
		if err := run(context.Background(), args, &strings.Builder{}); err == nil {
			t.Errorf("run(%q) = nil, want an error", args)
		}
	}
}
