package contract

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"regexp"
	"strconv"
	"strings"
)

// ErrInvalid is matched (errors.Is) by every *ValidationError.
var ErrInvalid = errors.New("contract: invalid document")

// FieldError is one problem with one property of a document: its dotted
// path (e.g. "hyperparameters.batch_size", "base_model.lora_targets[2]")
// and a plain reason.
type FieldError struct {
	Field  string `json:"field"`
	Reason string `json:"reason"`
}

func (f FieldError) Error() string { return f.Field + ": " + f.Reason }

// ValidationError lists every problem found in one document.
type ValidationError struct {
	Document string       // "job spec", "callback"
	Problems []FieldError // never empty
}

func (e *ValidationError) Error() string {
	msgs := make([]string, len(e.Problems))
	for i, p := range e.Problems {
		msgs[i] = p.Error()
	}
	return "invalid " + e.Document + ": " + strings.Join(msgs, "; ")
}

// Unwrap makes errors.Is(err, ErrInvalid) true.
func (e *ValidationError) Unwrap() error { return ErrInvalid }

// Has reports whether a problem concerns field (exactly).
func (e *ValidationError) Has(field string) bool {
	for _, p := range e.Problems {
		if p.Field == field {
			return true
		}
	}
	return false
}

// checker collects problems instead of stopping at the first one.
type checker struct {
	problems []FieldError
}

func (c *checker) bad(field, format string, args ...any) {
	c.problems = append(c.problems, FieldError{Field: field, Reason: fmt.Sprintf(format, args...)})
}

func (c *checker) err(document string) error {
	if len(c.problems) == 0 {
		return nil
	}
	return &ValidationError{Document: document, Problems: c.problems}
}

func join(path, key string) string {
	if path == "" {
		return key
	}
	return path + "." + key
}

// object decodes raw as a JSON object and records every required key that
// is missing or null. It returns nil (after recording a problem) when raw is
// not an object.
func (c *checker) object(raw json.RawMessage, path string, required ...string) map[string]json.RawMessage {
	var m map[string]json.RawMessage
	if err := json.Unmarshal(raw, &m); err != nil || m == nil {
		name := path
		if name == "" {
			name = "document"
		}
		c.bad(name, "must be a JSON object")
		return nil
	}
	for _, k := range required {
		if v, ok := m[k]; !ok || isNull(v) {
			c.bad(join(path, k), "is required")
		}
	}
	return m
}

func isNull(v json.RawMessage) bool { return string(bytes.TrimSpace(v)) == "null" }

// decodeInto unmarshals data into v and turns a type mismatch into a field
// problem. It reports whether decoding succeeded.
func (c *checker) decodeInto(data []byte, v any, path string) bool {
	err := json.Unmarshal(data, v)
	if err == nil {
		return true
	}
	var te *json.UnmarshalTypeError
	if errors.As(err, &te) {
		field := te.Field
		if field == "" {
			field = path
		} else {
			field = join(path, field)
		}
		if field == "" {
			field = "document"
		}
		c.bad(field, "must be %s, got %s", jsonKind(te.Type.Kind().String()), te.Value)
		return false
	}
	name := path
	if name == "" {
		name = "document"
	}
	c.bad(name, "is not valid JSON (%v)", err)
	return false
}

func jsonKind(goKind string) string {
	switch goKind {
	case "int", "int8", "int16", "int32", "int64", "uint", "uint8", "uint16", "uint32", "uint64":
		return "an integer"
	case "float32", "float64":
		return "a number"
	case "string":
		return "a string"
	case "bool":
		return "a boolean"
	case "slice", "array":
		return "an array"
	case "map", "struct":
		return "an object"
	}
	return "a " + goKind
}

func (c *checker) intRange(field string, v, lo, hi int64) {
	if v < lo || v > hi {
		c.bad(field, "must be between %d and %d, got %d", lo, hi, v)
	}
}

func (c *checker) intMin(field string, v, lo int64) {
	if v < lo {
		c.bad(field, "must be at least %d, got %d", lo, v)
	}
}

func (c *checker) floatRange(field string, v, lo, hi float64) {
	// NaN fails both comparisons: test for "inside" and negate.
	if !(v >= lo && v <= hi) {
		c.bad(field, "must be between %s and %s, got %s", fmtNum(lo), fmtNum(hi), fmtNum(v))
	}
}

func (c *checker) floatMin(field string, v, lo float64) {
	if !(v >= lo) || math.IsInf(v, 1) {
		c.bad(field, "must be a finite number of at least %s, got %s", fmtNum(lo), fmtNum(v))
	}
}

func (c *checker) finite(field string, v float64) {
	if math.IsNaN(v) || math.IsInf(v, 0) {
		c.bad(field, "must be a finite number, got %s", fmtNum(v))
	}
}

func (c *checker) nonEmpty(field, v string) bool {
	if v == "" {
		c.bad(field, "must be a non-empty string")
		return false
	}
	return true
}

func (c *checker) match(field, v string, re *regexp.Regexp, what string) {
	if !re.MatchString(v) {
		c.bad(field, "%s, got %q", what, clip(v))
	}
}

func (c *checker) oneOf(field, v string, allowed ...string) {
	for _, a := range allowed {
		if v == a {
			return
		}
	}
	c.bad(field, "must be one of %s, got %q", strings.Join(allowed, ", "), clip(v))
}

func (c *checker) httpURL(field, v string) {
	if !c.nonEmpty(field, v) {
		return
	}
	if !strings.HasPrefix(v, "http://") && !strings.HasPrefix(v, "https://") {
		c.bad(field, "must be an http(s) URL, got %q", clip(v))
	}
}

// fmtNum formats like the worker's fmt_number: %.6g without trailing zeros.
func fmtNum(v float64) string {
	return strconv.FormatFloat(v, 'g', 6, 64)
}

func clip(s string) string {
	if len(s) <= 60 {
		return s
	}
	return s[:57] + "..."
}

var (
	jobIDPattern  = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9_-]{0,127}$`)
	sha256Pattern = regexp.MustCompile(`^[0-9a-f]{64}$`)
	targetPattern = regexp.MustCompile(`^[A-Za-z_][A-Za-z0-9_]*(\.[A-Za-z0-9_]+)*$`) // later segments may be layer numbers
)

// ValidJobID reports whether id is a job id both contracts accept: 1–128
// letters, digits, '_' or '-', starting with a letter or digit.
func ValidJobID(id string) bool { return jobIDPattern.MatchString(id) }
