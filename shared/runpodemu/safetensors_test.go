package runpodemu_test

import (
	"bytes"
	"encoding/binary"
	"strings"
	"testing"

	"github.com/brightrun/brightrun/shared/runpodemu"
)

func TestSafetensorsRoundTrip(t *testing.T) {
	var buf bytes.Buffer
	tensors := []runpodemu.Tensor{
		{Name: "b", DType: "F32", Shape: []int64{2, 3}, Data: make([]byte, 24)},
		{Name: "a", DType: "BF16", Shape: []int64{4}, Data: make([]byte, 8)},
	}
	if err := runpodemu.WriteSafetensors(&buf, tensors, map[string]string{"format": "pt"}); err != nil {
		t.Fatal(err)
	}
	n := binary.LittleEndian.Uint64(buf.Bytes()[:8])
	if n%8 != 0 {
		t.Errorf("header length %d is not a multiple of 8", n)
	}
	got, meta, err := runpodemu.ParseSafetensors(buf.Bytes())
	if err != nil {
		t.Fatalf("ParseSafetensors = %v", err)
	}
	if meta["format"] != "pt" || got["a"].DataOffsets != [2]int64{0, 8} || got["b"].DataOffsets != [2]int64{8, 32} {
		t.Errorf("parsed %v %v", got, meta)
	}
}

func TestMalformedSafetensorsAreRefused(t *testing.T) {
	header := func(h string, data int) []byte {
		b := make([]byte, 8)
		binary.LittleEndian.PutUint64(b, uint64(len(h)))
		return append(append(b, h...), make([]byte, data)...)
	}
	tests := []struct {
		name string
		file []byte
		want string
	}{
		{"a file shorter than 8 bytes is refused", []byte{1, 2}, "shorter"},
		{"a header longer than the file is refused", header("{}", 0)[:9], "does not fit"},
		{"a header that is not JSON is refused", header("{x", 0), "not a JSON object"},
		{"an unknown dtype is refused", header(`{"t":{"dtype":"Q4","shape":[1],"data_offsets":[0,1]}}`, 1), "unknown dtype"},
		{"a span that does not hold the shape is refused", header(`{"t":{"dtype":"F32","shape":[2],"data_offsets":[0,4]}}`, 4), "do not hold"},
		{"a gap between tensors is refused", header(`{"t":{"dtype":"F32","shape":[1],"data_offsets":[4,8]}}`, 8), "gap"},
		{"data beyond the tensors is refused", header(`{"t":{"dtype":"F32","shape":[1],"data_offsets":[0,4]}}`, 8), "cover 4 bytes"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, _, err := runpodemu.ParseSafetensors(tt.file)
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Errorf("ParseSafetensors = %v, want an error containing %q", err, tt.want)
			}
		})
	}
	if err := runpodemu.WriteSafetensors(&bytes.Buffer{}, []runpodemu.Tensor{{Name: "x", DType: "F32", Shape: []int64{2}, Data: make([]byte, 4)}}, nil); err == nil {
		t.Errorf("WriteSafetensors accepted data that does not match its shape")
	}
}
