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

// overrides is one prices file being read: its bytes and the problems
// found so far. Each section of the file has its decoder below.
type overrides struct {
	data []byte
	err  *OverridesError
}

func (o *overrides) problem(at int64, path, format string, args ...any) {
	line, col := lineCol(o.data, at)
	o.err.Problems = append(o.err.Problems, Problem{Line: line, Column: col, Path: path, Message: fmt.Sprintf(format, args...)})
}

// sections are the top-level values of a prices file.
type sections struct {
	date, source      string
	dateAt            int64
	haveDate          bool
	gpuElems, tpElems []element
	haveGPUs          bool
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
	o := &overrides{data: data, err: &OverridesError{File: name}}
	sec, ok := o.decodeSections()
	if !ok {
		return nil, o.err
	}
	prices := c.prices.clone()
	o.decodeHeader(sec, &prices)
	gpuAt := map[string]int64{}
	if sec.haveGPUs {
		prices.GPUs, gpuAt = o.decodeGPUs(c.prices.GPUs, sec.gpuElems)
	}
	list := o.decodeThroughput(c, prices.GPUs, gpuAt, sec.tpElems)
	if len(o.err.Problems) > 0 {
		o.err.sort()
		return nil, o.err
	}
	out, err := New(c.models, prices, list)
	if err != nil {
		o.problem(0, "", "%v", err)
		return nil, o.err
	}
	return out, nil
}

// decodeSections reads the file's top-level object into its sections,
// without judging their contents; ok is false when the file is not a
// readable JSON object.
func (o *overrides) decodeSections() (sections, bool) {
	var sec sections
	dec := json.NewDecoder(bytes.NewReader(o.data))
	dec.UseNumber()
	fail := func(err error) (sections, bool) {
		var se *json.SyntaxError
		switch {
		case errors.As(err, &se):
			o.problem(se.Offset, "", "invalid JSON: %v", err)
		case errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF):
			o.problem(int64(len(o.data)), "", "unexpected end of file")
		default:
			o.problem(dec.InputOffset(), "", "invalid JSON: %v", err)
		}
		return sec, false
	}
	tok, err := dec.Token()
	if err != nil {
		return fail(err)
	}
	if d, ok := tok.(json.Delim); !ok || d != '{' {
		o.problem(0, "", "the file must hold a JSON object")
		return sec, false
	}
	for dec.More() {
		keyAt := skipSpace(o.data, dec.InputOffset())
		tok, err := dec.Token()
		if err != nil {
			return fail(err)
		}
		key, _ := tok.(string)
		valueAt := skipSpace(o.data, dec.InputOffset())
		switch key {
		case "date", "source":
			var v any
			if err := dec.Decode(&v); err != nil {
				return fail(err)
			}
			s, ok := v.(string)
			if !ok {
				o.problem(valueAt, key, "must be a string")
				continue
			}
			if key == "date" {
				sec.date, sec.dateAt, sec.haveDate = s, valueAt, true
			} else {
				sec.source = s
			}
		case "gpus", "throughput":
			elems, ok, err := decodeArray(dec, o.data)
			if err != nil {
				return fail(err)
			}
			if !ok {
				o.problem(valueAt, key, "must be an array")
				continue
			}
			if key == "gpus" {
				sec.gpuElems, sec.haveGPUs = elems, true
			} else {
				sec.tpElems = elems
			}
		default:
			o.problem(keyAt, "", "unknown field %q: the file takes date, source, gpus and throughput", key)
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
		o.problem(skipSpace(o.data, dec.InputOffset()), "", "unexpected data after the object")
	}
	return sec, true
}

// decodeHeader applies the date (required) and the source.
func (o *overrides) decodeHeader(sec sections, prices *PriceTable) {
	if !sec.haveDate {
		o.problem(0, "date", "is required: the date the prices were read, YYYY-MM-DD")
	} else {
		if err := validateDate(sec.date); err != nil {
			o.problem(sec.dateAt, "date", "%v", err)
		}
		prices.Date = sec.date
	}
	if sec.source != "" {
		prices.Source = sec.source
	}
}

// decodeGPUs reads the "gpus" section: the file's list replaces the
// table, and GPUs that are built in inherit what the file leaves out. It
// returns the list and where each GPU is in the file.
func (o *overrides) decodeGPUs(builtIn []GPU, elems []element) ([]GPU, map[string]int64) {
	base := map[string]GPU{}
	for _, g := range builtIn {
		base[g.ID] = g
	}
	var list []GPU
	gpuAt := map[string]int64{}
	for i, el := range elems {
		g, ok := o.decodeGPU(base, gpuAt, i, el)
		if ok {
			gpuAt[g.ID] = el.at
			list = append(list, g)
		}
	}
	if len(elems) == 0 {
		o.problem(0, "gpus", "lists no GPU")
	}
	return list, gpuAt
}

// decodeGPU reads the i-th entry of "gpus"; seen holds the ids read before.
func (o *overrides) decodeGPU(base map[string]GPU, seen map[string]int64, i int, el element) (GPU, bool) {
	path := fmt.Sprintf("gpus[%d]", i)
	var ov gpuOverride
	if msg := decodeStrict(el.raw, &ov); msg != "" {
		o.problem(el.at, path, "%s", msg)
		return GPU{}, false
	}
	if ov.ID == "" {
		o.problem(el.at, path+".id", "is required")
		return GPU{}, false
	}
	path = fmt.Sprintf("gpus[%d] (%q)", i, ov.ID)
	if _, dup := seen[ov.ID]; dup {
		o.problem(el.at, path, "listed twice")
		return GPU{}, false
	}
	g, known := base[ov.ID]
	if !known {
		if missing := ov.missing(); len(missing) > 0 {
			o.problem(el.at, path, "a GPU that is not built in needs %s", strings.Join(missing, ", "))
			return GPU{}, false
		}
		g = GPU{ID: ov.ID}
	}
	ov.apply(&g)
	g.derive()
	if ps := validateGPU(g); len(ps) > 0 {
		o.problem(el.at, path, "%s", strings.Join(ps, "; "))
		return GPU{}, false
	}
	return g, true
}

// missing lists the fields a GPU that is not built in needs but ov lacks.
func (ov *gpuOverride) missing() []string {
	var out []string
	for _, f := range []struct {
		name string
		set  bool
	}{
		{"name", ov.Name != nil}, {"pool", ov.Pool != nil},
		{"runpod_gpu_type_ids", ov.RunPodGPUTypeIDs != nil},
		{"memory_gib", ov.MemoryGiB != nil}, {"usable_memory_gib", ov.UsableMemoryGiB != nil},
		{"price_usd_per_second", ov.PriceUSDPerSecond != nil},
	} {
		if !f.set {
			out = append(out, f.name)
		}
	}
	return out
}

// apply sets the fields ov gives on g.
func (ov *gpuOverride) apply(g *GPU) {
	if ov.Name != nil {
		g.Name = *ov.Name
	}
	if ov.Pool != nil {
		g.Pool = *ov.Pool
	}
	if ov.RunPodGPUTypeIDs != nil {
		g.RunPodGPUTypeIDs = ov.RunPodGPUTypeIDs
	}
	if ov.MemoryGiB != nil {
		g.MemoryGiB = *ov.MemoryGiB
	}
	if ov.UsableMemoryGiB != nil {
		g.UsableMemoryGiB = *ov.UsableMemoryGiB
	}
	if ov.PriceUSDPerSecond != nil {
		g.PriceUSDPerSecond = *ov.PriceUSDPerSecond
	}
}

// decodeThroughput reads the "throughput" section over the built-in
// figures of the offered GPUs, and checks that every offered GPU has a
// figure for every model. It returns the figures in table order.
func (o *overrides) decodeThroughput(c *Catalog, gpus []GPU, gpuAt map[string]int64, elems []element) []Throughput {
	offered := map[string]bool{}
	for _, g := range gpus {
		offered[g.ID] = true
	}
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
	for i, el := range elems {
		t, isNew, ok := o.decodeFigure(c, offered, tps, seen, i, el)
		if !ok {
			continue
		}
		k := pairKey{t.Model, t.GPU}
		if isNew {
			order = append(order, k)
		}
		tps[k] = t
	}
	for _, g := range gpus {
		var missing []string
		for _, m := range c.models {
			if _, ok := tps[pairKey{m.ID, g.ID}]; !ok {
				missing = append(missing, m.ID)
			}
		}
		if len(missing) > 0 {
			o.problem(gpuAt[g.ID], fmt.Sprintf("gpus (%q)", g.ID), "no throughput figure for %s: add \"throughput\" entries", strings.Join(missing, ", "))
		}
	}
	list := make([]Throughput, 0, len(order))
	for _, k := range order {
		list = append(list, tps[k])
	}
	return list
}

// decodeFigure reads the i-th entry of "throughput" over the figures so
// far (tps); seen marks the pairs read before. isNew is set for a pair
// without a figure yet.
func (o *overrides) decodeFigure(c *Catalog, offered map[string]bool, tps map[pairKey]Throughput, seen map[pairKey]bool, i int, el element) (t Throughput, isNew, ok bool) {
	path := fmt.Sprintf("throughput[%d]", i)
	var ov throughputOverride
	if msg := decodeStrict(el.raw, &ov); msg != "" {
		o.problem(el.at, path, "%s", msg)
		return t, false, false
	}
	if _, ok := c.modelIdx[ov.Model]; !ok {
		o.problem(el.at, path+".model", "unknown model %q: choose one of %s", ov.Model, strings.Join(c.modelIDs(), ", "))
		return t, false, false
	}
	if !offered[ov.GPU] {
		o.problem(el.at, path+".gpu", "unknown GPU %q (not in the GPU list)", ov.GPU)
		return t, false, false
	}
	k := pairKey{ov.Model, ov.GPU}
	path = fmt.Sprintf("throughput[%d] (%s on %s)", i, ov.Model, ov.GPU)
	if seen[k] {
		o.problem(el.at, path, "listed twice")
		return t, false, false
	}
	seen[k] = true
	t, known := tps[k]
	if !known {
		if ov.TokensPerSecond == nil || ov.MicroBatchSeconds == nil || ov.Uncertainty == nil || ov.Source == nil {
			o.problem(el.at, path, "a new figure needs tokens_per_second, micro_batch_seconds, uncertainty and source")
			return t, false, false
		}
		t = Throughput{Model: ov.Model, GPU: ov.GPU}
	}
	if ov.TokensPerSecond != nil {
		t.TokensPerSecond = *ov.TokensPerSecond
	}
	if ov.MicroBatchSeconds != nil {
		t.MicroBatchSeconds = *ov.MicroBatchSeconds
	}
	if ov.Uncertainty != nil {
		t.Uncertainty = *ov.Uncertainty
	}
	if ov.Source != nil {
		t.Source = *ov.Source
	}
	if ps := validateThroughput(t); len(ps) > 0 {
		o.problem(el.at, path, "%s", strings.Join(ps, "; "))
		return t, false, false
	}
	return t, !known, true
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
