package runpodemu

import (
	"bytes"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"sort"
)

// The safetensors format (huggingface/safetensors): an 8-byte little-endian
// header length N, N bytes of JSON header (padded with spaces), then the
// raw tensor data. The header maps each tensor name to
// {"dtype", "shape", "data_offsets": [begin, end]} (offsets relative to the
// start of the data) and may hold "__metadata__": {string: string}.

// Tensor is one tensor to write.
type Tensor struct {
	Name  string
	DType string // "F32", "BF16", "F16", ...
	Shape []int64
	Data  []byte // little-endian, len = product(shape) × DTypeSize(dtype)
}

// TensorInfo is one tensor of a parsed header.
type TensorInfo struct {
	DType       string   `json:"dtype"`
	Shape       []int64  `json:"shape"`
	DataOffsets [2]int64 `json:"data_offsets"`
}

// DTypeSize returns the bytes per element of a safetensors dtype (0 if unknown).
func DTypeSize(dtype string) int64 {
	switch dtype {
	case "F64", "I64", "U64":
		return 8
	case "F32", "I32", "U32":
		return 4
	case "F16", "BF16", "I16", "U16":
		return 2
	case "I8", "U8", "BOOL", "F8_E4M3", "F8_E5M2":
		return 1
	}
	return 0
}

func elements(shape []int64) int64 {
	n := int64(1)
	for _, d := range shape {
		n *= d
	}
	return n
}

// WriteSafetensors writes tensors (sorted by name) with optional metadata.
func WriteSafetensors(w io.Writer, tensors []Tensor, metadata map[string]string) error {
	sorted := append([]Tensor(nil), tensors...)
	sort.Slice(sorted, func(i, j int) bool { return sorted[i].Name < sorted[j].Name })
	header := make(map[string]any, len(sorted)+1)
	if len(metadata) > 0 {
		header["__metadata__"] = metadata
	}
	var off int64
	for _, t := range sorted {
		size := DTypeSize(t.DType)
		if size == 0 {
			return fmt.Errorf("safetensors: tensor %s: unknown dtype %q", t.Name, t.DType)
		}
		if want := elements(t.Shape) * size; int64(len(t.Data)) != want {
			return fmt.Errorf("safetensors: tensor %s: %d bytes of data, want %d for shape %v %s", t.Name, len(t.Data), want, t.Shape, t.DType)
		}
		if _, dup := header[t.Name]; dup || t.Name == "__metadata__" {
			return fmt.Errorf("safetensors: duplicate or reserved tensor name %q", t.Name)
		}
		header[t.Name] = TensorInfo{DType: t.DType, Shape: t.Shape, DataOffsets: [2]int64{off, off + int64(len(t.Data))}}
		off += int64(len(t.Data))
	}
	h, err := json.Marshal(header) // map keys come out sorted
	if err != nil {
		return fmt.Errorf("safetensors: encode header: %w", err)
	}
	if pad := (8 - len(h)%8) % 8; pad > 0 {
		h = append(h, bytes.Repeat([]byte{' '}, pad)...)
	}
	var n [8]byte
	binary.LittleEndian.PutUint64(n[:], uint64(len(h)))
	if _, err := w.Write(n[:]); err != nil {
		return fmt.Errorf("safetensors: write: %w", err)
	}
	if _, err := w.Write(h); err != nil {
		return fmt.Errorf("safetensors: write: %w", err)
	}
	for _, t := range sorted {
		if _, err := w.Write(t.Data); err != nil {
			return fmt.Errorf("safetensors: write: %w", err)
		}
	}
	return nil
}

// maxHeaderBytes is the safetensors library's limit on the header.
const maxHeaderBytes = 100 << 20

// ParseSafetensors checks a whole safetensors file and returns its tensors
// and metadata: the header is JSON, every dtype is known, every tensor's
// byte span matches its shape, and the spans tile the data exactly.
func ParseSafetensors(file []byte) (map[string]TensorInfo, map[string]string, error) {
	if len(file) < 8 {
		return nil, nil, errors.New("safetensors: shorter than the 8-byte header length")
	}
	n := binary.LittleEndian.Uint64(file[:8])
	if n > maxHeaderBytes || n > uint64(len(file)-8) {
		return nil, nil, fmt.Errorf("safetensors: header length %d does not fit a %d-byte file", n, len(file))
	}
	var raw map[string]json.RawMessage
	if err := json.Unmarshal(file[8:8+n], &raw); err != nil {
		return nil, nil, fmt.Errorf("safetensors: header is not a JSON object: %w", err)
	}
	var meta map[string]string
	tensors := make(map[string]TensorInfo, len(raw))
	for name, v := range raw {
		if name == "__metadata__" {
			if err := json.Unmarshal(v, &meta); err != nil {
				return nil, nil, fmt.Errorf("safetensors: __metadata__ must map strings to strings: %w", err)
			}
			continue
		}
		var ti TensorInfo
		if err := json.Unmarshal(v, &ti); err != nil {
			return nil, nil, fmt.Errorf("safetensors: tensor %s: %w", name, err)
		}
		size := DTypeSize(ti.DType)
		if size == 0 {
			return nil, nil, fmt.Errorf("safetensors: tensor %s: unknown dtype %q", name, ti.DType)
		}
		if span := ti.DataOffsets[1] - ti.DataOffsets[0]; ti.DataOffsets[0] < 0 || span != elements(ti.Shape)*size {
			return nil, nil, fmt.Errorf("safetensors: tensor %s: offsets %v do not hold shape %v of %s", name, ti.DataOffsets, ti.Shape, ti.DType)
		}
		tensors[name] = ti
	}
	spans := make([][2]int64, 0, len(tensors))
	for _, ti := range tensors {
		spans = append(spans, ti.DataOffsets)
	}
	sort.Slice(spans, func(i, j int) bool { return spans[i][0] < spans[j][0] })
	var next int64
	for _, s := range spans {
		if s[0] != next {
			return nil, nil, fmt.Errorf("safetensors: data spans leave a gap or overlap at byte %d", next)
		}
		next = s[1]
	}
	if data := int64(len(file)) - 8 - int64(n); next != data {
		return nil, nil, fmt.Errorf("safetensors: tensors cover %d bytes of data, the file holds %d", next, data)
	}
	return tensors, meta, nil
}
