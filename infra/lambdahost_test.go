package infra_test

import (
	"bytes"
	"context"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/aws/aws-lambda-go/events"
)

// buildBootstraps compiles every function as sam.mk does, for this
// machine (the proof runs them here), into one folder.
func buildBootstraps(t *testing.T) string {
	t.Helper()
	dir := t.TempDir()
	cmd := exec.Command("go", "build", "-tags", "lambda.norpc", "-trimpath", "-o", dir+string(filepath.Separator), "./functions/...")
	cmd.Dir = root
	cmd.Env = append(os.Environ(), "CGO_ENABLED=0", "GOOS="+runtime.GOOS, "GOARCH="+runtime.GOARCH)
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("build the functions: %v\n%s", err, out)
	}
	return dir
}

// lambdaHost runs one bootstrap as Lambda runs it: a process with the
// function's environment that asks a Runtime API (served here) for its
// next event, one at a time.
type lambdaHost struct {
	name string
	next chan *invocation
	dead chan struct{}
	logs *syncBuffer

	mu      sync.Mutex // one invocation at a time, as in one Lambda instance
	pending sync.Map   // request id -> *invocation
	initErr string
	seq     int
}

type invocation struct {
	id    string
	event []byte
	done  chan invocationResult
}

type invocationResult struct {
	body []byte
	err  string // the function's error (/error), if it failed
}

type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := s.b.String()
	if len(out) > 6000 {
		out = "…" + out[len(out)-6000:]
	}
	return out
}

// startLambda runs bin with env (KEY=VALUE) under a local Runtime API.
func startLambda(t *testing.T, name, bin string, env []string) *lambdaHost {
	t.Helper()
	h := &lambdaHost{name: name, next: make(chan *invocation), dead: make(chan struct{}), logs: &syncBuffer{}}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := &http.Server{Handler: http.HandlerFunc(h.runtimeAPI)}
	go func() { _ = srv.Serve(ln) }()

	cmd := exec.Command(bin)
	cmd.Env = append([]string{
		"PATH=/usr/bin:/bin", "TZ=UTC", "HOME=" + t.TempDir(),
		"AWS_LAMBDA_RUNTIME_API=" + ln.Addr().String(),
		"AWS_LAMBDA_FUNCTION_NAME=" + name, "AWS_LAMBDA_FUNCTION_VERSION=$LATEST", "AWS_LAMBDA_FUNCTION_MEMORY_SIZE=512",
		"AWS_LAMBDA_LOG_FORMAT=JSON", "AWS_LAMBDA_LOG_LEVEL=INFO",
		"AWS_CONFIG_FILE=/nonexistent", "AWS_SHARED_CREDENTIALS_FILE=/nonexistent", "AWS_EC2_METADATA_DISABLED=true",
	}, env...)
	cmd.Stdout, cmd.Stderr = h.logs, h.logs
	if err := cmd.Start(); err != nil {
		_ = srv.Close()
		t.Fatalf("start %s: %v", name, err)
	}
	go func() { _ = cmd.Wait(); close(h.dead) }()
	t.Cleanup(func() {
		_ = cmd.Process.Kill() // by its id: the process this test started
		<-h.dead
		_ = srv.Close()
	})
	return h
}

func (h *lambdaHost) runtimeAPI(w http.ResponseWriter, r *http.Request) {
	const prefix = "/2018-06-01/runtime/"
	path := strings.TrimPrefix(r.URL.Path, prefix)
	switch {
	case r.Method == http.MethodGet && path == "invocation/next":
		select {
		case inv := <-h.next:
			h.pending.Store(inv.id, inv)
			w.Header().Set("Lambda-Runtime-Aws-Request-Id", inv.id)
			w.Header().Set("Lambda-Runtime-Deadline-Ms", strconv.FormatInt(time.Now().Add(2*time.Minute).UnixMilli(), 10))
			w.Header().Set("Lambda-Runtime-Invoked-Function-Arn", "arn:aws:lambda:us-east-1:123456789012:function:"+h.name)
			w.Header().Set("Lambda-Runtime-Trace-Id", "Root=1-5759e988-bd862e3fe1be46a994272793;Parent=53995c3f42cd8ad8;Sampled=0")
			_, _ = w.Write(inv.event)
		case <-r.Context().Done():
		}
	case r.Method == http.MethodPost && path == "init/error":
		body, _ := io.ReadAll(r.Body)
		h.mu.Lock()
		h.initErr = string(body)
		h.mu.Unlock()
		w.WriteHeader(http.StatusAccepted)
	case r.Method == http.MethodPost && strings.HasPrefix(path, "invocation/"):
		id, kind, _ := strings.Cut(strings.TrimPrefix(path, "invocation/"), "/")
		body, _ := io.ReadAll(r.Body)
		v, ok := h.pending.LoadAndDelete(id)
		if !ok {
			http.Error(w, "unknown request id", http.StatusBadRequest)
			return
		}
		res := invocationResult{body: body}
		if kind == "error" {
			res = invocationResult{err: string(body)}
		}
		v.(*invocation).done <- res
		w.WriteHeader(http.StatusAccepted)
	default:
		http.NotFound(w, r)
	}
}

// invoke sends one event and waits for the function's answer.
func (h *lambdaHost) invoke(event any) (invocationResult, error) {
	data, err := json.Marshal(event)
	if err != nil {
		return invocationResult{}, err
	}
	h.mu.Lock()
	defer h.mu.Unlock()
	h.seq++
	inv := &invocation{id: fmt.Sprintf("%s-%d", h.name, h.seq), event: data, done: make(chan invocationResult, 1)}
	timeout := time.After(2 * time.Minute)
	select {
	case h.next <- inv:
	case <-h.dead:
		return invocationResult{}, fmt.Errorf("%s exited (init error %s):\n%s", h.name, h.initErr, h.logs)
	case <-timeout:
		return invocationResult{}, fmt.Errorf("%s did not ask for an event in 2 minutes (init error %s):\n%s", h.name, h.initErr, h.logs)
	}
	select {
	case res := <-inv.done:
		return res, nil
	case <-h.dead:
		return invocationResult{}, fmt.Errorf("%s exited during an invocation:\n%s", h.name, h.logs)
	case <-timeout:
		return invocationResult{}, fmt.Errorf("%s did not answer in 2 minutes:\n%s", h.name, h.logs)
	}
}

// apiResponse is what API Gateway returns for a Lambda's answer.
type apiResponse struct {
	Status int
	Header http.Header
	Body   []byte
}

// callAPI invokes an HTTP function the way API Gateway's HTTP API does
// (payload format 2.0), with the JWT authorizer's claims for user ("" for
// the public routes, which have no authorizer).
func (h *lambdaHost) callAPI(method, target string, header http.Header, body []byte, user string) (apiResponse, error) {
	path, query, _ := strings.Cut(target, "?")
	ev := events.APIGatewayV2HTTPRequest{
		Version: "2.0", RouteKey: "$default", RawPath: path, RawQueryString: query,
		Headers: map[string]string{"host": "api.proof.example", "content-type": "application/json"},
		RequestContext: events.APIGatewayV2HTTPRequestContext{
			RequestID: fmt.Sprintf("req-%d", time.Now().UnixNano()), Stage: "$default", RouteKey: "$default",
			HTTP:      events.APIGatewayV2HTTPRequestContextHTTPDescription{Method: method, Path: path, Protocol: "HTTP/1.1", SourceIP: "127.0.0.1"},
			TimeEpoch: time.Now().UnixMilli(),
		},
		Body: string(body),
	}
	for k, v := range header {
		ev.Headers[strings.ToLower(k)] = strings.Join(v, ",")
	}
	if query != "" {
		ev.QueryStringParameters = map[string]string{}
		for _, kv := range strings.Split(query, "&") {
			k, v, _ := strings.Cut(kv, "=")
			ev.QueryStringParameters[k] = v
		}
	}
	if user != "" {
		ev.RequestContext.Authorizer = &events.APIGatewayV2HTTPRequestContextAuthorizerDescription{
			JWT: &events.APIGatewayV2HTTPRequestContextAuthorizerJWTDescription{Claims: map[string]string{"sub": user}},
		}
	}
	res, err := h.invoke(ev)
	if err != nil {
		return apiResponse{}, err
	}
	if res.err != "" {
		// API Gateway answers 500 when the function fails.
		return apiResponse{Status: http.StatusInternalServerError, Body: []byte(res.err)}, nil
	}
	var out events.APIGatewayV2HTTPResponse
	if err := json.Unmarshal(res.body, &out); err != nil {
		return apiResponse{}, fmt.Errorf("%s answered %s: %w", h.name, res.body, err)
	}
	r := apiResponse{Status: out.StatusCode, Header: http.Header{}, Body: []byte(out.Body)}
	if out.IsBase64Encoded {
		if r.Body, err = base64.StdEncoding.DecodeString(out.Body); err != nil {
			return apiResponse{}, err
		}
	}
	for k, v := range out.Headers {
		r.Header.Set(k, v)
	}
	for k, vs := range out.MultiValueHeaders {
		for _, v := range vs {
			r.Header.Add(k, v)
		}
	}
	return r, nil
}

// apiFront is the HTTP API: the template's HttpApi routes, each to its
// function's host; routes with the default (JWT) authorizer take the
// caller's "Authorization: Bearer <user>" as a verified token of <user>.
type apiFront struct {
	mux   *http.ServeMux
	mu    sync.Mutex
	hosts map[string]*lambdaHost // by logical id
}

type apiRoute struct {
	Function, Method, Path string
	Public                 bool
}

func newAPIFront(routes []apiRoute) *apiFront {
	f := &apiFront{mux: http.NewServeMux(), hosts: map[string]*lambdaHost{}}
	for _, rt := range routes {
		f.mux.HandleFunc(rt.Method+" "+rt.Path, func(w http.ResponseWriter, r *http.Request) {
			f.mu.Lock()
			h := f.hosts[rt.Function]
			f.mu.Unlock()
			if h == nil {
				http.Error(w, `{"message":"Service Unavailable"}`, http.StatusServiceUnavailable)
				return
			}
			user := ""
			if !rt.Public {
				token, ok := strings.CutPrefix(r.Header.Get("Authorization"), "Bearer ")
				if !ok || token == "" {
					http.Error(w, `{"message":"Unauthorized"}`, http.StatusUnauthorized)
					return
				}
				user = token
			}
			body, _ := io.ReadAll(r.Body)
			target := r.URL.Path
			if r.URL.RawQuery != "" {
				target += "?" + r.URL.RawQuery
			}
			res, err := h.callAPI(r.Method, target, r.Header, body, user)
			if err != nil {
				http.Error(w, `{"message":"Internal Server Error"}`, http.StatusInternalServerError)
				return
			}
			for k, v := range res.Header {
				w.Header()[k] = v
			}
			w.WriteHeader(res.Status)
			_, _ = w.Write(res.Body)
		})
	}
	return f
}

func (f *apiFront) ServeHTTP(w http.ResponseWriter, r *http.Request) { f.mux.ServeHTTP(w, r) }

func (f *apiFront) serve(logicalID string, h *lambdaHost) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.hosts[logicalID] = h
}

// waitUntil polls ok until it holds or limit passes.
func waitUntil(ctx context.Context, limit time.Duration, ok func() bool) bool {
	deadline := time.Now().Add(limit)
	for !ok() {
		if time.Now().After(deadline) || ctx.Err() != nil {
			return false
		}
		time.Sleep(100 * time.Millisecond)
	}
	return true
}
