package httpapi_test

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"maps"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"sort"
	"strconv"
	"strings"
	"testing"
	"time"
	"unicode"
	"unicode/utf16"
	"unicode/utf8"

	"github.com/brightrun/brightrun/shared/api"

	"github.com/brightrun/brightrun/shared/chat"
	"github.com/brightrun/brightrun/shared/contract"
	"github.com/brightrun/brightrun/shared/httpapi"
	"github.com/brightrun/brightrun/shared/ingest"
	"github.com/brightrun/brightrun/shared/pipeline"
	"github.com/getkin/kin-openapi/openapi3"
	"github.com/getkin/kin-openapi/openapi3filter"
	"github.com/getkin/kin-openapi/routers"
	"github.com/getkin/kin-openapi/routers/legacy"
)

// openAPI loads the embedded document and validates it.
func openAPI(t *testing.T) *openapi3.T {
	t.Helper()
	loader := openapi3.NewLoader()
	doc, err := loader.LoadFromData(httpapi.OpenAPIDocument)
	if err != nil {
		t.Fatalf("load the OpenAPI document: %v", err)
	}
	if err := doc.Validate(loader.Context); err != nil {
		t.Fatalf("the OpenAPI document is invalid: %v", err)
	}
	return doc
}

// documented lists the document's operations as "METHOD /path" → operationId.
func documented(doc *openapi3.T) map[string]string {
	out := map[string]string{}
	for path, item := range doc.Paths.Map() {
		for method, op := range item.Operations() {
			out[method+" "+path] = op.OperationID
		}
	}
	return out
}

// served lists what Handler serves: every route of Routes() and /healthz.
func served() map[string]bool {
	out := map[string]bool{"GET /healthz": true}
	for _, rt := range (&httpapi.Server{}).Routes() {
		out[rt.Method+" "+rt.Path] = true
	}
	return out
}

// notYetRouted is documented before Routes() serves it: the route is added
// to routes.go apart from the document.
const notYetRouted = "GET /openapi.json"

func TestOpenAPIDocumentIsValid(t *testing.T) {
	doc := openAPI(t)
	if doc.OpenAPI != "3.1.0" {
		t.Errorf("openapi = %q, want 3.1.0", doc.OpenAPI)
	}
	if s := doc.Components.SecuritySchemes["bearerAuth"]; s == nil || s.Value.Type != "http" || s.Value.Scheme != "bearer" {
		t.Errorf("securitySchemes.bearerAuth = %+v, want http bearer", s)
	}
	if len(doc.Security) != 1 || doc.Security[0]["bearerAuth"] == nil {
		t.Errorf("security = %v, want bearerAuth on every operation that does not say otherwise", doc.Security)
	}
	ids := map[string]string{}
	for key, id := range documented(doc) {
		method, path, _ := strings.Cut(key, " ")
		op := doc.Paths.Value(path).GetOperation(method)
		t.Run(key, func(t *testing.T) {
			if id == "" || op.Summary == "" || op.Description == "" {
				t.Errorf("operationId %q, summary %q, description %q: want all three", id, op.Summary, op.Description)
			}
			if other, dup := ids[id]; dup {
				t.Errorf("operationId %q is also %s's", id, other)
			}
			ids[id] = key
			public := path == "/healthz" || path == "/openapi.json" || strings.HasPrefix(path, "/v1/callbacks/")
			if security := op.Security; public != (security != nil && len(*security) == 0) {
				t.Errorf("security = %v; want none exactly on /healthz, /openapi.json and the callbacks", security)
			}
			if r := op.Responses.Status(401); !public && (r == nil || r.Value.Headers["WWW-Authenticate"] == nil) {
				t.Errorf("401 answer without its WWW-Authenticate header")
			}
			for status, r := range op.Responses.Map() {
				if status >= "400" {
					mt := r.Value.Content.Get("application/json")
					if mt == nil || mt.Schema.Value.Properties["error"] == nil || !slices.Contains(mt.Schema.Value.Required, "error") {
						t.Errorf("the %s answer is not in the error shape", status)
					}
				}
			}
		})
	}
}

// The callback body's schema is the worker contract's: every fixture
// passes it, and each payload requires what the contract requires.
func TestOpenAPICallbackSchemaIsTheContract(t *testing.T) {
	doc := openAPI(t)
	schema := doc.Components.Schemas["WorkerCallback"].Value
	fixtures, _ := filepath.Glob("../../testdata/contracts/callback.*.json")
	for _, name := range fixtures {
		if strings.HasSuffix(name, ".schema.json") {
			continue
		}
		var v any
		if err := json.Unmarshal(readFile(t, name), &v); err != nil {
			t.Fatal(err)
		}
		if err := schema.VisitJSON(v, openapi3.EnableJSONSchema2020()); err != nil {
			t.Errorf("%s does not pass WorkerCallback: %v", filepath.Base(name), err)
		}
		m := v.(map[string]any)
		delete(m["data"].(map[string]any), firstRequired(doc, m["type"].(string)))
		if err := schema.VisitJSON(v, openapi3.EnableJSONSchema2020()); err == nil {
			t.Errorf("%s without a required data property passes WorkerCallback, want an error", filepath.Base(name))
		}
	}
	if len(fixtures) < 6 {
		t.Errorf("found %d callback fixtures, want one per type", len(fixtures))
	}
	var c struct {
		Defs map[string]struct {
			Required   []string       `json:"required"`
			Properties map[string]any `json:"properties"`
		} `json:"$defs"`
	}
	if err := json.Unmarshal(readFile(t, "../../testdata/contracts/callback.v1.schema.json"), &c); err != nil {
		t.Fatal(err)
	}
	for typ, def := range c.Defs {
		got := doc.Components.Schemas[callbackData(typ)]
		if got == nil {
			t.Errorf("no %s schema for the contract's %s callback", callbackData(typ), typ)
			continue
		}
		gotProps, props := slices.Sorted(maps.Keys(got.Value.Properties)), slices.Sorted(maps.Keys(def.Properties))
		if !sameSet(got.Value.Required, def.Required) || !sameSet(gotProps, props) {
			t.Errorf("%s requires %v of %v, the contract %v of %v", callbackData(typ), got.Value.Required, gotProps, def.Required, props)
		}
	}
}

func callbackData(typ string) string { return "Callback" + strings.ToUpper(typ[:1]) + typ[1:] }

func firstRequired(doc *openapi3.T, typ string) string {
	return doc.Components.Schemas[callbackData(typ)].Value.Required[0]
}

func sameSet(a, b []string) bool {
	return fmt.Sprint(slices.Sorted(slices.Values(a))) == fmt.Sprint(slices.Sorted(slices.Values(b)))
}

func readFile(t testing.TB, name string) []byte {
	t.Helper()
	data, err := os.ReadFile(name)
	if err != nil {
		t.Fatal(err)
	}
	return data
}

// Every route is documented with its method and path, and every documented
// operation is served.
func TestOpenAPIMatchesRoutes(t *testing.T) {
	docOps := documented(openAPI(t))
	routes := served()
	for route := range routes {
		if _, ok := docOps[route]; !ok {
			t.Errorf("%s is served but not documented", route)
		}
	}
	for op := range docOps {
		if !routes[op] && op != notYetRouted {
			t.Errorf("%s is documented but not served", op)
		}
	}
}

// exchange is one request to the API and what the test expects of it.
type exchange struct {
	method, path string // path with its query
	token        string // bearer token, none when ""
	header       http.Header
	body         string
	status       int
	// badRequest says the document refuses the request too, as the
	// handler does with its 4xx.
	badRequest bool
}

// contractTest drives the API and validates every request and response
// against the document.
type contractTest struct {
	*testAPI
	doc    *openapi3.T
	router routers.Router
	h      http.Handler
	hit    map[string]bool
}

func newContractTest(t *testing.T) *contractTest {
	t.Helper()
	doc := openAPI(t)
	router, err := legacy.NewRouter(doc)
	if err != nil {
		t.Fatal(err)
	}
	a := newTestAPI(t, httpapi.Config{MultipartThreshold: 6 << 20, PartSize: 5 << 20})
	a.api.CallbackSecret = master
	h := a.api.Handler()
	if !served()[notYetRouted] {
		// Until routes.go serves the document, serve it as its handler
		// will, so that its operation is checked all the same.
		mux := http.NewServeMux()
		mux.HandleFunc(notYetRouted, func(w http.ResponseWriter, r *http.Request) {
			w.Header().Set("Content-Type", "application/json")
			_, _ = w.Write(httpapi.OpenAPIDocument)
		})
		mux.Handle("/", h)
		h = mux
	}
	return &contractTest{testAPI: a, doc: doc, router: router, h: h, hit: map[string]bool{}}
}

// statusCodes are the error codes each status may carry.
var statusCodes = map[int][]string{
	400: {pipeline.EInvalid}, 422: {pipeline.EInvalid}, 401: {pipeline.EUnauthorized}, 404: {pipeline.ENotFound}, 410: {pipeline.ENotFound},
	409: {pipeline.EConflict, pipeline.EPrecondition}, 413: {pipeline.ETooLarge},
	500: {pipeline.EInternal}, 503: {pipeline.EUnavailable},
}

// localStack is the document's server the requests are addressed to.
const localStack = "http://127.0.0.1:8080"

func (c *contractTest) request(x exchange) *http.Request {
	r := httptest.NewRequest(x.method, localStack+x.path, strings.NewReader(x.body))
	if x.body != "" {
		r.Header.Set("Content-Type", "application/json")
	}
	if x.token != "" {
		r.Header.Set("Authorization", "Bearer "+x.token)
	}
	for k, v := range x.header {
		r.Header[k] = v
	}
	return r
}

// do validates x's request, serves it, checks the status and validates the
// response; it decodes the body into out when out is not nil.
func (c *contractTest) do(x exchange, out any) *httptest.ResponseRecorder {
	c.Helper()
	name := x.method + " " + x.path
	if len(name) > 90 {
		name = name[:90] + "…"
	}
	opts := &openapi3filter.Options{AuthenticationFunc: openapi3filter.NoopAuthenticationFunc, IncludeResponseStatus: true}
	req := c.request(x)
	route, params, err := c.router.FindRoute(req)
	if err != nil {
		c.Fatalf("%s: no documented operation: %v", name, err)
	}
	c.hit[route.Operation.OperationID] = true
	in := &openapi3filter.RequestValidationInput{Request: req, PathParams: params, Route: route, Options: opts}
	reqErr := openapi3filter.ValidateRequest(context.Background(), in)
	switch {
	case x.badRequest && reqErr == nil:
		c.Errorf("%s: the document accepts this request, want it refused (the handler refuses it)", name)
	case !x.badRequest && reqErr != nil:
		c.Errorf("%s: the document refuses this request: %v", name, reqErr)
	}

	rec := httptest.NewRecorder()
	c.h.ServeHTTP(rec, c.request(x))
	if rec.Code != x.status {
		c.Errorf("%s = %d %s, want %d", name, rec.Code, clip(rec.Body.String()), x.status)
	}
	res := &openapi3filter.ResponseValidationInput{RequestValidationInput: in, Status: rec.Code, Header: rec.Header(), Options: opts}
	res.SetBodyBytes(rec.Body.Bytes())
	if err := openapi3filter.ValidateResponse(context.Background(), res); err != nil {
		c.Errorf("%s: the %d answer does not match the document: %v\nbody: %s", name, rec.Code, err, clip(rec.Body.String()))
	}
	if rec.Code >= 400 {
		var e api.ErrorBody
		_ = json.Unmarshal(rec.Body.Bytes(), &e)
		if !slices.Contains(statusCodes[rec.Code], e.Error.Code) {
			c.Errorf("%s: status %d with code %q, want one of %v", name, rec.Code, e.Error.Code, statusCodes[rec.Code])
		}
	}
	if out != nil {
		if err := json.Unmarshal(rec.Body.Bytes(), out); err != nil {
			c.Fatalf("%s: decode %s: %v", name, clip(rec.Body.String()), err)
		}
	}
	return rec
}

func clip(s string) string {
	if len(s) > 600 {
		return s[:600] + "…"
	}
	return s
}

// upload creates a dataset of alice's holding content, uploads it with its
// presigned PUT and validates it as the validate function would.
func (c *contractTest) upload(v *ingest.Validator, name string, content []byte) api.DatasetView {
	c.Helper()
	sum := sha256.Sum256(content)
	var cr created
	c.do(exchange{method: "POST", path: "/v1/datasets", token: "alice-token", status: 201,
		body: fmt.Sprintf(`{"name":%q,"size_bytes":%d,"sha256":%q}`, name, len(content), hex.EncodeToString(sum[:]))}, &cr)
	if cr.Upload.Type != "single" || cr.Upload.Request == nil {
		c.Fatalf("upload of %d bytes = %+v, want a single PUT", len(content), cr.Upload)
	}
	if status, _ := c.put(*cr.Upload.Request, content); status != 200 {
		c.Fatalf("PUT %s = %d, want 200", name, status)
	}
	key := pipeline.DatasetKey("alice", cr.Dataset.ID)
	info, err := c.blobs.Stat(context.Background(), key)
	if err != nil {
		c.Fatal(err)
	}
	if err := v.ValidateObject(context.Background(), info); err != nil {
		c.Fatal(err)
	}
	return cr.Dataset
}

// signed is a worker callback with its signature headers.
func signed(owner, job string, attempt int, seq int64, typ contract.CallbackType, data string) (string, http.Header) {
	body := fmt.Sprintf(`{"version":1,"type":%q,"job_id":%q,"attempt":%d,"seq":%d,"sent_at":%q,"data":%s}`,
		typ, job, attempt, seq, time.Now().UTC().Format(time.RFC3339Nano), data)
	return body, contract.SignedHeaders(contract.DeriveSecret(master, job), contract.WebhookID(job, attempt, seq), time.Now(), []byte(body))
}

// workerURL is the path and query of owner's callback URL.
func workerURL(owner string) string { return pipeline.WorkerCallbackURL("", owner) }

// workerCallback posts a signed callback of alice's job and returns the answer.
func (c *contractTest) workerCallback(job string, attempt int, seq int64, typ contract.CallbackType, data string, status int) api.CallbackAnswer {
	c.Helper()
	body, h := signed("alice", job, attempt, seq, typ, data)
	var ans api.CallbackAnswer
	c.do(exchange{method: "POST", path: workerURL("alice"), header: h, body: body, status: status}, &ans)
	return ans
}

// dispatch moves a queued job to submitted on its next attempt, as the
// dispatcher does.
func (c *contractTest) dispatch(id string) {
	c.Helper()
	ctx := context.Background()
	if _, err := pipeline.TransitionJob(ctx, c.store, "alice", id, pipeline.JobDispatching, func(j *pipeline.Job) error {
		j.Attempt++
		return nil
	}); err != nil {
		c.Fatal(err)
	}
	if _, err := pipeline.TransitionJob(ctx, c.store, "alice", id, pipeline.JobSubmitted, func(j *pipeline.Job) error {
		j.RunPodID = fmt.Sprintf("rp-%s-%d", id, j.Attempt)
		return nil
	}); err != nil {
		c.Fatal(err)
	}
}

// A realistic run through every operation: each request and each answer,
// errors included, must match the document.
func TestOpenAPIDescribesRealExchanges(t *testing.T) {
	c := newContractTest(t)
	counter, err := chat.Qwen3Counter()
	if err != nil {
		t.Fatal(err)
	}
	validator := &ingest.Validator{Store: c.store, Blobs: c.blobs, Counter: counter, Log: c.api.Log}
	type x = exchange

	// The service.
	var health map[string]string
	c.do(x{method: "GET", path: "/healthz", status: 200}, &health)
	c.do(x{method: "GET", path: "/openapi.json", status: 200}, nil)

	// Authentication.
	c.do(x{method: "GET", path: "/v1/datasets", status: 401}, nil)
	c.do(x{method: "GET", path: "/v1/presets", token: "nope", status: 401}, nil)

	// Datasets: a good one, a bad one, a multipart one, and refusals.
	ready := c.upload(validator, "support chats", readFile(t, "../../testdata/datasets/sample.jsonl"))
	invalid := c.upload(validator, "bad lines", readFile(t, "../../testdata/datasets/bad.jsonl"))
	var d api.DatasetView
	c.do(x{method: "GET", path: "/v1/datasets/" + ready.ID, token: "alice-token", status: 200}, &d)
	if d.Status != pipeline.DatasetReady || d.Validation == nil {
		t.Fatalf("sample.jsonl dataset = %+v, want ready with its validation", d)
	}
	c.do(x{method: "GET", path: "/v1/datasets/" + invalid.ID, token: "alice-token", status: 200}, &d)
	if d.Status != pipeline.DatasetInvalid {
		t.Errorf("bad.jsonl dataset is %s, want invalid", d.Status)
	}
	var report struct{ Issues []map[string]any }
	c.do(x{method: "GET", path: "/v1/datasets/" + ready.ID + "/report", token: "alice-token", status: 200}, &report)
	c.do(x{method: "GET", path: "/v1/datasets/" + invalid.ID + "/report", token: "alice-token", status: 200}, &report)
	if len(report.Issues) < 10 {
		t.Errorf("bad.jsonl report lists %d issues, want every bad line", len(report.Issues))
	}

	var pending created
	c.do(x{method: "POST", path: "/v1/datasets", token: "alice-token", body: `{"name":"never uploaded","size_bytes":10}`, status: 201}, &pending)
	c.do(x{method: "GET", path: "/v1/datasets/" + pending.Dataset.ID + "/report", token: "alice-token", status: 409}, nil)
	c.do(x{method: "POST", path: "/v1/datasets/" + pending.Dataset.ID + "/complete", token: "alice-token",
		body: `{"parts":[{"part_number":1,"etag":"x"}]}`, status: 409}, nil)

	size := 12<<20 + 17
	var big created
	c.do(x{method: "POST", path: "/v1/datasets", token: "alice-token", body: fmt.Sprintf(`{"name":"big","size_bytes":%d}`, size), status: 201}, &big)
	if big.Upload.Type != "multipart" || len(big.Upload.Parts) != 3 {
		t.Fatalf("upload of %d bytes = %+v, want 3 parts", size, big.Upload)
	}
	data := bytes.Repeat([]byte("0123456789abcdef"), size/16+1)[:size]
	var parts []pipeline.CompletedPart
	off := int64(0)
	for _, p := range big.Upload.Parts {
		status, etag := c.put(p.SignedRequest, data[off:off+p.SizeBytes])
		if status != 200 {
			t.Fatalf("PUT part %d = %d, want 200", p.PartNumber, status)
		}
		off += p.SizeBytes
		parts = append(parts, pipeline.CompletedPart{Number: p.PartNumber, ETag: etag})
	}
	complete, _ := json.Marshal(map[string]any{"parts": parts})
	bigPath := "/v1/datasets/" + big.Dataset.ID
	c.do(x{method: "POST", path: bigPath + "/complete", token: "alice-token", body: `{"parts":[]}`, status: 400, badRequest: true}, nil)
	c.do(x{method: "POST", path: bigPath + "/complete", token: "bob-token", body: string(complete), status: 404}, nil)
	c.do(x{method: "POST", path: bigPath + "/complete", token: "alice-token", body: string(complete), status: 200}, nil)
	c.do(x{method: "POST", path: bigPath + "/complete", token: "alice-token", body: string(complete), status: 200}, nil)
	c.do(x{method: "DELETE", path: bigPath, token: "bob-token", status: 404}, nil)
	c.do(x{method: "DELETE", path: bigPath, token: "alice-token", status: 204}, nil)
	c.do(x{method: "GET", path: bigPath, token: "alice-token", status: 404}, nil)
	c.do(x{method: "DELETE", path: bigPath, token: "alice-token", status: 404}, nil)

	// Imports: accepted at once (the copy is left to the starter), and
	// refused by their shape.
	var importsStarted []string
	c.api.Imports = startImportFunc(func(_ context.Context, d *pipeline.Dataset) error {
		importsStarted = append(importsStarted, d.ID)
		return nil
	})
	c.api.Config.ImportS3Prefixes = []pipeline.S3Prefix{{Bucket: "training-files", Prefix: "exports/"}}
	var imported api.DatasetView
	c.do(x{method: "POST", path: "/v1/datasets/import", token: "alice-token", body: `{"source":"https://example.com/chats.jsonl","format":"sharegpt"}`, status: 202}, &imported)
	if imported.Status != pipeline.DatasetImporting || imported.Name != "chats.jsonl" || len(importsStarted) != 1 || importsStarted[0] != imported.ID {
		t.Errorf("import = %+v (started %v), want importing, named after the file, started", imported, importsStarted)
	}
	c.do(x{method: "GET", path: "/v1/datasets/" + imported.ID, token: "alice-token", status: 200}, &d)
	c.do(x{method: "GET", path: "/v1/datasets/" + imported.ID, token: "bob-token", status: 404}, nil)
	c.do(x{method: "GET", path: "/v1/datasets/" + imported.ID + "/report", token: "alice-token", status: 409}, nil)
	c.do(x{method: "POST", path: "/v1/datasets/import", token: "alice-token", body: `{"source":"s3://training-files/exports/a.jsonl","name":"from s3"}`, status: 202}, nil)
	c.do(x{method: "POST", path: "/v1/datasets/import", token: "alice-token", body: `{"source":"s3://training-files/private/a.jsonl"}`, status: 400}, nil)
	c.do(x{method: "POST", path: "/v1/datasets/import", token: "alice-token", body: `{"source":"https://169.254.169.254/latest/meta-data"}`, status: 400}, nil)
	c.do(x{method: "POST", path: "/v1/datasets/import", token: "alice-token", body: `{"name":"no source"}`, status: 400, badRequest: true}, nil)
	c.do(x{method: "DELETE", path: "/v1/datasets/" + imported.ID, token: "alice-token", status: 204}, nil)

	var page struct {
		Datasets   []api.DatasetView
		NextCursor string `json:"next_cursor"`
	}
	c.do(x{method: "GET", path: "/v1/datasets?limit=2", token: "alice-token", status: 200}, &page)
	if len(page.Datasets) != 2 || page.NextCursor == "" {
		t.Errorf("first page = %d datasets, cursor %q; want 2 and a cursor", len(page.Datasets), page.NextCursor)
	}
	c.do(x{method: "GET", path: "/v1/datasets?limit=2&cursor=" + page.NextCursor, token: "alice-token", status: 200}, nil)
	c.do(x{method: "GET", path: "/v1/datasets?limit=0", token: "alice-token", status: 400, badRequest: true}, nil)
	c.do(x{method: "GET", path: "/v1/datasets?limit=101", token: "alice-token", status: 400, badRequest: true}, nil)
	c.do(x{method: "GET", path: "/v1/datasets?cursor=%21%21", token: "alice-token", status: 400}, nil)
	for _, tc := range []struct {
		body   string
		status int
	}{
		{`{"name":"x",`, 400},
		{`{"name":"x","size_bytes":1,"colour":"red"}`, 400},
		{`{"size_bytes":10}`, 400},
		{`{"name":"../etc","size_bytes":10}`, 400},
		{`{"name":"   ","size_bytes":10}`, 400},
		{`{"name":"x","size_bytes":0}`, 400},
		{`{"name":"x","size_bytes":"12"}`, 400},
		{`{"name":"x","size_bytes":1,"sha256":"xyz"}`, 400},
		{`{"name":"x","size_bytes":5368709121}`, 413},
		{`{"name":"` + strings.Repeat("a", httpapi.MaxBodyBytes) + `","size_bytes":10}`, 413},
	} {
		c.do(x{method: "POST", path: "/v1/datasets", token: "alice-token", body: tc.body, status: tc.status, badRequest: true}, nil)
	}
	c.do(x{method: "GET", path: "/v1/datasets/ds_00000000000000000000000000", token: "alice-token", status: 404}, nil)
	c.do(x{method: "GET", path: "/v1/datasets/" + ready.ID, token: "bob-token", status: 404}, nil)

	// The catalog and estimates.
	c.do(x{method: "GET", path: "/v1/presets", token: "alice-token", status: 200}, nil)
	c.do(x{method: "GET", path: "/v1/gpus", token: "alice-token", status: 200}, nil)
	c.do(x{method: "GET", path: "/v1/models", token: "alice-token", status: 200}, nil)
	var est struct {
		Estimate struct {
			CostUSD struct{ Low float64 } `json:"cost_usd"`
		}
	}
	c.do(x{method: "POST", path: "/v1/estimates", token: "alice-token", status: 200,
		body: fmt.Sprintf(`{"dataset_id":%q,"preset":"fast","hyperparameters":{"epochs":2,"lora_rank":16}}`, ready.ID)}, nil)
	c.do(x{method: "POST", path: "/v1/estimates", token: "alice-token", status: 200,
		body: fmt.Sprintf(`{"dataset_id":%q,"gpu_type":"h200-141gb","base_model":%q}`, ready.ID, "Qwen/Qwen3-Next-80B-A3B-Instruct")}, &est)
	for _, tc := range []struct {
		body       string
		status     int
		badRequest bool
	}{
		{fmt.Sprintf(`{"dataset_id":%q,"hyperparameters":{"epochs":50}}`, ready.ID), 400, true},
		{fmt.Sprintf(`{"dataset_id":%q,"hyperparameters":{"epoch":2}}`, ready.ID), 400, true},
		{fmt.Sprintf(`{"dataset_id":%q,"preset":"turbo"}`, ready.ID), 400, true},
		{`{}`, 400, true},
		{fmt.Sprintf(`{"dataset_id":%q,"gpu_type":"tpu-v9"}`, ready.ID), 400, false},
		{`{"dataset_id":"ds_00000000000000000000000000"}`, 404, false},
		{fmt.Sprintf(`{"dataset_id":%q}`, invalid.ID), 409, false},
		{fmt.Sprintf(`{"dataset_id":%q}`, pending.Dataset.ID), 409, false},
	} {
		c.do(x{method: "POST", path: "/v1/estimates", token: "alice-token", body: tc.body, status: tc.status, badRequest: tc.badRequest}, nil)
	}

	// Jobs.
	keyed := func(key string) http.Header { return http.Header{"Idempotency-Key": {key}} }
	jobBody := fmt.Sprintf(`{"dataset_id":%q,"preset":"fast","name":"first run","budget_usd":%.2f}`, ready.ID, est.Estimate.CostUSD.Low*20+1)
	var first, again api.JobView
	c.do(x{method: "POST", path: "/v1/jobs", token: "alice-token", header: keyed("run-1"), body: jobBody, status: 201}, &first)
	rec := c.do(x{method: "POST", path: "/v1/jobs", token: "alice-token", header: keyed("run-1"), body: jobBody, status: 201}, &again)
	if again.ID != first.ID || rec.Header().Get("Idempotent-Replayed") != "true" {
		t.Errorf("a retry answered job %s (Idempotent-Replayed %q), want job %s replayed", again.ID, rec.Header().Get("Idempotent-Replayed"), first.ID)
	}
	c.do(x{method: "POST", path: "/v1/jobs", token: "alice-token", header: keyed("run-1"), status: 409,
		body: fmt.Sprintf(`{"dataset_id":%q,"preset":"quality"}`, ready.ID)}, nil)
	c.do(x{method: "POST", path: "/v1/jobs", token: "alice-token", header: keyed("bad key"), body: jobBody, status: 400, badRequest: true}, nil)
	c.do(x{method: "POST", path: "/v1/jobs", token: "alice-token", status: 400, badRequest: true,
		body: fmt.Sprintf(`{"dataset_id":%q,"budget_usd":-5}`, ready.ID)}, nil)
	c.do(x{method: "POST", path: "/v1/jobs", token: "alice-token", status: 400,
		body: fmt.Sprintf(`{"dataset_id":%q,"budget_usd":0.01}`, ready.ID)}, nil)
	c.do(x{method: "POST", path: "/v1/jobs", token: "alice-token", status: 400, badRequest: true,
		body: fmt.Sprintf(`{"dataset_id":%q,"name":"a\nb"}`, ready.ID)}, nil)
	c.do(x{method: "POST", path: "/v1/jobs", token: "alice-token", body: fmt.Sprintf(`{"dataset_id":%q}`, invalid.ID), status: 409}, nil)
	c.do(x{method: "POST", path: "/v1/jobs", token: "bob-token", body: fmt.Sprintf(`{"dataset_id":%q}`, ready.ID), status: 404}, nil)
	c.do(x{method: "POST", path: "/v1/jobs", token: "alice-token", body: `{"dataset_id":` + strings.Repeat(" ", httpapi.MaxBodyBytes) + `"x"}`,
		status: 413}, nil)
	var queued, cancelling, failing api.JobView
	ds := fmt.Sprintf(`{"dataset_id":%q}`, ready.ID)
	c.do(x{method: "POST", path: "/v1/jobs", token: "alice-token", body: ds, status: 201}, &queued)
	c.do(x{method: "POST", path: "/v1/jobs", token: "alice-token", body: ds, status: 201}, &cancelling)
	c.do(x{method: "POST", path: "/v1/jobs", token: "alice-token", body: ds, status: 201}, &failing)

	var jobs struct {
		Jobs       []api.JobView
		NextCursor string `json:"next_cursor"`
	}
	c.do(x{method: "GET", path: "/v1/jobs", token: "alice-token", status: 200}, &jobs)
	c.do(x{method: "GET", path: "/v1/jobs?status=queued&limit=1", token: "alice-token", status: 200}, &jobs)
	if len(jobs.Jobs) != 1 || jobs.NextCursor == "" {
		t.Errorf("queued jobs, first page = %d jobs, cursor %q; want 1 and a cursor", len(jobs.Jobs), jobs.NextCursor)
	}
	c.do(x{method: "GET", path: "/v1/jobs?status=queued&cursor=" + jobs.NextCursor, token: "alice-token", status: 200}, nil)
	c.do(x{method: "GET", path: "/v1/jobs?status=bogus", token: "alice-token", status: 400, badRequest: true}, nil)
	c.do(x{method: "GET", path: "/v1/jobs/" + first.ID, token: "alice-token", status: 200}, nil)
	c.do(x{method: "GET", path: "/v1/jobs/" + first.ID, token: "bob-token", status: 404}, nil)

	var v api.JobView
	c.do(x{method: "POST", path: "/v1/jobs/" + queued.ID + "/cancel", token: "alice-token", status: 200}, &v)
	c.do(x{method: "POST", path: "/v1/jobs/" + queued.ID + "/cancel", token: "alice-token", status: 200}, &v)
	if v.Status != pipeline.JobCancelled {
		t.Errorf("a cancelled queued job is %s, want cancelled", v.Status)
	}
	c.do(x{method: "POST", path: "/v1/jobs/" + queued.ID + "/cancel", token: "bob-token", status: 404}, nil)
	c.do(x{method: "GET", path: "/v1/jobs/" + queued.ID + "/events", token: "alice-token", status: 200}, nil)

	// Worker callbacks drive the first job to completed on its second attempt.
	c.dispatch(first.ID)
	c.dispatch(first.ID)
	progress := `{"step":%d,"total_steps":100,"epoch":0.5,"loss":%g,"learning_rate":0.0001,"tokens_per_second":900,"gpu_memory_bytes":1000,"eta_seconds":60}`
	started := `{"worker_id":"w1","runpod_job_id":"rp-1","worker_version":"0.1.0","gpu":{"name":"NVIDIA H100 80GB HBM3","memory_bytes":85520809984,"count":1}}`
	c.workerCallback(first.ID, 2, 1, contract.TypeStarted, started, 200)
	c.workerCallback(first.ID, 2, 2, contract.TypeStage, `{"stage":"train"}`, 200)
	c.workerCallback(first.ID, 2, 3, contract.TypeProgress, fmt.Sprintf(progress, 10, 2.0), 200)
	c.workerCallback(first.ID, 2, 4, contract.TypeProgress, fmt.Sprintf(progress, 20, 1.5), 200)
	c.workerCallback(first.ID, 2, 4, contract.TypeProgress, fmt.Sprintf(progress, 20, 1.5), 200)
	c.workerCallback(first.ID, 2, 5, contract.TypeStage, `{"stage":"upload"}`, 200)
	files := map[string]string{"adapter_config.json": `{"r":8}`, "adapter_model.safetensors": strings.Repeat("w", 4096)}
	artifact := func(name string) string {
		sum := sha256.Sum256([]byte(files[name]))
		return fmt.Sprintf(`{"name":%q,"size_bytes":%d,"sha256":%q}`, name, len(files[name]), hex.EncodeToString(sum[:]))
	}
	c.workerCallback(first.ID, 2, 6, contract.TypeArtifact, artifact("adapter_config.json"), 400)
	seq := int64(7)
	for _, name := range []string{"adapter_config.json", "adapter_model.safetensors"} {
		if _, err := c.blobs.Put(context.Background(), pipeline.ArtifactKey("alice", first.ID, 2, name), strings.NewReader(files[name]), int64(len(files[name]))); err != nil {
			t.Fatal(err)
		}
		c.workerCallback(first.ID, 2, seq, contract.TypeArtifact, artifact(name), 200)
		seq++
	}
	// URLs asked for, a checkpoint stored and an evaluation reported: none
	// moves the job, and every answer is the document's.
	c.handsOutURLs()
	c.workerCallback(first.ID, 2, 30, contract.TypeURLs, `{"purpose":"checkpoint_download"}`, 200)
	c.workerCallback(first.ID, 2, 31, contract.TypeURLs, `{"purpose":"artifact","files":[`+artifact("adapter_config.json")+`]}`, 200)
	c.workerCallback(first.ID, 2, 32, contract.TypeURLs, `{"purpose":"artifact","files":[{"name":"model.bin","size_bytes":1}]}`, 422)
	for _, name := range []string{"adapter_config.json", "adapter_model.safetensors"} {
		if _, err := c.blobs.Put(context.Background(), pipeline.CheckpointKey("alice", first.ID, 2, 20, name), strings.NewReader(files[name]), int64(len(files[name]))); err != nil {
			t.Fatal(err)
		}
	}
	c.workerCallback(first.ID, 2, 33, contract.TypeCheckpoint, `{"step":20,"total_steps":100,"epoch":0.2,"position":{"epoch":0,"step_in_epoch":20},"reason":"interval","partial":true,"files":[`+
		artifact("adapter_config.json")+`,`+artifact("adapter_model.safetensors")+`],"train_seconds":12.5,"eval_loss":1.7}`, 200)
	c.workerCallback(first.ID, 2, 34, contract.TypeProgress, `{"step":21,"total_steps":100,"epoch":0.21,"loss":1.4,"learning_rate":0.0001,"tokens_per_second":900,"gpu_memory_bytes":1000,"eval_loss":1.65}`, 200)
	c.workerCallback(first.ID, 2, 35, contract.TypeURLs, `{"purpose":"checkpoint_download","step":20}`, 200)
	c.workerCallback(first.ID, 2, seq, contract.TypeCompleted,
		`{"final_loss":null,"steps":100,"train_seconds":50.5,"tokens_trained":1000,"metrics":{"initial_loss":2.1,"device":"cuda"}}`, 200)
	if ans := c.workerCallback(first.ID, 1, 9, contract.TypeProgress, fmt.Sprintf(progress, 30, 1.0), 409); ans.Action != "stop" {
		t.Errorf("a superseded attempt's callback answered %+v, want stop", ans)
	}

	// Refused callbacks.
	body, h := signed("alice", first.ID, 2, 20, contract.TypeStarted, started)
	c.do(x{method: "POST", path: workerURL("alice"), body: body, status: 401, badRequest: true}, nil)
	forged := h.Clone()
	forged.Set("webhook-signature", "v1,"+strings.Repeat("A", 43)+"=")
	c.do(x{method: "POST", path: workerURL("alice"), header: forged, body: body, status: 401}, nil)
	c.do(x{method: "POST", path: "/v1/callbacks/worker?o=zz", header: h, body: body, status: 401, badRequest: true}, nil)
	c.do(x{method: "POST", path: workerURL("bob"), header: h, body: body, status: 410}, nil)
	otherID := h.Clone()
	otherID.Set("webhook-id", contract.WebhookID(first.ID, 2, 21))
	// Signed at the time the header says (the clock may have passed a
	// second since the original was signed).
	signedAt := time.Now()
	otherID.Set(contract.HeaderTimestamp, strconv.FormatInt(signedAt.Unix(), 10))
	otherID.Set("webhook-signature", contract.Sign(contract.DeriveSecret(master, first.ID), otherID.Get("webhook-id"), signedAt, []byte(body)))
	c.do(x{method: "POST", path: workerURL("alice"), header: otherID, body: body, status: 400}, nil)
	broken, bh := signed("alice", first.ID, 2, 22, contract.TypeProgress, `{"step":0}`)
	c.do(x{method: "POST", path: workerURL("alice"), header: bh, body: broken, status: 400, badRequest: true}, nil)
	huge, hh := signed("alice", first.ID, 2, 23, contract.TypeStarted,
		`{"worker_id":"`+strings.Repeat("w", httpapi.MaxCallbackBytes)+`","runpod_job_id":"rp","worker_version":"1"}`)
	c.do(x{method: "POST", path: workerURL("alice"), header: hh, body: huge, status: 413}, nil)

	// A job cancelled while running, and a job that fails.
	c.dispatch(cancelling.ID)
	c.workerCallback(cancelling.ID, 1, 1, contract.TypeStarted, `{"worker_id":"w2","runpod_job_id":"rp-2","worker_version":"0.1.0","gpu":null}`, 200)
	c.do(x{method: "POST", path: "/v1/jobs/" + cancelling.ID + "/cancel", token: "alice-token", status: 200}, &v)
	if v.Status != pipeline.JobCancelRequested {
		t.Errorf("a cancelled running job is %s, want cancel_requested", v.Status)
	}
	// Not ended yet: it cannot be deleted.
	c.do(x{method: "DELETE", path: "/v1/jobs/" + cancelling.ID, token: "alice-token", status: 409}, nil)
	if ans := c.workerCallback(cancelling.ID, 1, 2, contract.TypeProgress, fmt.Sprintf(progress, 5, 2.2), 200); ans.Action != "stop" {
		t.Errorf("progress of a cancelled job answered %+v, want stop", ans)
	}
	c.workerCallback(cancelling.ID, 1, 3, contract.TypeFailed, `{"code":"cancelled","message":"Stopped as asked.","advice":"Nothing to do."}`, 200)
	c.dispatch(failing.ID)
	c.workerCallback(failing.ID, 1, 1, contract.TypeStage, `{"stage":"load"}`, 200)
	c.workerCallback(failing.ID, 1, 2, contract.TypeFailed,
		`{"code":"oom","message":"The GPU ran out of memory.","advice":"Lower batch_size or lora_rank.","stage":"train"}`, 200)
	c.do(x{method: "GET", path: "/v1/jobs/" + failing.ID, token: "alice-token", status: 200}, &v)
	if v.Status != pipeline.JobFailed || v.Error == nil {
		t.Errorf("the failed job = %s %+v, want failed with its error", v.Status, v.Error)
	}
	// Deleted once it failed, with all that was stored of it.
	c.api.Jobs.Eraser, c.api.Jobs.URLs = c.store, c.blobs
	c.do(x{method: "DELETE", path: "/v1/jobs/" + failing.ID, token: "bob-token", status: 404}, nil)
	c.do(x{method: "DELETE", path: "/v1/jobs/" + failing.ID, token: "alice-token", status: 204}, nil)
	c.do(x{method: "GET", path: "/v1/jobs/" + failing.ID, token: "alice-token", status: 404}, nil)

	// What the callbacks left.
	c.do(x{method: "GET", path: "/v1/jobs/" + first.ID, token: "alice-token", status: 200}, &v)
	if v.Status != pipeline.JobCompleted || v.Cost == nil || v.Progress == nil {
		t.Errorf("the first job = %s (cost %v, progress %v), want completed with its cost and progress", v.Status, v.Cost, v.Progress)
	}
	var events struct {
		Events     []pipeline.Event
		NextCursor string `json:"next_cursor"`
	}
	c.do(x{method: "GET", path: "/v1/jobs/" + first.ID + "/events", token: "alice-token", status: 200}, &events)
	c.do(x{method: "GET", path: "/v1/jobs/" + first.ID + "/events?limit=3", token: "alice-token", status: 200}, &events)
	c.do(x{method: "GET", path: "/v1/jobs/" + first.ID + "/events?limit=3&cursor=" + events.NextCursor, token: "alice-token", status: 200}, nil)
	c.do(x{method: "GET", path: "/v1/jobs/" + first.ID + "/events?limit=1000", token: "alice-token", status: 400, badRequest: true}, nil)
	c.do(x{method: "GET", path: "/v1/jobs/job_00000000000000000000000000/events", token: "alice-token", status: 404}, nil)
	c.do(x{method: "GET", path: "/v1/jobs/" + first.ID + "/metrics", token: "alice-token", status: 200}, nil)
	c.do(x{method: "GET", path: "/v1/jobs/" + first.ID + "/metrics?limit=1", token: "alice-token", status: 200}, nil)
	c.do(x{method: "GET", path: "/v1/jobs/" + first.ID + "/metrics", token: "bob-token", status: 404}, nil)
	var arts struct{ Artifacts []api.ArtifactView }
	c.do(x{method: "GET", path: "/v1/jobs/" + first.ID + "/artifacts", token: "alice-token", status: 200}, &arts)
	if len(arts.Artifacts) != 2 {
		t.Errorf("the first job has %d artifacts, want 2", len(arts.Artifacts))
	}
	c.do(x{method: "GET", path: "/v1/jobs/" + queued.ID + "/artifacts", token: "alice-token", status: 200}, nil)
	c.do(x{method: "GET", path: "/v1/jobs/" + first.ID + "/artifacts", token: "bob-token", status: 404}, nil)
	var notes struct{ Notifications []pipeline.Notification }
	c.do(x{method: "GET", path: "/v1/notifications", token: "alice-token", status: 200}, &notes)
	if len(notes.Notifications) != 2 {
		t.Errorf("alice has %d notifications, want the completed and the failed job's", len(notes.Notifications))
	}
	c.do(x{method: "GET", path: "/v1/notifications?limit=1", token: "alice-token", status: 200}, nil)
	c.do(x{method: "GET", path: "/v1/notifications", token: "bob-token", status: 200}, nil)
	c.do(x{method: "GET", path: "/v1/notifications?limit=x", token: "alice-token", status: 400, badRequest: true}, nil)
	c.do(x{method: "POST", path: "/v1/jobs/" + first.ID + "/cancel", token: "alice-token", status: 200}, &v)
	if v.Status != pipeline.JobCompleted {
		t.Errorf("cancelling a completed job made it %s, want it left completed", v.Status)
	}

	c.webhookExchanges()

	// RunPod's completion webhook.
	runpod := func(token string, status int, badRequest bool) api.CallbackAnswer {
		var ans api.CallbackAnswer
		c.do(x{method: "POST", path: "/v1/callbacks/runpod/" + token, body: `{"id":"rp-1","status":"COMPLETED","executionTime":51234}`,
			status: status, badRequest: badRequest}, &ans)
		return ans
	}
	if ans := runpod(pipeline.WebhookToken(master, "alice", first.ID, 2), 200, false); ans.Action != "continue" {
		t.Errorf("RunPod webhook answered %+v, want continue", ans)
	}
	if ans := runpod(pipeline.WebhookToken(master, "alice", first.ID, 1), 200, false); ans.Action != "stop" {
		t.Errorf("RunPod webhook of a superseded attempt answered %+v, want stop", ans)
	}
	runpod(pipeline.WebhookToken([]byte("another secret"), "alice", first.ID, 2), 401, false)
	runpod("nope", 401, true)
	if ans := runpod(pipeline.WebhookToken(master, "alice", "job_00000000000000000000000000", 1), 200, false); ans.Action != "stop" {
		t.Errorf("RunPod webhook of a deleted job answered %+v, want 200 stop (nothing for RunPod to retry)", ans)
	}

	// Every documented operation was exercised.
	var missed []string
	for key, id := range documented(c.doc) {
		if !c.hit[id] {
			missed = append(missed, key)
		}
	}
	sort.Strings(missed)
	if len(missed) > 0 {
		t.Errorf("operations never exercised: %v", missed)
	}
	t.Logf("exercised %d of %d documented operations", len(c.hit), len(documented(c.doc)))
}

// startImportFunc is an httpapi.ImportStarter.
type startImportFunc func(ctx context.Context, d *pipeline.Dataset) error

func (f startImportFunc) StartImport(ctx context.Context, d *pipeline.Dataset) error {
	return f(ctx, d)
}

// The document's Name pattern and pipeline.ValidateName accept exactly the
// same characters: every code point is tried with both.
func TestOpenAPINamePatternIsValidateName(t *testing.T) {
	schema := openAPI(t).Components.Schemas["Name"].Value
	pattern, err := regexp.Compile(schema.Pattern)
	if err != nil {
		t.Fatalf("Name pattern: %v", err)
	}
	differ := 0
	check := func(name string) {
		t.Helper()
		documented := pattern.MatchString(name) && utf8.RuneCountInString(name) <= int(*schema.MaxLength)
		if served := pipeline.ValidateName("name", name) == nil; documented != served {
			if differ++; differ <= 20 {
				t.Errorf("name %+q: the document accepts it %v, the server %v", name, documented, served)
			}
		}
	}
	defer func() {
		if differ > 20 {
			t.Errorf("and %d more names", differ-20)
		}
	}()
	for r := rune(0); r <= unicode.MaxRune; r++ {
		if utf16.IsSurrogate(r) {
			continue // no string holds one: JSON's "\ud800" decodes as U+FFFD
		}
		check("a" + string(r))
	}
	for _, name := range []string{"", " ", "   ", " a ", "a b", "\u00a0", strings.Repeat("x", 200), strings.Repeat("x", 201), strings.Repeat("é", 200)} {
		check(name)
	}
}

// webhookExchanges drives every webhook operation: an endpoint registered,
// changed, rotated, a delivery made, listed and redelivered, and what
// another owner and bad requests get.
func (c *contractTest) webhookExchanges() {
	c.Helper()
	type x = exchange
	recv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { w.WriteHeader(http.StatusNoContent) }))
	defer recv.Close()
	svc := c.api.Webhooks

	var ep api.WebhookEndpointSecret
	c.do(x{method: "POST", path: "/v1/webhooks", token: "alice-token", status: 201,
		body: fmt.Sprintf(`{"url":%q,"description":"CI trigger","event_types":["job.completed","job.failed"]}`, recv.URL+"/hook")}, &ep)
	if !strings.HasPrefix(ep.Secret, "whsec_") || len(ep.EventTypes) != 2 {
		c.Fatalf("created endpoint = %+v, want its whsec_ secret and 2 event types", ep)
	}
	c.do(x{method: "POST", path: "/v1/webhooks", token: "alice-token", body: `{"url":"https://10.0.0.1/hook"}`, status: 400}, nil)
	c.do(x{method: "POST", path: "/v1/webhooks", token: "alice-token", body: `{"url":"https://hooks.example.com/","event_types":[]}`, status: 400, badRequest: true}, nil)
	c.do(x{method: "POST", path: "/v1/webhooks", token: "alice-token", body: `{"url":"https://hooks.example.com/","event_types":["job.exploded"]}`, status: 400, badRequest: true}, nil)
	c.do(x{method: "POST", path: "/v1/webhooks", body: `{"url":"https://hooks.example.com/"}`, status: 401}, nil)
	var list api.WebhookEndpointList
	c.do(x{method: "GET", path: "/v1/webhooks", token: "alice-token", status: 200}, &list)
	c.do(x{method: "GET", path: "/v1/webhooks?limit=1", token: "alice-token", status: 200}, nil)
	c.do(x{method: "GET", path: "/v1/webhooks?limit=0", token: "alice-token", status: 400, badRequest: true}, nil)
	if len(list.Webhooks) != 1 {
		c.Errorf("alice's endpoints = %d, want 1", len(list.Webhooks))
	}
	c.do(x{method: "GET", path: "/v1/webhooks", token: "bob-token", status: 200}, &list)
	if len(list.Webhooks) != 0 {
		c.Errorf("bob sees %d endpoints, want 0", len(list.Webhooks))
	}
	epPath := "/v1/webhooks/" + ep.ID
	c.do(x{method: "GET", path: epPath, token: "alice-token", status: 200}, nil)
	c.do(x{method: "GET", path: epPath, token: "bob-token", status: 404}, nil)
	c.do(x{method: "PATCH", path: epPath, token: "alice-token", body: `{"description":"CI","event_types":["job.completed"]}`, status: 200}, nil)
	c.do(x{method: "PATCH", path: epPath, token: "alice-token", body: `{"url":"ftp://hooks.example.com/"}`, status: 400}, nil)
	c.do(x{method: "PATCH", path: epPath, token: "alice-token", body: `{"colour":"blue"}`, status: 400, badRequest: true}, nil)
	c.do(x{method: "PATCH", path: epPath, token: "bob-token", body: `{"disabled":true}`, status: 404}, nil)
	var rotated api.WebhookEndpointSecret
	c.do(x{method: "POST", path: epPath + "/rotate", token: "alice-token", status: 200}, &rotated)
	if rotated.Secret == ep.Secret || rotated.PreviousSecretExpiresAt == nil {
		c.Errorf("rotated = %+v, want a new secret and the old one's overlap", rotated)
	}
	c.do(x{method: "POST", path: epPath + "/rotate", token: "alice-token", body: `{"overlap_seconds":60}`, status: 200}, nil)
	c.do(x{method: "POST", path: epPath + "/rotate", token: "alice-token", body: `{"overlap_seconds":-1}`, status: 400, badRequest: true}, nil)
	c.do(x{method: "POST", path: epPath + "/rotate", token: "bob-token", status: 404}, nil)

	// An event, delivered.
	now := time.Now().UTC()
	j := &pipeline.Job{ID: pipeline.NewID("job", now), Owner: "alice", Status: pipeline.JobCompleted, CreatedAt: now, UpdatedAt: now}
	if err := svc.Publish(context.Background(), pipeline.OutboundEvent{Type: pipeline.EventJobCompleted, Owner: "alice", Time: now, Job: j}); err != nil {
		c.Fatal(err)
	}
	if err := svc.Drain(context.Background(), time.Minute); err != nil {
		c.Fatal(err)
	}
	var deliveries api.WebhookDeliveryList
	c.do(x{method: "GET", path: epPath + "/deliveries", token: "alice-token", status: 200}, &deliveries)
	if len(deliveries.Deliveries) != 1 || deliveries.Deliveries[0].Status != pipeline.DeliveryDelivered {
		c.Fatalf("deliveries = %+v, want one delivered", deliveries.Deliveries)
	}
	c.do(x{method: "GET", path: epPath + "/deliveries?limit=1", token: "alice-token", status: 200}, nil)
	c.do(x{method: "GET", path: epPath + "/deliveries", token: "bob-token", status: 404}, nil)
	dPath := epPath + "/deliveries/" + deliveries.Deliveries[0].ID
	c.do(x{method: "GET", path: dPath, token: "alice-token", status: 200}, nil)
	c.do(x{method: "GET", path: dPath, token: "bob-token", status: 404}, nil)
	c.do(x{method: "GET", path: epPath + "/deliveries/whd_00000000000000000000000000", token: "alice-token", status: 404}, nil)
	c.do(x{method: "POST", path: dPath + "/redeliver", token: "bob-token", status: 404}, nil)
	var again api.WebhookDeliveryView
	c.do(x{method: "POST", path: dPath + "/redeliver", token: "alice-token", status: 202}, &again)
	if again.Status != pipeline.DeliveryPending {
		c.Errorf("redelivered = %s, want pending", again.Status)
	}
	c.do(x{method: "PATCH", path: epPath, token: "alice-token", body: `{"disabled":true}`, status: 200}, nil)
	c.do(x{method: "POST", path: dPath + "/redeliver", token: "alice-token", status: 409}, nil)

	c.do(x{method: "DELETE", path: epPath, token: "bob-token", status: 404}, nil)
	c.do(x{method: "DELETE", path: epPath, token: "alice-token", status: 204}, nil)
	c.do(x{method: "GET", path: epPath, token: "alice-token", status: 404}, nil)
	c.do(x{method: "GET", path: dPath, token: "alice-token", status: 404}, nil)
}
