package httpapi_test

import (
	"bytes"
	"encoding/json"
	"fmt"
	"net/http"
	"strings"
	"testing"

	"github.com/brightrun/brightrun/shared/api"
	"github.com/brightrun/brightrun/shared/httpapi"
	"github.com/brightrun/brightrun/shared/pipeline"
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

// JSON Schema calls a number with a zero fraction an integer (34.0, 3.4e1),
// so every integer field of the document accepts one; a true fraction, or
// a whole number beyond any bound, is still refused.
func TestIntegerFieldsAcceptWholeNumbersWrittenWithAFraction(t *testing.T) {
	a := newTestAPI(t, httpapi.Config{})
	a.readyDataset("alice", "ds_ready", pipeline.DatasetReady)
	tests := []struct {
		name, path, body string
		status           int
		message          string
	}{
		{"size_bytes 34.0", "/v1/datasets", `{"name":"x","size_bytes":34.0}`, 201, ""},
		{"size_bytes 3.4e1", "/v1/datasets", `{"name":"x","size_bytes":3.4e1}`, 201, ""},
		{"size_bytes 340E-1", "/v1/datasets", `{"name":"x","size_bytes":340E-1}`, 201, ""},
		{"size_bytes 1e2", "/v1/datasets", `{"name":"x","size_bytes":1e2}`, 201, ""},
		{"size_bytes 0.034e3", "/v1/datasets", `{"name":"x","size_bytes":0.034e3}`, 201, ""},
		{"size_bytes -0.0", "/v1/datasets", `{"name":"x","size_bytes":-0.0}`, 400, "at least 1"},
		{"size_bytes 34.5", "/v1/datasets", `{"name":"x","size_bytes":34.5}`, 400, "size_bytes must be an integer"},
		{"size_bytes 1e-3", "/v1/datasets", `{"name":"x","size_bytes":1e-3}`, 400, "size_bytes must be an integer"},
		{"size_bytes 5.368709121e9", "/v1/datasets", `{"name":"x","size_bytes":5.368709121e9}`, 413, "5 GiB"},
		{"size_bytes beyond int64", "/v1/datasets", `{"name":"x","size_bytes":99999999999999999999.0}`, 400, "size_bytes"},
		{"size_bytes 1e400", "/v1/datasets", `{"name":"x","size_bytes":1e400}`, 400, "size_bytes"},
		{"a number inside a string stays a string", "/v1/datasets", `{"name":"34.0","size_bytes":"34.0"}`, 400, "size_bytes must be an integer"},
		{"hyperparameters written with fractions", "/v1/estimates",
			`{"dataset_id":"ds_ready","hyperparameters":{"epochs":2.0,"batch_size":4.0,"gradient_accumulation":2e0,"lora_rank":1.6e1,"lora_alpha":32.00,"max_seq_length":2048.0}}`, 200, ""},
		{"a fractional epoch count", "/v1/estimates", `{"dataset_id":"ds_ready","hyperparameters":{"epochs":2.5}}`, 400, "field hyperparameters.epochs must be an integer"},
		{"a job's lora_rank 10.0", "/v1/jobs", `{"dataset_id":"ds_ready","hyperparameters":{"lora_rank":10.0},"budget_usd":1000.0}`, 201, ""},
		{"a job's fractional lora_rank names the field as sent", "/v1/jobs", `{"dataset_id":"ds_ready","hyperparameters":{"lora_rank":10.5}}`, 400, "field hyperparameters.lora_rank must be an integer"},
		{"a job's lora_rank beyond int64", "/v1/jobs", `{"dataset_id":"ds_ready","hyperparameters":{"lora_rank":99999999999999999999}}`, 400, "hyperparameters.lora_rank is out of range"},
		{"a part number 1.0", "/v1/datasets/ds_ready/complete", `{"parts":[{"part_number":1.0,"etag":"x"}]}`, 409, "no multipart upload"},
		{"a fractional part number", "/v1/datasets/ds_ready/complete", `{"parts":[{"part_number":1.5,"etag":"x"}]}`, 400, "part_number must be an integer"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var e api.ErrorBody
			status := a.call("POST", tt.path, "alice-token", tt.body, &e)
			if status != tt.status || !strings.Contains(e.Error.Message, tt.message) {
				t.Errorf("POST %s %s = %d %q, want %d and a message containing %q", tt.path, tt.body, status, e.Error.Message, tt.status, tt.message)
			}
		})
	}
}

// Only numbers are rewritten: the text of strings, escaped quotes
// included, reaches the handler as sent.
func TestWholeNumbersLeaveStringsAlone(t *testing.T) {
	a := newTestAPI(t, httpapi.Config{})
	for _, name := range []string{`34.0`, `a "1.0" 2.0`, `-0.0 and 1e2`, `"quoted" 5.0e0`} {
		body, _ := json.Marshal(map[string]any{"name": name, "size_bytes": json.Number("2.0")})
		var c created
		if status := a.call("POST", "/v1/datasets", "alice-token", string(body), &c); status != 201 || c.Dataset.Name != name || c.Dataset.SizeBytes != 2 {
			t.Errorf("POST /v1/datasets %s = %d, name %q, size %d; want 201, the name as sent and size 2", body, status, c.Dataset.Name, c.Dataset.SizeBytes)
		}
	}
}

// Names follow the document's Name pattern: code points newer than the
// server's Unicode tables are allowed (the document cannot know which are
// unassigned), controls, invisible format characters and private-use ones
// are not.
func TestNamesFollowTheDocumentedPattern(t *testing.T) {
	a := newTestAPI(t, httpapi.Config{})
	tests := []struct {
		name   string
		status int
	}{
		{"emoji \U0001FAE9 of Unicode 16", 201},
		{"unassigned \u0378 code point", 201},
		{"Tidewell café 日本語", 201},
		{"private use \uE000", 400},
		{"bidi \u202Eoverride", 400},
		{"zero\u200Bwidth", 400},
		{"no\u00A0break", 400},
		{"line\u2028separator", 400},
		{"tag \U000E0041", 400},
		{"noncharacter \uFFFE", 400},
		{"noncharacter \U0010FFFF", 400},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			body, _ := json.Marshal(map[string]any{"name": tt.name, "size_bytes": 1})
			if status := a.call("POST", "/v1/datasets", "alice-token", string(body), nil); status != tt.status {
				t.Errorf("POST /v1/datasets %s = %d, want %d", body, status, tt.status)
			}
		})
	}
}

// A completion's parts list is checked against the document (1 to 100
// parts, numbers 1 to 10000, ETags of printable ASCII): what breaks it is
// refused with 400, and a well-formed list that does not match what was
// uploaded is a conflict (409), never a 400 the document does not explain.
// Order does not matter.
func TestCompleteUploadFollowsTheDocument(t *testing.T) {
	a := newTestAPI(t, httpapi.Config{MultipartThreshold: 6 << 20, PartSize: 5 << 20})
	size := 12<<20 + 17
	var c created
	if status := a.call("POST", "/v1/datasets", "alice-token", fmt.Sprintf(`{"name":"big","size_bytes":%d}`, size), &c); status != 201 {
		t.Fatalf("POST /v1/datasets = %d, want 201", status)
	}
	data := bytes.Repeat([]byte("0123456789abcdef"), size/16+1)[:size]
	var etags []string
	off := int64(0)
	for _, p := range c.Upload.Parts[:2] { // the third part is never uploaded
		status, etag := a.put(p.SignedRequest, data[off:off+p.SizeBytes])
		if status != 200 {
			t.Fatalf("PUT part %d = %d, want 200", p.PartNumber, status)
		}
		off += p.SizeBytes
		etags = append(etags, etag)
	}
	part := func(n int, etag string) string { return fmt.Sprintf(`{"part_number":%d,"etag":%q}`, n, etag) }
	parts := func(p ...string) string { return `{"parts":[` + strings.Join(p, ",") + `]}` }
	many := make([]string, 1025)
	for i := range many {
		many[i] = part(i+1, "e")
	}
	tests := []struct {
		name, body string
		status     int
		message    string
	}{
		{"no parts", parts(), 400, "1 to 1024 parts"},
		{"1025 parts", parts(many...), 400, "1 to 1024 parts"},
		{"part number 0", parts(part(0, etags[0])), 400, "part_number must be 1 to 10000"},
		{"part number 10001", parts(part(10001, etags[0])), 400, "part_number must be 1 to 10000"},
		{"an ETag with a space", parts(part(1, "a b")), 400, "printable ASCII"},
		{"a non-ASCII ETag", parts(part(1, "é")), 400, "printable ASCII"},
		{"an ETag of 129 characters", parts(part(1, strings.Repeat("e", 129))), 400, "1 to 128"},
		{"a part never uploaded", parts(part(1, etags[0]), part(2, etags[1]), part(3, "x")), 409, "part 3 was not uploaded"},
		{"another ETag", parts(part(1, etags[0]), part(2, `"0123"`)), 409, "does not match"},
		{"one part with two ETags", parts(part(1, etags[0]), part(1, `"other"`)), 409, "two ETags"},
	}
	for _, tt := range tests {
		t.Run("refuses "+tt.name, func(t *testing.T) {
			var e api.ErrorBody
			status := a.call("POST", "/v1/datasets/"+c.Dataset.ID+"/complete", "alice-token", tt.body, &e)
			if status != tt.status || !strings.Contains(e.Error.Message, tt.message) {
				t.Errorf("complete %.80s = %d %q, want %d and a message containing %q", tt.body, status, e.Error.Message, tt.status, tt.message)
			}
		})
	}
	// The first two parts, out of order and one listed twice, make the file
	// when they are all there is: the last part may be small.
	body := parts(part(2, etags[1]), part(1, etags[0]), part(2, etags[1]))
	if status := a.call("POST", "/v1/datasets/"+c.Dataset.ID+"/complete", "alice-token", body, nil); status != 200 {
		t.Errorf("complete %s = %d, want 200", body, status)
	}
	// A retry is answered as the first time, but only a well-formed one.
	if status := a.call("POST", "/v1/datasets/"+c.Dataset.ID+"/complete", "alice-token", body, nil); status != 200 {
		t.Errorf("completing again = %d, want 200", status)
	}
	if status := a.call("POST", "/v1/datasets/"+c.Dataset.ID+"/complete", "alice-token", parts(many...), nil); status != 400 {
		t.Errorf("completing again with 101 parts = %d, want 400", status)
	}
}

// No field of the document's request bodies is nullable or an empty
// string: either is refused with its path, where Go alone would take it for
// an absent field (no digest, the default model) and so skip what the
// caller meant to ask for.
func TestNullsAndEmptyStringsAreRefusedWithTheirField(t *testing.T) {
	a := newTestAPI(t, httpapi.Config{})
	a.readyDataset("alice", "ds_ready", pipeline.DatasetReady)
	tests := []struct {
		name, path, body, field string
	}{
		{"a null sha256", "/v1/datasets", `{"name":"x","size_bytes":10,"sha256":null}`, "sha256"},
		{"a null preset", "/v1/estimates", `{"dataset_id":"ds_ready","preset":null}`, "preset"},
		{"a null hyperparameter", "/v1/estimates", `{"dataset_id":"ds_ready","hyperparameters":{"epochs":2,"lora_rank":null}}`, "hyperparameters.lora_rank"},
		{"null hyperparameters", "/v1/jobs", `{"dataset_id":"ds_ready","hyperparameters":null}`, "hyperparameters"},
		{"a null budget", "/v1/jobs", `{"dataset_id":"ds_ready","budget_usd":null}`, "budget_usd"},
		{"a null job name", "/v1/jobs", `{"dataset_id":"ds_ready","name":null}`, "name"},
		{"a null part", "/v1/datasets/ds_ready/complete", `{"parts":[{"part_number":1,"etag":"x"},null]}`, "parts[1]"},
		{"a null ETag", "/v1/datasets/ds_ready/complete", `{"parts":[{"part_number":1,"etag":null}]}`, "parts[0].etag"},
		{"an empty base_model", "/v1/estimates", `{"dataset_id":"ds_ready","base_model":""}`, "base_model"},
		{"an empty gpu_type", "/v1/estimates", `{"dataset_id":"ds_ready","gpu_type":""}`, "gpu_type"},
		{"an empty preset", "/v1/jobs", `{"dataset_id":"ds_ready","preset":""}`, "preset"},
		{"an empty job name", "/v1/jobs", `{"dataset_id":"ds_ready","name":""}`, "name"},
		{"an empty dataset_id", "/v1/jobs", `{"dataset_id":""}`, "dataset_id"},
		{"an empty dataset name", "/v1/datasets", `{"name":"","size_bytes":1}`, "name"},
		{"an empty ETag", "/v1/datasets/ds_ready/complete", `{"parts":[{"part_number":1,"etag":""}]}`, "parts[0].etag"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var e api.ErrorBody
			status := a.call("POST", tt.path, "alice-token", tt.body, &e)
			if want := "field " + tt.field + " is "; status != 400 || !strings.Contains(e.Error.Message, want) {
				t.Errorf("POST %s %s = %d %q, want 400 and %q", tt.path, tt.body, status, e.Error.Message, want)
			}
		})
	}
	var e api.ErrorBody
	if status := a.call("POST", "/v1/datasets", "alice-token", "null", &e); status != 400 || !strings.Contains(e.Error.Message, "JSON object") {
		t.Errorf("POST /v1/datasets null = %d %q, want 400 asking for a JSON object", status, e.Error.Message)
	}
}

// Query parameters of the list routes agree with the document: an empty
// cursor is the first page (the document allows it), while an empty limit
// or status is no integer and no status (the document refuses them), and
// a cursor the list did not return is the documented 400.
func TestListQueriesFollowTheDocument(t *testing.T) {
	a := newTestAPI(t, httpapi.Config{})
	doc := openAPI(t)
	cursor := doc.Components.Parameters["Cursor"].Value.Schema.Value
	limit := doc.Components.Parameters["Limit"].Value.Schema.Value
	if err := cursor.VisitJSON(""); err != nil {
		t.Errorf("the document refuses an empty cursor (%v); the server takes it for the first page", err)
	}
	if err := limit.VisitJSON(""); err == nil {
		t.Errorf("the document accepts an empty limit; the server refuses it")
	}
	for i := range 3 {
		a.readyDataset("alice", fmt.Sprintf("ds_%d", i), pipeline.DatasetReady)
	}
	var first struct {
		NextCursor string `json:"next_cursor"`
	}
	if status := a.call("GET", "/v1/datasets?limit=1", "alice-token", "", &first); status != 200 || first.NextCursor == "" {
		t.Fatalf("GET /v1/datasets?limit=1 = %d with next_cursor %q, want 200 and a cursor", status, first.NextCursor)
	}
	tests := []struct {
		query   string
		status  int
		message string
	}{
		{"cursor=", 200, ""},
		{"cursor=&limit=2", 200, ""},
		{"cursor=" + first.NextCursor, 200, ""},
		{"limit=", 400, "limit must be an integer"},
		{"limit=&cursor=", 400, "limit must be an integer"},
		{"limit=0", 400, "limit must be an integer"},
		{"cursor=bm90LW91cnM", 400, "cursor is not one this list returned"},
	}
	for _, tt := range tests {
		for _, route := range []string{"/v1/datasets", "/v1/jobs", "/v1/notifications"} {
			if strings.Contains(tt.query, first.NextCursor) && route != "/v1/datasets" {
				continue // the cursor is the dataset list's
			}
			t.Run(route+"?"+tt.query, func(t *testing.T) {
				var e api.ErrorBody
				status := a.call("GET", route+"?"+tt.query, "alice-token", "", &e)
				if status != tt.status || !strings.Contains(e.Error.Message, tt.message) {
					t.Errorf("GET %s?%s = %d %q, want %d and a message containing %q", route, tt.query, status, e.Error.Message, tt.status, tt.message)
				}
			})
		}
	}
	for _, query := range []string{"status=", "status=&limit=1"} {
		if status := a.call("GET", "/v1/jobs?"+query, "alice-token", "", nil); status != 400 {
			t.Errorf("GET /v1/jobs?%s = %d, want 400: an empty status is no job status", query, status)
		}
	}
}

// The Idempotency-Key header, when sent, is 1 to 255 printable ASCII
// characters, as the document says: sent empty it is refused, where it was
// taken for no key and a retry made a second job.
func TestAnEmptyIdempotencyKeyIsRefused(t *testing.T) {
	a := newTestAPI(t, httpapi.Config{})
	a.readyDataset("alice", "ds_ready", pipeline.DatasetReady)
	tests := []struct {
		name   string
		header http.Header
		status int
	}{
		{"no header", http.Header{}, 201},
		{"a key", http.Header{"Idempotency-Key": {"run-1"}}, 201},
		{"an empty key", http.Header{"Idempotency-Key": {""}}, 400},
		{"a key of 256 characters", http.Header{"Idempotency-Key": {strings.Repeat("k", 256)}}, 400},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			req, _ := http.NewRequest("POST", a.srv.URL+"/v1/jobs", strings.NewReader(`{"dataset_id":"ds_ready"}`))
			req.Header = tt.header.Clone()
			req.Header.Set("Authorization", "Bearer alice-token")
			resp, err := a.srv.Client().Do(req)
			if err != nil {
				t.Fatal(err)
			}
			resp.Body.Close()
			if resp.StatusCode != tt.status {
				t.Errorf("POST /v1/jobs with %v = %d, want %d", tt.header, resp.StatusCode, tt.status)
			}
		})
	}
}
