package catalog

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"sort"
	"strings"
)

// PricesFileEnv names the environment variable that holds the path of a
// prices file (see WithOverridesJSON).
const PricesFileEnv = "BRIGHTRUN_PRICES_FILE"

// FromEnv returns Default() with the prices file named by PricesFileEnv
// applied, or Default() when the variable is empty.
func FromEnv(getenv func(string) string) (*Catalog, error) {
	c := Default()
	path := getenv(PricesFileEnv)
	if path == "" {
		return c, nil
	}
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("catalog: %s: %w", PricesFileEnv, err)
	}
	return c.WithOverridesJSON(path, data)
}

// Problem is one bad entry of a prices file: where it is and what is wrong.
type Problem struct {
	Line    int    `json:"line"`
	Column  int    `json:"column"`
	Path    string `json:"path"` // e.g. gpus[2].price_usd_per_second
	Message string `json:"message"`
}

// OverridesError lists every problem found in a prices file.
type OverridesError struct {
	File     string    `json:"file"`
	Problems []Problem `json:"problems"`
}

func (e *OverridesError) sort() {
	sort.SliceStable(e.Problems, func(i, j int) bool {
		a, b := e.Problems[i], e.Problems[j]
		return a.Line < b.Line || (a.Line == b.Line && a.Column < b.Column)
	})
}

func (e *OverridesError) Error() string {
	var b strings.Builder
	fmt.Fprintf(&b, "catalog: %s: %d problem(s)", e.File, len(e.Problems))
	for _, p := range e.Problems {
		fmt.Fprintf(&b, "\n%s:%d:%d: ", e.File, p.Line, p.Column)
		if p.Path != "" {
			b.WriteString(p.Path + ": ")
		}
		b.WriteString(p.Message)
	}
	return b.String()
}

type gpuOverride struct {
	ID                string   `json:"id"`
	Name              *string  `json:"name"`
	Pool              *string  `json:"pool"`
	RunPodGPUTypeIDs  []string `json:"runpod_gpu_type_ids"`
	MemoryGiB         *float64 `json:"memory_gib"`
	UsableMemoryGiB   *float64 `json:"usable_memory_gib"`
	PriceUSDPerSecond *float64 `json:"price_usd_per_second"`
}

type throughputOverride struct {
	Model             string   `json:"model"`
	GPU               string   `json:"gpu"`
	TokensPerSecond   *float64 `json:"tokens_per_second"`
	MicroBatchSeconds *float64 `json:"micro_batch_seconds"`
	Uncertainty       *float64 `json:"uncertainty"`
	Source            *string  `json:"source"`
}

// element is one array entry of the file with the byte offset it starts at.
type element struct {
	raw json.RawMessage
	at  int64
}

// WithOverridesJSON returns a copy of c with a prices file applied. The
// file (name is used in messages) is a JSON object:
//
//	{
//	  "date": "2026-12-01",              // required: when the prices were read
//	  "source": "RunPod pricing page",   // optional
//	  "gpus": [                          // optional: the complete GPU list, in order
//	    {"id": "h100-80gb", "price_usd_per_second": 0.00116},
//	    {"id": "b200-180gb", "name": "B200 180GB", "pool": "BLACKWELL_180",
//	     "runpod_gpu_type_ids": ["NVIDIA B200"], "memory_gib": 180,
//	     "usable_memory_gib": 178, "price_usd_per_second": 0.0024}
//	  ],
//	  "throughput": [                    // optional: figures to replace or add
//	    {"model": "Qwen/Qwen3-8B", "gpu": "b200-180gb", "tokens_per_second": 9000,
//	     "micro_batch_seconds": 0.1, "uncertainty": 0.3, "source": "job 123"}
//	  ]
//	}
//
// A GPU whose id is built in inherits every field the file leaves out; a
// new GPU needs them all, and a throughput figure for every model. A
// throughput entry for a known pair inherits the fields it leaves out. GPUs
// absent from "gpus" are no longer offered; without "gpus" the GPU list is
// kept. The error, when not nil, is an *OverridesError listing every
// problem with its line and column.
func (c *Catalog) WithOverridesJSON(name string, data []byte) (*Catalog, error) {
	oe := &OverridesError{File: name}
	problem := func(at int64, path, format string, args ...any) {
		line, col := lineCol(data, at)
		oe.Problems = append(oe.Problems, Problem{Line: line, Column: col, Path: path, Message: fmt.Sprintf(format, args...)})
	}

	var (
		date, source      string
		dateAt            int64
		haveDate          bool
		gpuElems, tpElems []element
		haveGPUs          bool
	)
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.UseNumber()
	fail := func(err error) (*Catalog, error) {
		var se *json.SyntaxError
		switch {
		case errors.As(err, &se):
			problem(se.Offset, "", "invalid JSON: %v", err)
		case errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF):
			problem(int64(len(data)), "", "unexpected end of file")
		default:
			problem(dec.InputOffset(), "", "invalid JSON: %v", err)
		}
		return nil, oe
	}
	tok, err := dec.Token()
	if err != nil {
		return fail(err)
	}
	if d, ok := tok.(json.Delim); !ok || d != '{' {
		problem(0, "", "the file must hold a JSON object")
		return nil, oe
	}
	for dec.More() {
		keyAt := skipSpace(data, dec.InputOffset())
		tok, err := dec.Token()
		if err != nil {
			return fail(err)
		}
		key, _ := tok.(string)
		valueAt := skipSpace(data, dec.InputOffset())
		switch key {
		case "date", "source":
			var v any
			if err := dec.Decode(&v); err != nil {
				return fail(err)
			}
			s, ok := v.(string)
			if !ok {
				problem(valueAt, key, "must be a string")
				continue
			}
			if key == "date" {
				date, dateAt, haveDate = s, valueAt, true
			} else {
				source = s
			}
		case "gpus", "throughput":
			elems, ok, err := decodeArray(dec, data)
			if err != nil {
				return fail(err)
			}
			if !ok {
				problem(valueAt, key, "must be an array")
				continue
			}
			if key == "gpus" {
				gpuElems, haveGPUs = elems, true
			} else {
				tpElems = elems
			}
		default:
			problem(keyAt, "", "unknown field %q: the file takes date, source, gpus and throughput", key)
			var skip json.RawMessage
			if err := dec.Decode(&skip); err != nil {
				return fail(err)
			}
		}
	}
	if _, err := dec.Token(); err != nil {
		return fail(err)
	}
	if _, err := dec.Token(); err != io.EOF {
		problem(skipSpace(data, dec.InputOffset()), "", "unexpected data after the object")
	}

	prices := c.prices.clone()
	switch {
	case !haveDate:
		problem(0, "date", "is required: the date the prices were read, YYYY-MM-DD")
	default:
		if err := validateDate(date); err != nil {
			problem(dateAt, "date", "%v", err)
		}
		prices.Date = date
	}
	if source != "" {
		prices.Source = source
	}

	// GPUs: the file's list replaces the table; known ids inherit.
	gpuAt := map[string]int64{}
	if haveGPUs {
		base := map[string]GPU{}
		for _, g := range c.prices.GPUs {
			base[g.ID] = g
		}
		prices.GPUs = nil
		for i, el := range gpuElems {
			path := fmt.Sprintf("gpus[%d]", i)
			var o gpuOverride
			if msg := decodeStrict(el.raw, &o); msg != "" {
				problem(el.at, path, "%s", msg)
				continue
			}
			if o.ID == "" {
				problem(el.at, path+".id", "is required")
				continue
			}
			path = fmt.Sprintf("gpus[%d] (%q)", i, o.ID)
			if _, dup := gpuAt[o.ID]; dup {
				problem(el.at, path, "listed twice")
				continue
			}
			g, known := base[o.ID]
			if !known {
				var missing []string
				for _, f := range []struct {
					name string
					set  bool
				}{
					{"name", o.Name != nil}, {"pool", o.Pool != nil},
					{"runpod_gpu_type_ids", o.RunPodGPUTypeIDs != nil},
					{"memory_gib", o.MemoryGiB != nil}, {"usable_memory_gib", o.UsableMemoryGiB != nil},
					{"price_usd_per_second", o.PriceUSDPerSecond != nil},
				} {
					if !f.set {
						missing = append(missing, f.name)
					}
				}
				if len(missing) > 0 {
					problem(el.at, path, "a GPU that is not built in needs %s", strings.Join(missing, ", "))
					continue
				}
				g = GPU{ID: o.ID}
			}
			if o.Name != nil {
				g.Name = *o.Name
			}
			if o.Pool != nil {
				g.Pool = *o.Pool
			}
			if o.RunPodGPUTypeIDs != nil {
				g.RunPodGPUTypeIDs = o.RunPodGPUTypeIDs
			}
			if o.MemoryGiB != nil {
				g.MemoryGiB = *o.MemoryGiB
			}
			if o.UsableMemoryGiB != nil {
				g.UsableMemoryGiB = *o.UsableMemoryGiB
			}
			if o.PriceUSDPerSecond != nil {
				g.PriceUSDPerSecond = *o.PriceUSDPerSecond
			}
			g.derive()
			if ps := validateGPU(g); len(ps) > 0 {
				problem(el.at, path, "%s", strings.Join(ps, "; "))
				continue
			}
			gpuAt[o.ID] = el.at
			prices.GPUs = append(prices.GPUs, g)
		}
		if len(gpuElems) == 0 {
			problem(0, "gpus", "lists no GPU")
		}
	}
	offered := map[string]bool{}
	for _, g := range prices.GPUs {
		offered[g.ID] = true
	}

	// Throughput: start from the built-in figures of offered GPUs.
	tps := map[pairKey]Throughput{}
	var order []pairKey
	for _, t := range c.throughput {
		k := pairKey{t.Model, t.GPU}
		if offered[t.GPU] {
			tps[k] = t
			order = append(order, k)
		}
	}
	seen := map[pairKey]bool{}
	for i, el := range tpElems {
		path := fmt.Sprintf("throughput[%d]", i)
		var o throughputOverride
		if msg := decodeStrict(el.raw, &o); msg != "" {
			problem(el.at, path, "%s", msg)
			continue
		}
		if _, ok := c.modelIdx[o.Model]; !ok {
			problem(el.at, path+".model", "unknown model %q: choose one of %s", o.Model, strings.Join(c.modelIDs(), ", "))
			continue
		}
		if !offered[o.GPU] {
			problem(el.at, path+".gpu", "unknown GPU %q (not in the GPU list)", o.GPU)
			continue
		}
		k := pairKey{o.Model, o.GPU}
		path = fmt.Sprintf("throughput[%d] (%s on %s)", i, o.Model, o.GPU)
		if seen[k] {
			problem(el.at, path, "listed twice")
			continue
		}
		seen[k] = true
		t, known := tps[k]
		if !known {
			if o.TokensPerSecond == nil || o.MicroBatchSeconds == nil || o.Uncertainty == nil || o.Source == nil {
				problem(el.at, path, "a new figure needs tokens_per_second, micro_batch_seconds, uncertainty and source")
				continue
			}
			t = Throughput{Model: o.Model, GPU: o.GPU}
			order = append(order, k)
		}
		if o.TokensPerSecond != nil {
			t.TokensPerSecond = *o.TokensPerSecond
		}
		if o.MicroBatchSeconds != nil {
			t.MicroBatchSeconds = *o.MicroBatchSeconds
		}
		if o.Uncertainty != nil {
			t.Uncertainty = *o.Uncertainty
		}
		if o.Source != nil {
			t.Source = *o.Source
		}
		if ps := validateThroughput(t); len(ps) > 0 {
			problem(el.at, path, "%s", strings.Join(ps, "; "))
			continue
		}
		tps[k] = t
	}
	for _, g := range prices.GPUs {
		var missing []string
		for _, m := range c.models {
			if _, ok := tps[pairKey{m.ID, g.ID}]; !ok {
				missing = append(missing, m.ID)
			}
		}
		if len(missing) > 0 {
			problem(gpuAt[g.ID], fmt.Sprintf("gpus (%q)", g.ID), "no throughput figure for %s: add \"throughput\" entries", strings.Join(missing, ", "))
		}
	}
	if len(oe.Problems) > 0 {
		oe.sort()
		return nil, oe
	}
	list := make([]Throughput, 0, len(order))
	for _, k := range order {
		list = append(list, tps[k])
	}
	out, err := New(c.models, prices, list)
	if err != nil {
		problem(0, "", "%v", err)
		return nil, oe
	}
	return out, nil
}

// decodeArray reads an array value, returning each element with its start
// offset; ok is false (and the value skipped) when the value is not an
// array.
func decodeArray(dec *json.Decoder, data []byte) (elems []element, ok bool, err error) {
	tok, err := dec.Token()
	if err != nil {
		return nil, false, err
	}
	if d, isDelim := tok.(json.Delim); !isDelim || d != '[' {
		if isDelim && d == '{' {
			// Skip the object's remainder.
			depth := 1
			for depth > 0 {
				t, err := dec.Token()
				if err != nil {
					return nil, false, err
				}
				if d, ok := t.(json.Delim); ok {
					if d == '{' || d == '[' {
						depth++
					} else {
						depth--
					}
				}
			}
		}
		return nil, false, nil
	}
	for dec.More() {
		at := skipSpace(data, dec.InputOffset())
		var raw json.RawMessage
		if err := dec.Decode(&raw); err != nil {
			return nil, false, err
		}
		elems = append(elems, element{raw: raw, at: at})
	}
	if _, err := dec.Token(); err != nil {
		return nil, false, err
	}
	return elems, true, nil
}

// decodeStrict decodes one entry, refusing unknown fields and wrong types;
// it returns a message, or "" on success.
func decodeStrict(raw json.RawMessage, v any) string {
	if len(raw) == 0 || raw[0] != '{' {
		return "must be an object"
	}
	dec := json.NewDecoder(bytes.NewReader(raw))
	dec.DisallowUnknownFields()
	err := dec.Decode(v)
	if err == nil {
		return ""
	}
	var te *json.UnmarshalTypeError
	if errors.As(err, &te) {
		return fmt.Sprintf("%s: want %s, got %s", te.Field, jsonKind(te.Type.Kind().String()), te.Value)
	}
	if f, ok := strings.CutPrefix(err.Error(), "json: unknown field "); ok {
		return "unknown field " + f
	}
	return err.Error()
}

func jsonKind(goKind string) string {
	switch goKind {
	case "float64", "int", "int64":
		return "a number"
	case "string":
		return "a string"
	case "slice":
		return "an array"
	case "ptr":
		return "a value of another type"
	}
	return goKind
}

// skipSpace returns the offset of the first byte at or after off that is
// neither JSON whitespace nor a separator (',' or ':').
func skipSpace(data []byte, off int64) int64 {
	for off < int64(len(data)) {
		switch data[off] {
		case ' ', '\t', '\r', '\n', ',', ':':
			off++
		default:
			return off
		}
	}
	return off
}

// lineCol converts a byte offset to a 1-based line and column (in bytes).
func lineCol(data []byte, off int64) (line, col int) {
	if off > int64(len(data)) {
		off = int64(len(data))
	}
	line, col = 1, 1
	for _, b := range data[:off] {
		if b == '\n' {
			line++
			col = 1
		} else {
			col++
		}
	}
	return line, col
}
