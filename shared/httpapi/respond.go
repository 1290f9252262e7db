package httpapi

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
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

// MaxBodyBytes bounds every JSON request body.
const MaxBodyBytes = 64 << 10

// decodeJSON reads exactly one JSON object into v, refusing unknown fields,
// trailing data and bodies over MaxBodyBytes, with errors that say where.
// The Content-Type is not checked: `curl -d` sends a form type with JSON.
func decodeJSON(w http.ResponseWriter, r *http.Request, v any) error {
	dec := json.NewDecoder(http.MaxBytesReader(w, r.Body, MaxBodyBytes))
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
	return nil
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
		field := typ.Field
		if field == "" {
			return pipeline.Errorf(pipeline.EInvalid, "request body must be a JSON object, got %s", typ.Value)
		}
		return pipeline.Errorf(pipeline.EInvalid, "field %s must be %s, got %s", field, jsonKind(typ.Type.Kind().String()), typ.Value)
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
