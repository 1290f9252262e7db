package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"sync"
	"testing"

	"github.com/getkin/kin-openapi/openapi3"
	"github.com/getkin/kin-openapi/openapi3filter"
	"github.com/getkin/kin-openapi/routers"
	"github.com/getkin/kin-openapi/routers/legacy"
)

const testKey = "rpa_TESTKEY"

// fakeRunPod is RunPod's REST API for templates and endpoints, in memory.
// Every request is first validated against RunPod's OpenAPI document
// (testdata/runpod-rest-v1.openapi.json, as RunPod publishes it): a request
// the document refuses fails the test.
type fakeRunPod struct {
	t      *testing.T
	srv    *httptest.Server
	router routers.Router

	mu        sync.Mutex
	templates map[string]map[string]any
	endpoints map[string]map[string]any
	requests  []string // "METHOD /path"
	nextID    int
}

func newFakeRunPod(t *testing.T) *fakeRunPod {
	t.Helper()
	doc, err := openapi3.NewLoader().LoadFromFile("testdata/runpod-rest-v1.openapi.json")
	if err != nil {
		t.Fatal(err)
	}
	// RunPod's document gives the PATCH and POST .../update synonyms one
	// operationId, which kin-openapi refuses; rename the synonyms in memory.
	seen := map[string]bool{}
	for _, p := range doc.Paths.InMatchingOrder() {
		for method, op := range doc.Paths.Value(p).Operations() {
			if seen[op.OperationID] {
				op.OperationID += "_" + method
			}
			seen[op.OperationID] = true
		}
	}
	f := &fakeRunPod{t: t, templates: map[string]map[string]any{}, endpoints: map[string]map[string]any{}}
	f.srv = httptest.NewServer(http.HandlerFunc(f.serve))
	t.Cleanup(f.srv.Close)
	doc.Servers = openapi3.Servers{{URL: f.srv.URL + "/v1"}}
	// Its schema defaults and examples do not all match their types (ports'
	// default is a string): only requests are checked here.
	if f.router, err = legacy.NewRouter(doc, openapi3.DisableSchemaDefaultsValidation(), openapi3.DisableExamplesValidation()); err != nil {
		t.Fatal(err)
	}
	return f
}

func (f *fakeRunPod) url() string { return f.srv.URL + "/v1" }

func (f *fakeRunPod) serve(w http.ResponseWriter, r *http.Request) {
	body, _ := io.ReadAll(r.Body)
	// The router matches the document's server URL: give the request its
	// absolute URL, as a client sees it.
	abs := *r.URL
	abs.Scheme, abs.Host = "http", r.Host
	r = r.Clone(r.Context())
	r.URL = &abs
	r.Body = io.NopCloser(bytes.NewReader(body))
	route, params, err := f.router.FindRoute(r)
	if err != nil {
		f.t.Errorf("%s %s is not in RunPod's API: %v", r.Method, r.URL, err)
		http.Error(w, err.Error(), http.StatusNotFound)
		return
	}
	in := &openapi3filter.RequestValidationInput{Request: r, PathParams: params, Route: route,
		Options: &openapi3filter.Options{MultiError: true, AuthenticationFunc: func(_ context.Context, a *openapi3filter.AuthenticationInput) error {
			if a.RequestValidationInput.Request.Header.Get("Authorization") != "Bearer "+testKey {
				return fmt.Errorf("no bearer API key")
			}
			return nil
		}}}
	if err := openapi3filter.ValidateRequest(context.Background(), in); err != nil {
		f.t.Errorf("%s %s does not follow RunPod's OpenAPI document: %v\nbody: %s", r.Method, r.URL, err, body)
		http.Error(w, err.Error(), http.StatusBadRequest)
		return
	}
	r.Body = io.NopCloser(bytes.NewReader(body))

	f.mu.Lock()
	defer f.mu.Unlock()
	f.requests = append(f.requests, r.Method+" "+r.URL.Path)
	var in2 map[string]any
	_ = json.Unmarshal(body, &in2)
	reply := func(v any) {
		w.Header().Set("Content-Type", "application/json")
		_ = json.NewEncoder(w).Encode(v)
	}
	switch op := route.Operation.OperationID; {
	case op == "ListTemplates":
		out := []map[string]any{}
		for _, t := range f.templates {
			// Like RunPod: a template bound to an endpoint is listed only
			// when asked for.
			if f.bound(t["id"]) && r.URL.Query().Get("includeEndpointBoundTemplates") != "true" {
				continue
			}
			out = append(out, t)
		}
		reply(out)
	case op == "CreateTemplate":
		f.nextID++
		t := map[string]any{"id": fmt.Sprintf("tpl%03d", f.nextID)}
		for k, v := range in2 {
			t[k] = v
		}
		f.templates[t["id"].(string)] = t
		reply(t)
	case strings.HasPrefix(op, "UpdateTemplate"):
		t, ok := f.templates[params["templateId"]]
		if !ok {
			http.Error(w, "template not found", http.StatusNotFound)
			return
		}
		for k, v := range in2 {
			t[k] = v
		}
		reply(t)
	case op == "ListEndpoints":
		out := []map[string]any{}
		for _, e := range f.endpoints {
			c := map[string]any{}
			for k, v := range e {
				if k != "flashboot" && k != "computeType" { // not in RunPod's Endpoint object
					c[k] = v
				}
			}
			out = append(out, c)
		}
		reply(out)
	case op == "CreateEndpoint":
		f.nextID++
		e := map[string]any{"id": fmt.Sprintf("ep%03d", f.nextID)}
		for k, v := range in2 {
			e[k] = v
		}
		f.endpoints[e["id"].(string)] = e
		reply(e)
	case strings.HasPrefix(op, "UpdateEndpoint"):
		e, ok := f.endpoints[params["endpointId"]]
		if !ok {
			http.Error(w, "endpoint not found", http.StatusNotFound)
			return
		}
		for k, v := range in2 {
			e[k] = v
		}
		reply(e)
	default:
		f.t.Errorf("provision called %s %s (%s), which it has no reason to", r.Method, r.URL.Path, op)
		http.Error(w, "unexpected", http.StatusBadRequest)
	}
}

func (f *fakeRunPod) bound(templateID any) bool {
	for _, e := range f.endpoints {
		if e["templateId"] == templateID {
			return true
		}
	}
	return false
}

func (f *fakeRunPod) takeRequests() []string {
	f.mu.Lock()
	defer f.mu.Unlock()
	r := f.requests
	f.requests = nil
	return r
}

func provision(t *testing.T, f *fakeRunPod, env map[string]string, args ...string) (string, error) {
	t.Helper()
	var out, errOut bytes.Buffer
	getenv := func(k string) string { return env[k] }
	err := run(context.Background(), append([]string{"--api-url", f.url()}, args...), getenv, &out, &errOut)
	return out.String() + errOut.String(), err
}

var withKey = map[string]string{"RUNPOD_API_KEY": testKey}

func TestProvisionCreatesThenChangesOnlyWhatDiffers(t *testing.T) {
	f := newFakeRunPod(t)
	base := []string{"--image", "ghcr.io/acme/brightrun-worker:1.0.0", "--network-volume", "vol123"}

	out, err := provision(t, f, withKey, base...)
	if err != nil {
		t.Fatalf("first run: %v\n%s", err, out)
	}
	if got, want := f.takeRequests(), []string{"GET /v1/templates", "POST /v1/templates", "GET /v1/endpoints", "POST /v1/endpoints"}; !slices.Equal(got, want) {
		t.Errorf("first run sent %v, want %v", got, want)
	}
	if !strings.Contains(out, "RunPodEndpointId=ep002") {
		t.Errorf("first run's output does not give the endpoint id:\n%s", out)
	}
	tpl, ep := f.templates["tpl001"], f.endpoints["ep002"]
	if tpl["isServerless"] != true || tpl["imageName"] != "ghcr.io/acme/brightrun-worker:1.0.0" || tpl["volumeInGb"] != float64(0) {
		t.Errorf("template = %v", tpl)
	}
	if ep["templateId"] != "tpl001" || ep["flashboot"] != true || ep["workersMax"] != float64(3) || ep["workersMin"] != float64(0) ||
		ep["idleTimeout"] != float64(5) || ep["executionTimeoutMs"] != float64(86_400_000) || ep["minCudaVersion"] != "12.8" {
		t.Errorf("endpoint = %v", ep)
	}
	if got := fmt.Sprint(ep["gpuTypeIds"]); got != "[NVIDIA A100-SXM4-80GB NVIDIA A100 80GB PCIe NVIDIA H100 80GB HBM3 NVIDIA H200]" {
		t.Errorf("gpuTypeIds = %s", got)
	}
	if got := fmt.Sprint(ep["networkVolumeIds"]); got != "[vol123]" {
		t.Errorf("networkVolumeIds = %s", got)
	}

	t.Run("a second run finds both by name and changes nothing", func(t *testing.T) {
		out, err := provision(t, f, withKey, base...)
		if err != nil {
			t.Fatalf("%v\n%s", err, out)
		}
		if got, want := f.takeRequests(), []string{"GET /v1/templates", "GET /v1/endpoints"}; !slices.Equal(got, want) {
			t.Errorf("sent %v, want %v (reads only)", got, want)
		}
		if !strings.Contains(out, "template brightrun-worker: unchanged (tpl001)") || !strings.Contains(out, "endpoint brightrun-worker: unchanged (ep002)") {
			t.Errorf("output:\n%s", out)
		}
	})

	t.Run("a new image updates the template only", func(t *testing.T) {
		out, err := provision(t, f, withKey, "--image", "ghcr.io/acme/brightrun-worker:1.1.0", "--network-volume", "vol123")
		if err != nil {
			t.Fatalf("%v\n%s", err, out)
		}
		if got, want := f.takeRequests(), []string{"GET /v1/templates", "PATCH /v1/templates/tpl001", "GET /v1/endpoints"}; !slices.Equal(got, want) {
			t.Errorf("sent %v, want %v", got, want)
		}
		if f.templates["tpl001"]["imageName"] != "ghcr.io/acme/brightrun-worker:1.1.0" {
			t.Errorf("template not updated: %v", f.templates["tpl001"])
		}
		if !strings.Contains(out, `imageName: "ghcr.io/acme/brightrun-worker:1.0.0" → "ghcr.io/acme/brightrun-worker:1.1.0"`) {
			t.Errorf("output does not show the change:\n%s", out)
		}
	})

	t.Run("new scaling settings update the endpoint only", func(t *testing.T) {
		out, err := provision(t, f, withKey, "--image", "ghcr.io/acme/brightrun-worker:1.1.0", "--network-volume", "vol123",
			"--workers-max", "5", "--gpus", "h100-80gb")
		if err != nil {
			t.Fatalf("%v\n%s", err, out)
		}
		if got, want := f.takeRequests(), []string{"GET /v1/templates", "GET /v1/endpoints", "PATCH /v1/endpoints/ep002"}; !slices.Equal(got, want) {
			t.Errorf("sent %v, want %v", got, want)
		}
		ep := f.endpoints["ep002"]
		if ep["workersMax"] != float64(5) || fmt.Sprint(ep["gpuTypeIds"]) != "[NVIDIA H100 80GB HBM3]" {
			t.Errorf("endpoint not updated: %v", ep)
		}
	})
}

func TestEveryCatalogGPUIsARunPodGPUType(t *testing.T) {
	f := newFakeRunPod(t)
	// The request validation checks gpuTypeIds against the document's enum.
	out, err := provision(t, f, withKey, "--image", "img:1", "--network-volume", "vol1",
		"--gpus", "a100-80gb,h100-80gb,h200-141gb,l40s-48gb,a6000-48gb,rtx4090-24gb")
	if err != nil {
		t.Fatalf("%v\n%s", err, out)
	}
}

func TestDryRunSendsNoWrite(t *testing.T) {
	f := newFakeRunPod(t)
	args := []string{"--dry-run", "--image", "ghcr.io/acme/brightrun-worker:1.0.0", "--network-volume", "vol123"}

	t.Run("without a key it sends nothing and assumes an empty account", func(t *testing.T) {
		out, err := provision(t, f, nil, args...)
		if err != nil {
			t.Fatalf("%v\n%s", err, out)
		}
		if got := f.takeRequests(); len(got) > 0 {
			t.Errorf("sent %v", got)
		}
		for _, want := range []string{"GET " + f.url() + "/templates?includeEndpointBoundTemplates=true", "POST " + f.url() + "/templates",
			`"imageName": "ghcr.io/acme/brightrun-worker:1.0.0"`, "POST " + f.url() + "/endpoints",
			`"templateId": "<id of the new template brightrun-worker>"`, "endpoint brightrun-worker: would create"} {
			if !strings.Contains(out, want) {
				t.Errorf("output lacks %q:\n%s", want, out)
			}
		}
		if strings.Contains(out, "RunPodEndpointId=") {
			t.Errorf("a dry run printed an endpoint id:\n%s", out)
		}
	})

	t.Run("with a key it reads the account and prints the writes", func(t *testing.T) {
		if out, err := provision(t, f, withKey, args[1:]...); err != nil {
			t.Fatalf("%v\n%s", err, out)
		}
		f.takeRequests()
		out, err := provision(t, f, withKey, append(args, "--workers-max", "4")...)
		if err != nil {
			t.Fatalf("%v\n%s", err, out)
		}
		if got, want := f.takeRequests(), []string{"GET /v1/templates", "GET /v1/endpoints"}; !slices.Equal(got, want) {
			t.Errorf("sent %v, want %v", got, want)
		}
		if !strings.Contains(out, "PATCH "+f.url()+"/endpoints/") || !strings.Contains(out, "workersMax: 3 → 4") {
			t.Errorf("output:\n%s", out)
		}
		if f.endpoints["ep002"]["workersMax"] != float64(3) {
			t.Errorf("a dry run changed the endpoint: %v", f.endpoints["ep002"])
		}
	})
}

func TestProvisionRefusesAmbiguityAndBadInput(t *testing.T) {
	f := newFakeRunPod(t)
	f.endpoints["a"] = map[string]any{"id": "a", "name": "brightrun-worker", "templateId": "x"}
	f.endpoints["b"] = map[string]any{"id": "b", "name": "brightrun-worker -fb", "templateId": "x"}
	out, err := provision(t, f, withKey, "--image", "img:1", "--network-volume", "vol1")
	if err == nil || !strings.Contains(err.Error(), "2 endpoints are named") {
		t.Errorf("two endpoints of one name: err = %v\n%s", err, out)
	}

	for _, tc := range []struct {
		args []string
		env  map[string]string
		want string
	}{
		{[]string{"--network-volume", "v"}, withKey, "--image is required"},
		{[]string{"--image", "i"}, withKey, "--network-volume is required"},
		{[]string{"--image", "i", "--network-volume", "v", "--gpus", "tpu-v5"}, withKey, `unknown GPU type "tpu-v5"`},
		{[]string{"--image", "i", "--network-volume", "v", "--workers-min", "4", "--workers-max", "2"}, withKey, "--workers-min and --workers-max"},
		{[]string{"--image", "i", "--network-volume", "v", "--execution-timeout", "200h"}, withKey, "--execution-timeout"},
		{[]string{"--image", "i", "--network-volume", "v"}, nil, "RUNPOD_API_KEY is not set"},
	} {
		if _, err := provision(t, f, tc.env, tc.args...); err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("provision %q = %v, want an error containing %q", tc.args, err, tc.want)
		}
	}
}

func TestRunPodErrorsAreShownWithTheirBody(t *testing.T) {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Method == http.MethodGet {
			_, _ = w.Write([]byte("[]"))
			return
		}
		http.Error(w, `{"error":"imageName: invalid reference format"}`, http.StatusBadRequest)
	}))
	defer srv.Close()
	var out bytes.Buffer
	err := run(context.Background(), []string{"--api-url", srv.URL, "--image", "bad image", "--network-volume", "v"},
		func(k string) string { return withKey[k] }, &out, &out)
	if err == nil || !strings.Contains(err.Error(), "400") || !strings.Contains(err.Error(), "invalid reference format") {
		t.Errorf("err = %v, want RunPod's 400 with its body", err)
	}
}
