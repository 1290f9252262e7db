package pipeline

import (
	"errors"
	"fmt"
)

// Error codes: the only ones the API returns. Each maps to one HTTP status
// in the HTTP package.
const (
	EInvalid      = "invalid"             // the request is malformed or out of range
	ENotFound     = "not_found"           // no such record for this owner
	EConflict     = "conflict"            // a conditional write lost, or an idempotency key reused
	EUnauthorized = "unauthorized"        // no or bad credentials
	ETooLarge     = "too_large"           // body or declared size over a limit
	EUnavailable  = "unavailable"         // a dependency is down: retry later
	EInternal     = "internal"            // a bug or an unclassified failure
	EPrecondition = "failed_precondition" // the record is not in a state that allows this
)

// Error is the domain's error: a stable code, a message fit for the caller,
// and optional structured details.
type Error struct {
	Code    string `json:"code"`
	Message string `json:"message"`
	Details any    `json:"details,omitempty"`
}

func (e *Error) Error() string { return e.Code + ": " + e.Message }

// Errorf returns an *Error with the given code and formatted message.
func Errorf(code, format string, args ...any) *Error {
	return &Error{Code: code, Message: fmt.Sprintf(format, args...)}
}

// ErrorCode returns the code of the first *Error in err's chain, EInternal
// for any other non-nil error and "" for nil.
func ErrorCode(err error) string {
	if err == nil {
		return ""
	}
	var e *Error
	if errors.As(err, &e) {
		return e.Code
	}
	return EInternal
}

// ErrorMessage returns the caller-facing message of err: the *Error's
// message, or "internal error" for anything else.
func ErrorMessage(err error) string {
	var e *Error
	if errors.As(err, &e) {
		return e.Message
	}
	return "internal error"
}
