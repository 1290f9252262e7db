package httpapi_test

import (
	"strings"
	"testing"

	"github.com/brightrun/brightrun/shared/api"
	"github.com/brightrun/brightrun/shared/httpapi"
)

// The drifts between the OpenAPI document and the server that Schemathesis
// found (tools/schemathesis), each held here on its own so that a change to
// either side fails a plain Go test first.

// The document forbids an empty sha256 (a digest is 64 hex digits, or left
// out): the server refuses one instead of taking it for "no digest", which
// would skip the integrity check the caller asked for.
func TestCreateDatasetRefusesAnEmptySHA256(t *testing.T) {
	a := newTestAPI(t, httpapi.Config{})
	sum := strings.Repeat("ab", 32)
	tests := []struct {
		name, sha256 string // sha256 is the JSON value, or "" to leave it out
		status       int
	}{
		{"no sha256 at all", "", 201},
		{"a lower-case digest", `"` + sum + `"`, 201},
		{"an upper-case digest", `"` + strings.ToUpper(sum) + `"`, 201},
		{"an empty sha256", `""`, 400},
		{"a blank sha256", `" "`, 400},
		{"a digest one digit short", `"` + sum[1:] + `"`, 400},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			body := `{"name":"x","size_bytes":10`
			if tt.sha256 != "" {
				body += `,"sha256":` + tt.sha256
			}
			body += "}"
			var e api.ErrorBody
			if status := a.call("POST", "/v1/datasets", "alice-token", body, &e); status != tt.status {
				t.Errorf("POST /v1/datasets %s = %d %q, want %d", body, status, e.Error.Message, tt.status)
			}
		})
	}
}
