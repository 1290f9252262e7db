package httpapi

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"maps"
	"net/http"
	"slices"
	"strconv"
	"strings"

	"github.com/brightrun/brightrun/shared/api"
	"github.com/brightrun/brightrun/shared/pipeline"
)

// statusOf maps each domain error code to its one HTTP status.
var statusOf = map[string]int{
	pipeline.EInvalid:      http.StatusBadRequest,
	pipeline.ENotFound:     http.StatusNotFound,
	pipeline.EConflict:     http.StatusConflict,
	pipeline.EUnauthorized: http.StatusUnauthorized,
	pipeline.ETooLarge:     http.StatusRequestEntityTooLarge,
	pipeline.EPrecondition: http.StatusConflict,
	pipeline.EUnavailable:  http.StatusServiceUnavailable,
	pipeline.EInternal:     http.StatusInternalServerError,
}

// writeJSON answers with status and v as JSON.
func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	enc := json.NewEncoder(w)
	enc.SetEscapeHTML(false)
	_ = enc.Encode(v)
}

// writeError answers with err in the error shape. Internal errors are
// logged here, once, and the caller only reads "internal error".
func writeError(w http.ResponseWriter, r *http.Request, log *slog.Logger, err error) {
	code := pipeline.ErrorCode(err)
	status, ok := statusOf[code]
	if !ok {
		status = http.StatusInternalServerError
	}
	body := pipeline.Error{Code: code, Message: pipeline.ErrorMessage(err)}
	var e *pipeline.Error
	if errors.As(err, &e) {
		body.Details = e.Details
	}
	if status >= 500 {
		log.ErrorContext(r.Context(), "request failed", "method", r.Method, "path", r.URL.Path, "err", err)
		if code == pipeline.EInternal {
			body.Message = "internal error"
			body.Details = nil
		}
	}
	writeJSON(w, status, api.ErrorBody{Error: body})
}

// MaxBodyBytes bounds every JSON request body but a multipart upload's
// completion, which lists up to 1,024 parts (MaxCompleteBodyBytes).
const (
	MaxBodyBytes         = 64 << 10
	MaxCompleteBodyBytes = 512 << 10
)

// decodeJSON reads exactly one JSON object into v, refusing unknown fields,
// trailing data and bodies over MaxBodyBytes, with errors that say where.
// The Content-Type is not checked: `curl -d` sends a form type with JSON.
// A number with a zero fraction (34.0, 3.4e1) is an integer, as JSON Schema
// and the OpenAPI document say, so integer fields accept it. No field of
// the document's request bodies is nullable or an empty string, and both
// are refused (Go would take either for an absent field, and so skip
// whatever the caller meant to ask for: a digest check, a chosen model).
func decodeJSON(w http.ResponseWriter, r *http.Request, v any) error {
	return decodeJSONUpTo(w, r, v, MaxBodyBytes)
}

// decodeJSONUpTo is decodeJSON with a body limit of its own.
func decodeJSONUpTo(w http.ResponseWriter, r *http.Request, v any, limit int64) error {
	body, err := io.ReadAll(http.MaxBytesReader(w, r.Body, limit))
	if err != nil {
		return decodeError(err)
	}
	dec := json.NewDecoder(bytes.NewReader(integralNumbers(body)))
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		return decodeError(err)
	}
	if _, err := dec.Token(); err != io.EOF {
		if err != nil {
			return decodeError(err)
		}
		return pipeline.Errorf(pipeline.EInvalid, "request body must hold one JSON object, found more after it")
	}
	var doc any
	if err := json.Unmarshal(body, &doc); err == nil {
		if path, v, ok := noValueAt(doc, ""); ok {
			if path == "" {
				return pipeline.Errorf(pipeline.EInvalid, "request body must be a JSON object, got null")
			}
			what := "null"
			if v != nil {
				what = "an empty string"
			}
			return &pipeline.Error{Code: pipeline.EInvalid, Message: fmt.Sprintf("field %s is %s: give it a value, or leave it out where it is optional", path, what),
				Details: map[string]string{"field": path}}
		}
	}
	return nil
}

// noValueAt finds a null or an empty string in a decoded JSON value and
// returns its path (parts[0].etag) and the value; of several, the first in
// key order.
func noValueAt(v any, path string) (string, any, bool) {
	switch v := v.(type) {
	case nil:
		return path, nil, true
	case string:
		if v == "" {
			return path, v, true
		}
	case map[string]any:
		for _, k := range slices.Sorted(maps.Keys(v)) {
			p := k
			if path != "" {
				p = path + "." + k
			}
			if at, e, ok := noValueAt(v[k], p); ok {
				return at, e, true
			}
		}
	case []any:
		for i, e := range v {
			if at, e, ok := noValueAt(e, fmt.Sprintf("%s[%d]", path, i)); ok {
				return at, e, true
			}
		}
	}
	return "", nil, false
}

func decodeError(err error) error {
	var (
		syntax *json.SyntaxError
		typ    *json.UnmarshalTypeError
		tooBig *http.MaxBytesError
	)
	switch {
	case errors.As(err, &tooBig):
		return pipeline.Errorf(pipeline.ETooLarge, "request body is over %d bytes", tooBig.Limit)
	case errors.Is(err, io.EOF):
		return pipeline.Errorf(pipeline.EInvalid, "request body is empty: send a JSON object")
	case errors.Is(err, io.ErrUnexpectedEOF):
		return pipeline.Errorf(pipeline.EInvalid, "request body is not valid JSON: it ends too early")
	case errors.As(err, &syntax):
		return pipeline.Errorf(pipeline.EInvalid, "request body is not valid JSON at byte %d: %s", syntax.Offset, syntax.Error())
	case errors.As(err, &typ):
		// The path of a field of an embedded struct starts with the
		// struct's Go name, which the caller never wrote.
		field := strings.TrimPrefix(typ.Field, "trainingRequest.")
		if field == "" {
			return pipeline.Errorf(pipeline.EInvalid, "request body must be a JSON object, got %s", typ.Value)
		}
		kind := jsonKind(typ.Type.Kind().String())
		if lit, ok := strings.CutPrefix(typ.Value, "number "); ok && kind == "an integer" && !strings.ContainsAny(lit, ".eE") {
			return pipeline.Errorf(pipeline.EInvalid, "field %s is out of range, got %s", field, typ.Value)
		}
		return pipeline.Errorf(pipeline.EInvalid, "field %s must be %s, got %s", field, kind, typ.Value)
	case strings.HasPrefix(err.Error(), "json: unknown field "):
		return pipeline.Errorf(pipeline.EInvalid, "unknown field %s", strings.TrimPrefix(err.Error(), "json: unknown field "))
	}
	return pipeline.Errorf(pipeline.EInvalid, "request body is not valid JSON: %v", err)
}

func jsonKind(goKind string) string {
	switch goKind {
	case "string":
		return "a string"
	case "int", "int64", "int32", "uint", "uint64":
		return "an integer"
	case "float64", "float32":
		return "a number"
	case "bool":
		return "true or false"
	case "slice", "array":
		return "an array"
	case "struct", "map", "ptr":
		return "an object"
	}
	return fmt.Sprintf("a %s", goKind)
}

// integralNumbers rewrites every number of a valid JSON text whose value is
// a whole number within int64 (34.0, 3.4e1, -0.0, 1E2) as that integer, so
// that Go decodes it into integer fields; JSON Schema calls such numbers
// integers, and the document's integer fields take them. Fractions, numbers
// out of int64's range and the text inside strings are left as they are,
// and so is a text that is not valid JSON, for the decoder to report.
func integralNumbers(data []byte) []byte {
	if !json.Valid(data) {
		return data
	}
	var out []byte // nil until a number is rewritten
	inString, escaped, last := false, false, 0
	for i := 0; i < len(data); i++ {
		c := data[i]
		switch {
		case inString:
			switch {
			case escaped:
				escaped = false
			case c == '\\':
				escaped = true
			case c == '"':
				inString = false
			}
			continue
		case c == '"':
			inString = true
			continue
		case c != '-' && (c < '0' || c > '9'):
			continue
		}
		j := i
		for j < len(data) && strings.IndexByte("+-0123456789.eE", data[j]) >= 0 {
			j++
		}
		if n, ok := wholeNumber(string(data[i:j])); ok {
			out = append(append(out, data[last:i]...), n...)
			last = j
		}
		i = j - 1
	}
	if out == nil {
		return data
	}
	return append(out, data[last:]...)
}

// wholeNumber returns a JSON number literal with a fraction or an exponent
// as a plain integer when its value is a whole number within int64.
func wholeNumber(lit string) (string, bool) {
	if !strings.ContainsAny(lit, ".eE") {
		return "", false
	}
	mantissa, exp, _ := strings.Cut(strings.ToLower(lit), "e")
	e := 0
	if exp != "" {
		n, err := strconv.Atoi(exp)
		if err != nil || n > 100 || n < -100 {
			return "", false // far outside int64 either way
		}
		e = n
	}
	sign := ""
	if m, ok := strings.CutPrefix(mantissa, "-"); ok {
		sign, mantissa = "-", m
	}
	whole, frac, _ := strings.Cut(mantissa, ".")
	// The value is digits × 10^e, with digits free of trailing zeros.
	digits := whole + frac
	e -= len(frac)
	for len(digits) > 0 && digits[len(digits)-1] == '0' {
		digits = digits[:len(digits)-1]
		e++
	}
	digits = strings.TrimLeft(digits, "0")
	switch {
	case digits == "":
		return "0", true
	case e < 0 || len(digits)+e > 19:
		return "", false
	}
	n, err := strconv.ParseInt(sign+digits+strings.Repeat("0", e), 10, 64)
	if err != nil {
		return "", false
	}
	return strconv.FormatInt(n, 10), true
}
