package dataset

import (
	"bytes"
	"context"
	"testing"
)

func TestWriteSyntheticIsDeterministic(t *testing.T) {
	write := func(seed int64) []byte {
		var b bytes.Buffer
		if err := WriteSynthetic(&b, 100_000, seed, 5); err != nil {
			t.Fatalf("WriteSynthetic(seed %d): %v", seed, err)
		}
		return b.Bytes()
	}
	if !bytes.Equal(write(7), write(7)) {
		t.Errorf("WriteSynthetic(seed 7) twice gave different data")
	}
	if bytes.Equal(write(7), write(8)) {
		t.Errorf("WriteSynthetic(seed 7) and (seed 8) gave the same data")
	}
}

func TestWriteSyntheticWritesAValidDatasetOfTheSize(t *testing.T) {
	for _, size := range []int64{1, 10_000, 1 << 20} {
		var b bytes.Buffer
		if err := WriteSynthetic(&b, size, 1, 0); err != nil {
			t.Fatalf("WriteSynthetic(%d): %v", size, err)
		}
		if n := int64(b.Len()); n < size || n > size+16<<10 {
			t.Errorf("WriteSynthetic(%d) wrote %d bytes, want %d plus at most a line", size, n, size)
		}
		r, err := Validate(context.Background(), &b, byteCounter, Options{})
		if err != nil {
			t.Fatalf("Validate(synthetic %d) error: %v", size, err)
		}
		if r.ErrorCounts[CodeTooFewExamples] != int64(len(r.ErrorCounts)) && len(r.ErrorCounts) > 0 || len(r.WarningCounts) > 1 {
			t.Errorf("Validate(synthetic %d) = errors %v, warnings %v; want none but too_few_examples and rare duplicates", size, r.ErrorCounts, r.WarningCounts)
		}
	}
}

func TestWriteSyntheticPlantsEveryErrorKind(t *testing.T) {
	var b bytes.Buffer
	if err := WriteSynthetic(&b, 2<<20, 1, 3); err != nil {
		t.Fatalf("WriteSynthetic: %v", err)
	}
	r, err := Validate(context.Background(), &b, byteCounter, Options{})
	if err != nil {
		t.Fatalf("Validate(synthetic) error: %v", err)
	}
	bad := r.Lines / 3
	if got := r.Lines - r.Examples; got != bad {
		t.Errorf("Validate(synthetic, an error every 3 lines) = %d bad lines of %d, want %d", got, r.Lines, bad)
	}
	for _, c := range []Code{CodeInvalidJSON, CodeInvalidRole, CodeEmptyContent, CodeMissingAssistant, CodeInvalidWeight,
		CodeInvalidContent, CodeSystemNotFirst, CodeNotObject, CodeMissingMessages, CodeInvalidUTF8} {
		if n := r.ErrorCounts[c]; n < bad/numSynthErrors {
			t.Errorf("Validate(synthetic).ErrorCounts[%s] = %d, want at least %d", c, n, bad/numSynthErrors)
		}
	}
}
