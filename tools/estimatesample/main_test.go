package main

import (
	"bytes"
	"strings"
	"testing"
)

func TestItPrintsTheSampleOnEveryGPU(t *testing.T) {
	var out bytes.Buffer
	if err := run([]string{"-file", "../../testdata/datasets/sample.jsonl"}, &out); err != nil {
		t.Fatal(err)
	}
	got := out.String()
	// Qwen3-Next needs the 3 GiB expert stack on top of ≈ 45 GiB: it fits
	// the 80 and 141 GB cards only.
	for _, want := range []string{"40 examples", "a100-80gb    nf4", "h100-80gb    nf4", "h200-141gb    nf4", "l40s-48gb", "does not fit", "cheapest a100-80gb"} {
		if !strings.Contains(got, want) {
			t.Errorf("run() printed\n%s\nwant it to contain %q", got, want)
		}
	}
}

func TestItHoldsOutTheShareItIsGiven(t *testing.T) {
	var out bytes.Buffer
	if err := run([]string{"-file", "../../testdata/datasets/sample.jsonl", "-split", "0.25"}, &out); err != nil {
		t.Fatal(err)
	}
	if want := "evaluation: 10 examples held out (split 0.25,"; !strings.Contains(out.String(), want) {
		t.Errorf("run(-split 0.25) printed\n%s\nwant it to contain %q", out.String(), want)
	}
	out.Reset()
	if err := run([]string{"-file", "../../testdata/datasets/sample.jsonl"}, &out); err != nil {
		t.Fatal(err)
	}
	if want := "evaluation: none"; !strings.Contains(out.String(), want) {
		t.Errorf("run() of 40 examples printed\n%s\nwant it to contain %q", out.String(), want)
	}
}
