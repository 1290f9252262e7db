package infra_test

import (
	"context"
	"debug/elf"
	"encoding/json"
	"fmt"
	"go/ast"
	"go/parser"
	"go/token"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path"
	"path/filepath"
	"reflect"
	"regexp"
	"slices"
	"sort"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/credentials"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb"
	"github.com/awslabs/goformation/v7"
	"github.com/awslabs/goformation/v7/cloudformation"
	"github.com/awslabs/goformation/v7/cloudformation/serverless"
	"github.com/awslabs/goformation/v7/intrinsics"

	"github.com/brightrun/brightrun/infra"
	"github.com/brightrun/brightrun/shared/awsapp"
	"github.com/brightrun/brightrun/shared/dynamo"
	"github.com/brightrun/brightrun/shared/httpapi"
	"github.com/brightrun/brightrun/shared/pipeline"
)

const root = ".."

// ---------------------------------------------------------------- loading

// tmpl is template.yaml parsed by goformation twice: typed, and as plain
// JSON. Both keep intrinsic functions as readable markers instead of
// resolving them: "!Ref X", "!GetAtt X.Arn", "!Sub <template> <vars>",
// "!If <JSON args>" (goformation would otherwise blank most of them).
type tmpl struct {
	cf  *cloudformation.Template
	raw map[string]any
}

var (
	loadOnce sync.Once
	loaded   *tmpl
	errLoad  error
)

func load(t *testing.T) *tmpl {
	t.Helper()
	loadOnce.Do(func() {
		data, err := os.ReadFile(filepath.Join(root, "template.yaml"))
		if err != nil {
			errLoad = err
			return
		}
		m := &tmpl{}
		js, err := intrinsics.ProcessYAML(data, markers())
		if err != nil {
			errLoad = fmt.Errorf("goformation intrinsics: %w", err)
			return
		}
		if err := json.Unmarshal(js, &m.raw); err != nil {
			errLoad = err
			return
		}
		// Typed: the functions only, since a marker cannot fill a number
		// field of other resources (a log group's !Ref LogRetentionDays),
		// less the properties newer than goformation's schema (it refuses
		// unknown fields): LoggingConfig is read from the plain JSON.
		known := map[string]bool{}
		ft := reflect.TypeFor[serverless.Function]()
		for i := range ft.NumField() {
			known[strings.Split(ft.Field(i).Tag.Get("json"), ",")[0]] = true
		}
		functions := map[string]any{}
		for name, r := range m.raw["Resources"].(map[string]any) {
			if dig(r, "Type") != "AWS::Serverless::Function" {
				continue
			}
			props := map[string]any{}
			for k, v := range dig(r, "Properties").(map[string]any) {
				if known[k] {
					props[k] = v
				}
			}
			f := map[string]any{}
			for k, v := range r.(map[string]any) {
				f[k] = v
			}
			f["Properties"] = props
			functions[name] = f
		}
		typed, _ := json.Marshal(map[string]any{
			"Parameters": m.raw["Parameters"], "Outputs": m.raw["Outputs"], "Resources": functions,
		})
		if m.cf, err = goformation.ParseJSON(typed); err != nil {
			errLoad = fmt.Errorf("goformation: %w", err)
			return
		}
		loaded = m
	})
	if errLoad != nil {
		t.Fatalf("parse template.yaml: %v", errLoad)
	}
	return loaded
}

func markers() *intrinsics.ProcessorOptions {
	compact := func(v any) string {
		b, _ := json.Marshal(v)
		return string(b)
	}
	generic := func(name string, in any, _ any) any {
		return "!" + strings.TrimPrefix(name, "Fn::") + " " + compact(in)
	}
	h := map[string]intrinsics.IntrinsicHandler{
		"Ref": func(_ string, in any, _ any) any { return fmt.Sprintf("!Ref %v", in) },
		"Fn::GetAtt": func(_ string, in any, _ any) any {
			if l, ok := in.([]any); ok {
				parts := make([]string, len(l))
				for i, p := range l {
					parts[i] = fmt.Sprint(p)
				}
				return "!GetAtt " + strings.Join(parts, ".")
			}
			return fmt.Sprintf("!GetAtt %v", in)
		},
		"Fn::Sub": func(_ string, in any, _ any) any {
			if l, ok := in.([]any); ok && len(l) == 2 {
				return fmt.Sprintf("!Sub %v %s", l[0], compact(l[1]))
			}
			return fmt.Sprintf("!Sub %v", in)
		},
	}
	for _, name := range []string{"Fn::If", "Fn::Select", "Fn::Split", "Fn::Join", "Fn::Equals", "Fn::Not",
		"Fn::And", "Fn::Or", "Fn::Contains", "Fn::FindInMap", "Fn::Base64", "Fn::GetAZs", "Fn::ImportValue", "Fn::Cidr"} {
		h[name] = generic
	}
	return &intrinsics.ProcessorOptions{IntrinsicHandlerOverrides: h}
}

// dig walks the plain JSON by keys.
func dig(v any, keys ...string) any {
	for _, k := range keys {
		m, ok := v.(map[string]any)
		if !ok {
			return nil
		}
		v = m[k]
	}
	return v
}

func (m *tmpl) resources() map[string]any { return m.raw["Resources"].(map[string]any) }

func (m *tmpl) resource(t *testing.T, name string) map[string]any {
	t.Helper()
	r, ok := m.resources()[name].(map[string]any)
	if !ok {
		t.Fatalf("template.yaml has no resource %s", name)
	}
	return r
}

func (m *tmpl) function(t *testing.T, name string) *serverless.Function {
	t.Helper()
	f, err := m.cf.GetServerlessFunctionWithName(name)
	if err != nil {
		t.Fatalf("template.yaml: %v", err)
	}
	return f
}

// bucketName is the marker of the dataset bucket's BucketName.
func (m *tmpl) bucketName(t *testing.T) string {
	t.Helper()
	s, _ := dig(m.resource(t, "DatasetBucket"), "Properties", "BucketName").(string)
	if !strings.HasPrefix(s, "!Sub ") {
		t.Fatalf("DatasetBucket's BucketName = %q, want a !Sub of the stack's account and id", s)
	}
	return s
}

// ------------------------------------------------------------ the code side

// logicalID is the template resource of a function folder.
func logicalID(fn string) string { return strings.ToUpper(fn[:1]) + fn[1:] + "Function" }

func functionFolders(t testing.TB) []string {
	t.Helper()
	entries, err := os.ReadDir(filepath.Join(root, "functions"))
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	for _, e := range entries {
		if e.IsDir() {
			out = append(out, e.Name())
		}
	}
	if len(out) == 0 {
		t.Fatal("no folder under functions/")
	}
	return out
}

var partNames = map[string]awsapp.Part{
	"Store": awsapp.Store, "Cursors": awsapp.Cursors, "Blobs": awsapp.Blobs, "Queue": awsapp.Queue, "GPU": awsapp.GPU,
	"Callbacks": awsapp.Callbacks, "Public": awsapp.Public, "Imports": awsapp.Imports, "ImportSources": awsapp.ImportSources,
	"Webhooks": awsapp.Webhooks,
}

// mainGo is what a function's main.go asks for: the awsapp parts it loads
// and the variables it reads itself with os.Getenv.
type mainGo struct {
	parts  awsapp.Part
	getenv []string
}

func readMain(t *testing.T, fn string) mainGo {
	t.Helper()
	file := filepath.Join(root, "functions", fn, "main.go")
	f, err := parser.ParseFile(token.NewFileSet(), file, nil, 0)
	if err != nil {
		t.Fatal(err)
	}
	var m mainGo
	found := false
	var eval func(e ast.Expr) awsapp.Part
	eval = func(e ast.Expr) awsapp.Part {
		switch e := e.(type) {
		case *ast.ParenExpr:
			return eval(e.X)
		case *ast.BinaryExpr:
			if e.Op == token.OR {
				return eval(e.X) | eval(e.Y)
			}
		case *ast.SelectorExpr:
			if id, ok := e.X.(*ast.Ident); ok && id.Name == "awsapp" {
				if p, ok := partNames[e.Sel.Name]; ok {
					return p
				}
			}
		}
		t.Fatalf("%s: awsapp.Load's parts argument %T is not a | of awsapp parts this test knows (%v)", file, e, slices.Sorted(mapKeys(partNames)))
		return 0
	}
	ast.Inspect(f, func(n ast.Node) bool {
		call, ok := n.(*ast.CallExpr)
		if !ok {
			return true
		}
		sel, ok := call.Fun.(*ast.SelectorExpr)
		if !ok {
			return true
		}
		pkg, _ := sel.X.(*ast.Ident)
		switch {
		case pkg != nil && pkg.Name == "awsapp" && sel.Sel.Name == "Load" && len(call.Args) == 3:
			m.parts |= eval(call.Args[2])
			found = true
		case pkg != nil && pkg.Name == "os" && sel.Sel.Name == "Getenv" && len(call.Args) == 1:
			if lit, ok := call.Args[0].(*ast.BasicLit); ok && lit.Kind == token.STRING {
				name, _ := strconv.Unquote(lit.Value)
				m.getenv = append(m.getenv, name)
			}
		}
		return true
	})
	if !found {
		t.Fatalf("%s: no awsapp.Load(ctx, os.Getenv, parts) call", file)
	}
	return m
}

func mapKeys[K comparable, V any](m map[K]V) func(func(K) bool) {
	return func(yield func(K) bool) {
		for k := range m {
			if !yield(k) {
				return
			}
		}
	}
}

// fakeAWS answers AWS JSON-protocol calls (X-Amz-Target) with answer's
// result, recording each request body by operation.
type fakeAWS struct {
	*httptest.Server
	mu    sync.Mutex
	calls map[string][]map[string]any
}

func newFakeAWS(t *testing.T, answer func(op string, body map[string]any) any) *fakeAWS {
	t.Helper()
	f := &fakeAWS{calls: map[string][]map[string]any{}}
	f.Server = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		target := r.Header.Get("X-Amz-Target")
		op := target[strings.LastIndex(target, ".")+1:]
		var body map[string]any
		data, _ := io.ReadAll(r.Body)
		_ = json.Unmarshal(data, &body)
		f.mu.Lock()
		f.calls[op] = append(f.calls[op], body)
		f.mu.Unlock()
		w.Header().Set("Content-Type", "application/x-amz-json-1.1")
		out := answer(op, body)
		if out == nil {
			w.WriteHeader(http.StatusBadRequest)
			fmt.Fprintf(w, `{"__type":"UnknownOperationException","message":"%s"}`, op)
			return
		}
		_ = json.NewEncoder(w).Encode(out)
	}))
	t.Cleanup(f.Close)
	return f
}

// isolateAWS points the SDK's default configuration at nothing real: dummy
// credentials, no shared config files, no instance metadata.
func isolateAWS(t *testing.T) {
	t.Helper()
	dir := t.TempDir()
	for k, v := range map[string]string{
		"AWS_REGION": "us-east-1", "AWS_ACCESS_KEY_ID": "AKIDTEST", "AWS_SECRET_ACCESS_KEY": "secret",
		"AWS_SESSION_TOKEN": "", "AWS_PROFILE": "", "AWS_ENDPOINT_URL": "",
		"AWS_CONFIG_FILE": filepath.Join(dir, "config"), "AWS_SHARED_CREDENTIALS_FILE": filepath.Join(dir, "credentials"),
		"AWS_EC2_METADATA_DISABLED": "true", "AWS_MAX_ATTEMPTS": "1",
	} {
		t.Setenv(k, v)
	}
}

// loadedVariables runs awsapp.Load for parts with a recording getenv: first
// with nothing set (the error names the required variables), then with
// those set, against a local Secrets Manager, so that Load goes to the end
// and every variable it reads is recorded.
func loadedVariables(t *testing.T, parts awsapp.Part) (required, read []string) {
	t.Helper()
	// Every secret holds one value; this one passes every check.
	sm := newFakeAWS(t, func(op string, body map[string]any) any {
		if op != "GetSecretValue" {
			return nil
		}
		return map[string]any{"ARN": body["SecretId"], "Name": "app", "SecretString": strings.Repeat("s", 64)}
	})
	isolateAWS(t)
	t.Setenv("AWS_ENDPOINT_URL_SECRETS_MANAGER", sm.URL)

	ctx := context.Background()
	_, err := awsapp.Load(ctx, func(string) string { return "" }, parts)
	const prefix = "missing environment variables: "
	if err == nil || !strings.HasPrefix(err.Error(), prefix) {
		t.Fatalf("awsapp.Load with no environment = %v, want an error starting %q", err, prefix)
	}
	required = strings.Split(strings.TrimPrefix(err.Error(), prefix), ", ")

	seen := map[string]bool{}
	getenv := func(name string) string {
		seen[name] = true
		if !slices.Contains(required, name) {
			return ""
		}
		switch {
		case strings.HasSuffix(name, "_URL"):
			return "https://example.invalid/" + strings.ToLower(name)
		case strings.HasSuffix(name, "_ARN"):
			return "arn:aws:secretsmanager:us-east-1:123456789012:secret:app-AbCdEf"
		}
		return "fake-" + strings.ToLower(name)
	}
	if _, err := awsapp.Load(ctx, getenv, parts); err != nil {
		t.Fatalf("awsapp.Load with the required variables set = %v", err)
	}
	return required, slices.Sorted(mapKeys(seen))
}

// ------------------------------------------------------------------- tests

func TestEveryFunctionFolderHasOneResourceAndBack(t *testing.T) {
	m := load(t)
	want := map[string]bool{}
	for _, fn := range functionFolders(t) {
		want[logicalID(fn)] = true
		m.function(t, logicalID(fn))
	}
	for name := range m.cf.GetAllServerlessFunctionResources() {
		if !want[name] {
			t.Errorf("template.yaml's function %s has no folder under functions/ (want functions/<name> for <Name>Function)", name)
		}
	}
}

func TestFunctionsAreBuiltByTheMakefileForArm64(t *testing.T) {
	m := load(t)
	globals, _ := dig(m.raw, "Globals", "Function").(map[string]any)
	for key, want := range map[string]string{
		"Runtime": "provided.al2023", "Handler": "bootstrap", "Tracing": "Active",
		"Architectures": `["arm64"]`, "LoggingConfig.LogFormat": "JSON",
	} {
		var got any = globals
		for _, k := range strings.Split(key, ".") {
			got = dig(got, k)
		}
		if s, ok := got.(string); ok && s == want {
			continue
		}
		if b, _ := json.Marshal(got); string(b) == want {
			continue
		}
		t.Errorf("Globals.Function.%s = %v, want %s", key, got, want)
	}

	var makeN func(target string) (string, error)
	if _, err := exec.LookPath("make"); err == nil {
		makeN = func(target string) (string, error) {
			out, err := exec.Command("make", "-C", root, "-n", target, "ARTIFACTS_DIR=/artifacts").CombinedOutput()
			return string(out), err
		}
	}
	for _, fn := range functionFolders(t) {
		id := logicalID(fn)
		f := m.function(t, id)
		if f.CodeUri == nil || f.CodeUri.String == nil || *f.CodeUri.String != "." {
			t.Errorf("%s: CodeUri must be . (the repository root: one go.mod)", id)
		}
		if got := f.AWSCloudFormationMetadata["BuildMethod"]; got != "makefile" {
			t.Errorf("%s: Metadata.BuildMethod = %v, want makefile", id, got)
		}
		if f.Runtime != nil || f.Handler != nil || f.Architectures != nil {
			t.Errorf("%s overrides Runtime, Handler or Architectures: leave them to Globals", id)
		}
		if makeN == nil {
			continue
		}
		out, err := makeN("build-" + id)
		if err != nil {
			t.Errorf("make -n build-%s: %v\n%s", id, err, out)
			continue
		}
		for _, want := range []string{"GOOS=linux", "GOARCH=arm64", "CGO_ENABLED=0", "-tags lambda.norpc", "-trimpath",
			"-o /artifacts/bootstrap", "./functions/" + fn + "\n"} {
			if !strings.Contains(out, want) {
				t.Errorf("make -n build-%s does not run %q:\n%s", id, want, out)
			}
		}
	}
}

func TestEveryRouteHasAnHttpApiEventAndBack(t *testing.T) {
	m := load(t)
	type route struct {
		fn     string // logical id
		public bool
	}
	want := map[string]route{}
	for _, rt := range (&httpapi.Server{}).Routes() {
		// The callbacks authenticate themselves (signatures, per-job
		// tokens); every other route needs a user's JWT.
		public := strings.HasPrefix(rt.Path, "/v1/callbacks/")
		if (rt.Function == httpapi.FnWebhook) != public {
			t.Errorf("route %s %s of %s: the webhook function serves exactly the /v1/callbacks/ routes", rt.Method, rt.Path, rt.Function)
		}
		want[rt.Method+" "+rt.Path] = route{logicalID(rt.Function), public}
	}
	// Every HTTP function's handler serves these; one function gets them.
	unowned := map[string]bool{"GET /healthz": true, "GET /openapi.json": true}
	httpFunctions := map[string]bool{}
	for _, r := range want {
		httpFunctions[r.fn] = true
	}

	got := map[string]route{}
	for id, f := range m.cf.GetAllServerlessFunctionResources() {
		for evName, ev := range f.Events {
			if ev.Type != "HttpApi" {
				continue
			}
			if ev.Properties == nil || ev.Properties.HttpApiEvent == nil {
				t.Errorf("%s: event %s is not a readable HttpApi event", id, evName)
				continue
			}
			e := ev.Properties.HttpApiEvent
			if e.ApiId == nil || *e.ApiId != "!Ref HttpApi" {
				t.Errorf("%s: event %s: ApiId must be !Ref HttpApi", id, evName)
			}
			key := strings.ToUpper(aws.ToString(e.Method)) + " " + aws.ToString(e.Path)
			public := e.Auth != nil && aws.ToString(e.Auth.Authorizer) == "NONE"
			if e.Auth != nil && !public {
				t.Errorf("%s: event %s: Auth other than Authorizer: NONE (the JWT authorizer is the API's default)", id, evName)
			}
			if prev, dup := got[key]; dup {
				t.Errorf("route %s is in the template twice (%s and %s)", key, prev.fn, id)
			}
			got[key] = route{id, public}
		}
	}

	for key, w := range want {
		g, ok := got[key]
		switch {
		case !ok:
			t.Errorf("route %s has no HttpApi event (want one on %s)", key, w.fn)
		case g.fn != w.fn:
			t.Errorf("route %s is routed to %s, want %s (httpapi.Routes)", key, g.fn, w.fn)
		case g.public != w.public:
			t.Errorf("route %s: public = %v, want %v (only the callbacks, /healthz and /openapi.json skip the JWT authorizer)", key, g.public, w.public)
		}
	}
	for key, g := range got {
		switch {
		case unowned[key]:
			if !httpFunctions[g.fn] {
				t.Errorf("route %s goes to %s, which serves no HTTP routes", key, g.fn)
			}
			if !g.public {
				t.Errorf("route %s must skip the JWT authorizer (Auth: {Authorizer: NONE})", key)
			}
		case want[key] == route{}:
			t.Errorf("template.yaml routes %s to %s, but httpapi.Routes has no such route", key, g.fn)
		}
	}
	for key := range unowned {
		if _, ok := got[key]; !ok {
			t.Errorf("route %s has no HttpApi event (give it to one HTTP function)", key)
		}
	}

	api := m.resource(t, "HttpApi")
	def, _ := dig(api, "Properties", "Auth", "DefaultAuthorizer").(string)
	if def == "" || dig(api, "Properties", "Auth", "Authorizers", def, "JwtConfiguration") == nil {
		t.Errorf("HttpApi: Auth.DefaultAuthorizer must name a JWT authorizer, got %q", def)
	}
}

// TestCallbackRoutesHaveTheirOwnThrottle: the public callback routes get
// limits of their own, so that junk sent to them and the user API do not
// draw on one budget.
func TestCallbackRoutesHaveTheirOwnThrottle(t *testing.T) {
	m := load(t)
	settings, _ := dig(m.resource(t, "HttpApi"), "Properties", "RouteSettings").(map[string]any)
	defaults := dig(m.resource(t, "HttpApi"), "Properties", "DefaultRouteSettings")
	if dig(defaults, "ThrottlingRateLimit") == nil || dig(defaults, "ThrottlingBurstLimit") == nil {
		t.Errorf("HttpApi.DefaultRouteSettings must throttle the user API")
	}
	n := 0
	for _, rt := range (&httpapi.Server{}).Routes() {
		if rt.Function != httpapi.FnWebhook {
			continue
		}
		n++
		key := rt.Method + " " + rt.Path
		s := settings[key]
		rate, _ := dig(s, "ThrottlingRateLimit").(float64)
		burst, _ := dig(s, "ThrottlingBurstLimit").(float64)
		if rate <= 0 || burst < rate {
			t.Errorf("HttpApi.RouteSettings[%q] = %v, want a ThrottlingRateLimit and a ThrottlingBurstLimit at least as large", key, s)
		}
	}
	if n == 0 {
		t.Fatal("httpapi.Routes has no webhook routes")
	}
	for key := range settings {
		if !strings.HasPrefix(key, "POST /v1/callbacks/") {
			t.Errorf("HttpApi.RouteSettings[%q]: only the callback routes have limits of their own", key)
		}
	}
}

// envValues are the values each variable may take in the template.
var envValues = map[string]func(m *tmpl, t *testing.T, fn, v string) bool{
	"BRIGHTRUN_TABLE":               func(_ *tmpl, _ *testing.T, _, v string) bool { return v == "!Ref Table" },
	"BRIGHTRUN_RUNPOD_API_KEY_ARN":  func(_ *tmpl, _ *testing.T, _, v string) bool { return v == "!Ref RunPodApiKeySecret" },
	"BRIGHTRUN_CALLBACK_MASTER_ARN": func(_ *tmpl, _ *testing.T, _, v string) bool { return v == "!Ref CallbackMasterSecret" },
	"BRIGHTRUN_CURSOR_KEY_ARN":      func(_ *tmpl, _ *testing.T, _, v string) bool { return v == "!Ref CursorKeySecret" },
	"BRIGHTRUN_BUCKET": func(m *tmpl, t *testing.T, _, v string) bool {
		return v == "!Ref DatasetBucket" || v == m.bucketName(t)
	},
	"BRIGHTRUN_QUEUE_URL":             func(_ *tmpl, _ *testing.T, _, v string) bool { return v == "!Ref JobsQueue" },
	"BRIGHTRUN_DEAD_LETTER_URL":       func(_ *tmpl, _ *testing.T, _, v string) bool { return v == "!Ref JobsDeadLetterQueue" },
	"BRIGHTRUN_WEBHOOK_QUEUE_URL":     func(_ *tmpl, _ *testing.T, _, v string) bool { return v == "!Ref WebhookQueue" },
	"RUNPOD_ENDPOINT_ID":              func(_ *tmpl, _ *testing.T, _, v string) bool { return v == "!Ref RunPodEndpointId" },
	"BRIGHTRUN_RUNPOD_URL":            func(_ *tmpl, _ *testing.T, _, v string) bool { return v == "!Ref RunPodApiUrl" },
	"BRIGHTRUN_MAX_DISPATCH_ATTEMPTS": func(_ *tmpl, _ *testing.T, _, v string) bool { return v == "!Ref MaxDispatchAttempts" },
	// Fair dispatch: the dispatch function admits, reconciliation releases.
	"BRIGHTRUN_OWNER_LIMIT":        func(_ *tmpl, _ *testing.T, _, v string) bool { return v == "!Ref OwnerJobLimit" },
	"BRIGHTRUN_OWNER_LIMITS":       func(_ *tmpl, _ *testing.T, _, v string) bool { return v == "!Ref OwnerJobLimits" },
	"BRIGHTRUN_MAX_IN_FLIGHT":      func(_ *tmpl, _ *testing.T, _, v string) bool { return v == "!Ref MaxRunsInFlight" },
	"BRIGHTRUN_IMPORT_QUEUE_URL":   func(_ *tmpl, _ *testing.T, _, v string) bool { return v == "!Ref ImportQueue" },
	"BRIGHTRUN_IMPORT_S3_PREFIXES": func(_ *tmpl, _ *testing.T, _, v string) bool { return v == `!Join [",","!Ref ImportS3Prefixes"]` },
	// The import queue's maxReceiveCount (TestImportQueueRedrivesToTheImportersAttemptCount).
	"BRIGHTRUN_MAX_IMPORT_ATTEMPTS": func(_ *tmpl, _ *testing.T, _, v string) bool { return v != "" },
	"BRIGHTRUN_PUBLIC_URL": func(_ *tmpl, _ *testing.T, fn, v string) bool {
		// The operator's URL when given; otherwise the API's own, which the
		// dispatcher puts in job specs.
		return strings.HasPrefix(v, "!If ") && strings.Contains(v, `"!Ref PublicBaseUrl"`) &&
			strings.Contains(v, "${HttpApi}.execute-api.${AWS::Region}.${AWS::URLSuffix}")
	},
}

func TestEveryFunctionGetsExactlyTheVariablesItsCodeReads(t *testing.T) {
	m := load(t)
	for _, fn := range functionFolders(t) {
		t.Run(fn, func(t *testing.T) {
			code := readMain(t, fn)
			required, read := loadedVariables(t, code.parts)
			required = append(required, code.getenv...)
			read = append(read, code.getenv...)

			f := m.function(t, logicalID(fn))
			env := map[string]string{}
			if f.Environment != nil {
				env = f.Environment.Variables
			}
			for _, name := range required {
				if _, ok := env[name]; !ok {
					t.Errorf("%s: %s is not set; functions/%s/main.go needs it (parts %s)", logicalID(fn), name, fn, partsString(code.parts))
				}
			}
			for name, v := range env {
				if !slices.Contains(read, name) {
					t.Errorf("%s sets %s, which functions/%s/main.go and awsapp.Load(%s) never read", logicalID(fn), name, fn, partsString(code.parts))
					continue
				}
				check, ok := envValues[name]
				if !ok {
					t.Errorf("%s: %s = %q: this test does not know what that variable should hold (add it to envValues)", logicalID(fn), name, v)
					continue
				}
				if !check(m, t, fn, v) {
					t.Errorf("%s: %s = %q, not what it should hold", logicalID(fn), name, v)
				}
			}
		})
	}
}

func partsString(p awsapp.Part) string {
	var names []string
	for _, n := range slices.Sorted(mapKeys(partNames)) {
		if p&partNames[n] != 0 {
			names = append(names, n)
		}
	}
	return strings.Join(names, "|")
}

func asStrings(v any) []string {
	switch v := v.(type) {
	case string:
		return []string{v}
	case []any:
		var out []string
		for _, x := range v {
			out = append(out, fmt.Sprint(x))
		}
		return out
	}
	return nil
}

// What each function's policies allow is proven by running its code under
// them: see leastprivilege_test.go.

func asAnySlice(v any) []any { s, _ := v.([]any); return s }

func TestTableIsTheStoresSchema(t *testing.T) {
	m := load(t)
	// What dynamo.CreateTable sends, captured by a fake DynamoDB.
	fake := newFakeAWS(t, func(op string, body map[string]any) any {
		switch op {
		case "CreateTable":
			return map[string]any{"TableDescription": map[string]any{"TableName": body["TableName"], "TableStatus": "CREATING"}}
		case "DescribeTable":
			return map[string]any{"Table": map[string]any{"TableName": body["TableName"], "TableStatus": "ACTIVE"}}
		case "DescribeTimeToLive":
			return map[string]any{"TimeToLiveDescription": map[string]any{"TimeToLiveStatus": "DISABLED"}}
		case "UpdateTimeToLive":
			return map[string]any{"TimeToLiveSpecification": body["TimeToLiveSpecification"]}
		}
		return nil
	})
	client := dynamodb.New(dynamodb.Options{
		Region: "us-east-1", BaseEndpoint: aws.String(fake.URL), RetryMaxAttempts: 1,
		Credentials: credentials.NewStaticCredentialsProvider("AKIDTEST", "secret", ""),
	})
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := dynamo.CreateTable(ctx, client, "brightrun-test"); err != nil {
		t.Fatalf("dynamo.CreateTable against the fake: %v", err)
	}
	create := fake.calls["CreateTable"][0]
	ttl := fake.calls["UpdateTimeToLive"][0]["TimeToLiveSpecification"]

	props, _ := m.resource(t, "Table")["Properties"].(map[string]any)
	for _, key := range []string{"BillingMode", "AttributeDefinitions", "KeySchema", "GlobalSecondaryIndexes"} {
		if got, want := canonical(props[key]), canonical(create[key]); got != want {
			t.Errorf("Table.%s = %s, want %s (dynamo.CreateTable)", key, got, want)
		}
	}
	if got, want := canonical(props["TimeToLiveSpecification"]), canonical(ttl); got != want {
		t.Errorf("Table.TimeToLiveSpecification = %s, want %s", got, want)
	}
	if dig(props, "PointInTimeRecoverySpecification", "PointInTimeRecoveryEnabled") != true {
		t.Errorf("Table: point-in-time recovery must be on")
	}
	if r := m.resource(t, "Table"); r["DeletionPolicy"] != "Retain" || r["UpdateReplacePolicy"] != "Retain" {
		t.Errorf("Table: DeletionPolicy and UpdateReplacePolicy must be Retain")
	}
}

// canonical is v as JSON with lists of objects sorted, so that the order of
// attribute definitions and indexes does not matter.
func canonical(v any) string {
	var norm func(v any) any
	norm = func(v any) any {
		switch v := v.(type) {
		case map[string]any:
			out := map[string]any{}
			for k, x := range v {
				out[k] = norm(x)
			}
			return out
		case []any:
			out := make([]any, len(v))
			for i, x := range v {
				out[i] = norm(x)
			}
			if len(out) > 0 {
				if _, ok := out[0].(map[string]any); ok {
					// Key schemas keep their order (HASH first); other lists sort.
					if _, isKey := out[0].(map[string]any)["KeyType"]; !isKey {
						sort.Slice(out, func(i, j int) bool {
							bi, _ := json.Marshal(out[i])
							bj, _ := json.Marshal(out[j])
							return string(bi) < string(bj)
						})
					}
				}
			}
			return out
		}
		return v
	}
	b, _ := json.Marshal(norm(v))
	return string(b)
}

func TestJobsQueueRedrivesToTheDispatchersAttemptCount(t *testing.T) {
	m := load(t)
	q, _ := m.resource(t, "JobsQueue")["Properties"].(map[string]any)
	dispatch := m.function(t, "DispatchFunction")
	if dispatch.Timeout == nil {
		t.Fatal("DispatchFunction: set Timeout (the queue's visibility timeout is 6 x it)")
	}
	if vt, _ := q["VisibilityTimeout"].(float64); int(vt) < 6**dispatch.Timeout {
		t.Errorf("JobsQueue.VisibilityTimeout = %v, want ≥ 6 x DispatchFunction.Timeout = %d", q["VisibilityTimeout"], 6**dispatch.Timeout)
	}
	if w, ok := q["ReceiveMessageWaitTimeSeconds"].(float64); !ok || w != 0 {
		t.Errorf("JobsQueue.ReceiveMessageWaitTimeSeconds = %v, want 0", q["ReceiveMessageWaitTimeSeconds"])
	}
	if got := dig(q, "RedrivePolicy", "deadLetterTargetArn"); got != "!GetAtt JobsDeadLetterQueue.Arn" {
		t.Errorf("JobsQueue's dead-letter target = %v, want !GetAtt JobsDeadLetterQueue.Arn", got)
	}
	maxReceive := dig(q, "RedrivePolicy", "maxReceiveCount")
	if attempts := dispatch.Environment.Variables["BRIGHTRUN_MAX_DISPATCH_ATTEMPTS"]; maxReceive != attempts || attempts == "" {
		t.Errorf("JobsQueue maxReceiveCount = %v, dispatch's BRIGHTRUN_MAX_DISPATCH_ATTEMPTS = %q: they must be one value", maxReceive, attempts)
	}

	ev := dig(m.resource(t, "DispatchFunction"), "Properties", "Events")
	var sqsEvents []any
	for _, e := range ev.(map[string]any) {
		if dig(e, "Type") == "SQS" {
			sqsEvents = append(sqsEvents, dig(e, "Properties"))
		}
	}
	if len(sqsEvents) != 1 {
		t.Fatalf("DispatchFunction has %d SQS events, want 1", len(sqsEvents))
	}
	p := sqsEvents[0]
	if dig(p, "Queue") != "!GetAtt JobsQueue.Arn" {
		t.Errorf("dispatch's SQS event reads %v, want the jobs queue", dig(p, "Queue"))
	}
	if !slices.Contains(asStrings(dig(p, "FunctionResponseTypes")), "ReportBatchItemFailures") {
		t.Errorf("dispatch's SQS event: FunctionResponseTypes must hold ReportBatchItemFailures (the handler reports partial batch failures)")
	}
	if dig(p, "BatchSize") == nil || dig(p, "ScalingConfig", "MaximumConcurrency") == nil {
		t.Errorf("dispatch's SQS event: set BatchSize and ScalingConfig.MaximumConcurrency")
	}
	for _, name := range []string{"JobsDeadLetterQueue", "ValidateDeadLetterQueue"} {
		if !m.hasAlarm("AWS/SQS", "ApproximateNumberOfMessagesVisible", "QueueName", "!GetAtt "+name+".QueueName") {
			t.Errorf("no alarm on %s holding messages", name)
		}
	}
}

// The import queue gives the imports function as many deliveries as it
// counts (its last ends the dataset invalid), hides a message for longer
// than a copy may take, and moves what is left to a watched dead-letter
// queue; the function reports partial batch failures.
func TestImportQueueRedrivesToTheImportersAttemptCount(t *testing.T) {
	m := load(t)
	q, _ := m.resource(t, "ImportQueue")["Properties"].(map[string]any)
	imports := m.function(t, "ImportsFunction")
	if imports.Timeout == nil {
		t.Fatal("ImportsFunction: set Timeout (the queue's visibility timeout is 6 x it)")
	}
	if vt, _ := q["VisibilityTimeout"].(float64); int(vt) < 6**imports.Timeout {
		t.Errorf("ImportQueue.VisibilityTimeout = %v, want ≥ 6 x ImportsFunction.Timeout = %d", q["VisibilityTimeout"], 6**imports.Timeout)
	}
	if got := dig(q, "RedrivePolicy", "deadLetterTargetArn"); got != "!GetAtt ImportDeadLetterQueue.Arn" {
		t.Errorf("ImportQueue's dead-letter target = %v, want !GetAtt ImportDeadLetterQueue.Arn", got)
	}
	if maxReceive, attempts := fmt.Sprint(dig(q, "RedrivePolicy", "maxReceiveCount")), imports.Environment.Variables["BRIGHTRUN_MAX_IMPORT_ATTEMPTS"]; maxReceive != attempts {
		t.Errorf("ImportQueue maxReceiveCount = %v, imports' BRIGHTRUN_MAX_IMPORT_ATTEMPTS = %q: they must be one value", maxReceive, attempts)
	}
	ev := dig(m.resource(t, "ImportsFunction"), "Properties", "Events", "ImportQueue", "Properties")
	if dig(ev, "Queue") != "!GetAtt ImportQueue.Arn" || !slices.Contains(asStrings(dig(ev, "FunctionResponseTypes")), "ReportBatchItemFailures") {
		t.Errorf("ImportsFunction's SQS event = %v, want the import queue with ReportBatchItemFailures", ev)
	}
	if !m.hasAlarm("AWS/SQS", "ApproximateNumberOfMessagesVisible", "QueueName", "!GetAtt ImportDeadLetterQueue.QueueName") {
		t.Errorf("no alarm on ImportDeadLetterQueue holding messages")
	}
}

func (m *tmpl) hasAlarm(namespace, metric, dimension, value string) bool {
	for _, r := range m.resources() {
		if dig(r, "Type") != "AWS::CloudWatch::Alarm" {
			continue
		}
		p := dig(r, "Properties")
		if dig(p, "Namespace") != namespace || dig(p, "MetricName") != metric || len(asAnySlice(dig(p, "AlarmActions"))) == 0 {
			continue
		}
		for _, d := range asAnySlice(dig(p, "Dimensions")) {
			if dig(d, "Name") == dimension && dig(d, "Value") == value {
				return true
			}
		}
	}
	return false
}

func TestEveryFunctionHasErrorAndThrottleAlarms(t *testing.T) {
	m := load(t)
	for _, fn := range functionFolders(t) {
		for _, metric := range []string{"Errors", "Throttles"} {
			if !m.hasAlarm("AWS/Lambda", metric, "FunctionName", "!Ref "+logicalID(fn)) {
				t.Errorf("no %s alarm (with an action) on %s", metric, logicalID(fn))
			}
		}
	}
}

func TestUploadsReachValidateWithoutALoop(t *testing.T) {
	m := load(t)
	validate := m.resource(t, "ValidateFunction")
	var s3 any
	for _, e := range dig(validate, "Properties", "Events").(map[string]any) {
		if dig(e, "Type") == "S3" {
			s3 = dig(e, "Properties")
		}
	}
	if s3 == nil {
		t.Fatal("ValidateFunction has no S3 event")
	}
	if dig(s3, "Bucket") != "!Ref DatasetBucket" || dig(s3, "Events") != "s3:ObjectCreated:*" {
		t.Errorf("validate's S3 event = %v, want s3:ObjectCreated:* of DatasetBucket", s3)
	}
	rules := map[string]string{}
	for _, r := range asAnySlice(dig(s3, "Filter", "S3Key", "Rules")) {
		rules[fmt.Sprint(dig(r, "Name"))] = fmt.Sprint(dig(r, "Value"))
	}
	matches := func(key string) bool {
		return strings.HasPrefix(key, rules["prefix"]) && strings.HasSuffix(key, rules["suffix"])
	}
	upload := pipeline.DatasetKey("alice", "ds_1")
	if rules["prefix"] != "datasets/" || rules["suffix"] != ".jsonl" || !matches(upload) {
		t.Errorf("validate's S3 filter = %v, want prefix datasets/ and suffix .jsonl (uploads are %s)", rules, upload)
	}
	for _, key := range []string{pipeline.ReportKey(upload), pipeline.ArtifactKey("alice", "job_1", 1, "adapter_model.safetensors")} {
		if matches(key) {
			t.Errorf("validate's S3 filter matches %s, which the functions write: a loop", key)
		}
	}

	b, _ := m.resource(t, "DatasetBucket")["Properties"].(map[string]any)
	if got := canonical(b["PublicAccessBlockConfiguration"]); got != `{"BlockPublicAcls":true,"BlockPublicPolicy":true,"IgnorePublicAcls":true,"RestrictPublicBuckets":true}` {
		t.Errorf("DatasetBucket must block all public access, got %s", got)
	}
	if dig(b, "BucketEncryption", "ServerSideEncryptionConfiguration") == nil {
		t.Errorf("DatasetBucket must be encrypted")
	}
	cors := asAnySlice(dig(b, "CorsConfiguration", "CorsRules"))
	if len(cors) == 0 || !slices.Contains(asStrings(dig(cors[0], "AllowedMethods")), "PUT") || !slices.Contains(asStrings(dig(cors[0], "ExposedHeaders")), "ETag") {
		t.Errorf("DatasetBucket's CORS must allow PUT and expose ETag (browser multipart uploads read each part's ETag)")
	}
	abort := false
	for _, r := range asAnySlice(dig(b, "LifecycleConfiguration", "Rules")) {
		abort = abort || (dig(r, "Status") == "Enabled" && dig(r, "AbortIncompleteMultipartUpload", "DaysAfterInitiation") != nil)
	}
	if !abort {
		t.Errorf("DatasetBucket needs a lifecycle rule aborting incomplete multipart uploads")
	}
}

func TestSecretsAreGeneratedNotParameters(t *testing.T) {
	m := load(t)
	for name, p := range m.cf.Parameters {
		if aws.ToBool(p.NoEcho) {
			t.Errorf("parameter %s is NoEcho: secrets belong in Secrets Manager", name)
		}
		if low := strings.ToLower(name); strings.Contains(low, "secret") || strings.Contains(low, "apikey") || strings.Contains(low, "password") {
			t.Errorf("parameter %s looks like a secret: secrets belong in Secrets Manager", name)
		}
	}
	// One value a secret, as awsapp reads them: generated at creation, or
	// (the RunPod API key) created empty for the operator to fill, so
	// that the key never passes through CloudFormation.
	tests := []struct {
		secret  string
		minLen  int // of the generated value; 0: created empty
		env     string
		outputs string
	}{
		{"RunPodApiKeySecret", 0, awsapp.EnvRunPodKeyARN, "RunPodApiKeySecretArn"},
		{"CallbackMasterSecret", awsapp.MinCallbackMasterLen, awsapp.EnvCallbackMasterARN, "CallbackMasterSecretArn"},
		{"CursorKeySecret", dynamo.MinCursorKeyLen, awsapp.EnvCursorKeyARN, "CursorKeySecretArn"},
	}
	declared := map[string]bool{}
	for name, r := range m.raw["Resources"].(map[string]any) {
		if dig(r, "Type") == "AWS::SecretsManager::Secret" {
			declared[name] = true
		}
	}
	for _, tt := range tests {
		t.Run(tt.secret, func(t *testing.T) {
			if !declared[tt.secret] {
				t.Fatalf("no secret %s", tt.secret)
			}
			delete(declared, tt.secret)
			props := dig(m.resource(t, tt.secret), "Properties")
			if v := dig(props, "SecretString"); v != nil {
				t.Errorf("%s has a SecretString: its value would pass through CloudFormation", tt.secret)
			}
			gen := dig(props, "GenerateSecretString")
			switch {
			case tt.minLen == 0 && gen != nil:
				t.Errorf("%s is generated; the operator sets it after deploying, so it must be created empty", tt.secret)
			case tt.minLen > 0 && gen == nil:
				t.Errorf("%s is not generated", tt.secret)
			case tt.minLen > 0:
				if dig(gen, "SecretStringTemplate") != nil || dig(gen, "GenerateStringKey") != nil {
					t.Errorf("%s generates a JSON document; awsapp reads the bare value", tt.secret)
				}
				if n, _ := dig(gen, "PasswordLength").(float64); int(n) < tt.minLen {
					t.Errorf("%s is %v characters; awsapp wants at least %d", tt.secret, n, tt.minLen)
				}
			}
			if v := dig(m.raw, "Outputs", tt.outputs, "Value"); v != "!Ref "+tt.secret {
				t.Errorf("output %s = %v, want !Ref %s", tt.outputs, v, tt.secret)
			}
		})
	}
	for name := range declared {
		t.Errorf("secret %s is none of the ones awsapp reads", name)
	}
	for _, out := range []string{"ApiUrl", "DatasetBucketName", "TableName", "JobsQueueUrl"} {
		if _, ok := m.cf.Outputs[out]; !ok {
			t.Errorf("no output %s", out)
		}
	}
}

// A function whose routes hand list cursors to clients signs them with the
// cursor key every instance shares (the Cursors part, and so the secret);
// the others need neither: their cursors never leave the process.
func TestOnlyFunctionsThatHandOutCursorsReadTheCursorKey(t *testing.T) {
	var doc struct {
		Paths      map[string]map[string]json.RawMessage
		Components struct{ Parameters map[string]openAPIParameter }
	}
	if err := json.Unmarshal(httpapi.OpenAPIDocument, &doc); err != nil {
		t.Fatal(err)
	}
	hasCursor := func(method, path string) bool {
		var op struct{ Parameters []openAPIParameter }
		_ = json.Unmarshal(doc.Paths[path][strings.ToLower(method)], &op)
		var shared []openAPIParameter
		_ = json.Unmarshal(doc.Paths[path]["parameters"], &shared)
		for _, p := range append(op.Parameters, shared...) {
			if ref, ok := strings.CutPrefix(p.Ref, "#/components/parameters/"); ok {
				p = doc.Components.Parameters[ref]
			}
			if p.In == "query" && p.Name == "cursor" {
				return true
			}
		}
		return false
	}
	lists := map[string][]string{}
	for _, rt := range (&httpapi.Server{}).Routes() {
		if _, ok := doc.Paths[rt.Path]; !ok {
			t.Fatalf("route %s %s is not in the OpenAPI document", rt.Method, rt.Path)
		}
		if hasCursor(rt.Method, rt.Path) {
			lists[rt.Function] = append(lists[rt.Function], rt.Method+" "+rt.Path)
		}
	}
	if len(lists) == 0 {
		t.Fatal("no route of the OpenAPI document takes a cursor")
	}
	for _, fn := range functionFolders(t) {
		parts := readMain(t, fn).parts
		switch got := parts&awsapp.Cursors != 0; {
		case len(lists[fn]) > 0 && !got:
			t.Errorf("functions/%s hands out cursors (%s) but does not load awsapp.Cursors: each instance would sign them with a key of its own", fn, strings.Join(lists[fn], ", "))
		case len(lists[fn]) == 0 && got:
			t.Errorf("functions/%s loads awsapp.Cursors but hands out no cursor: it needs no cursor key secret", fn)
		}
	}
}

type openAPIParameter struct {
	Ref  string `json:"$ref"`
	Name string
	In   string
}

// references returns the resources a value refers to: !Ref, !GetAtt and
// ${X} in !Sub, inside every marker.
func references(v any, into map[string]bool) {
	switch v := v.(type) {
	case map[string]any:
		for _, x := range v {
			references(x, into)
		}
	case []any:
		for _, x := range v {
			references(x, into)
		}
	case string:
		switch {
		case strings.HasPrefix(v, "!Ref "):
			into[strings.TrimPrefix(v, "!Ref ")] = true
		case strings.HasPrefix(v, "!GetAtt "):
			name, _, _ := strings.Cut(strings.TrimPrefix(v, "!GetAtt "), ".")
			into[name] = true
		case strings.HasPrefix(v, "!Sub "):
			body, vars, _ := strings.Cut(strings.TrimPrefix(v, "!Sub "), " ")
			for _, m := range regexp.MustCompile(`\$\{([A-Za-z0-9]+)[.}]`).FindAllStringSubmatch(body, -1) {
				into[m[1]] = true
			}
			var x any
			if json.Unmarshal([]byte(vars), &x) == nil {
				references(x, into)
			}
		case strings.HasPrefix(v, "!"):
			_, args, _ := strings.Cut(v, " ")
			var x any
			if json.Unmarshal([]byte(args), &x) == nil {
				references(x, into)
			}
		}
	}
}

// TestNoCircularDependency checks what cfn-lint and sam validate do not
// see: the edges SAM's transform adds. An HttpApi event puts the function's
// ARN in the API's definition (the API depends on the function); an S3 event
// puts it in the bucket's notification configuration (the bucket depends on
// the function). A function referring back to either is a cycle that only
// CloudFormation reports, at deploy time.
func TestNoCircularDependency(t *testing.T) {
	m := load(t)
	res := m.resources()
	deps := map[string]map[string]bool{}
	for name, r := range res {
		d := map[string]bool{}
		props, _ := dig(r, "Properties").(map[string]any)
		for k, v := range props {
			// A function's events become resources of their own (permissions,
			// mappings, rules) that depend on the function, not the reverse.
			if k == "Events" && dig(r, "Type") == "AWS::Serverless::Function" {
				continue
			}
			references(v, d)
		}
		for _, x := range asStrings(dig(r, "DependsOn")) {
			d[x] = true
		}
		for x := range d {
			if _, ok := res[x]; !ok {
				delete(d, x)
			}
		}
		deps[name] = d
	}
	for fn, r := range res {
		if dig(r, "Type") != "AWS::Serverless::Function" {
			continue
		}
		events, _ := dig(r, "Properties", "Events").(map[string]any)
		for _, e := range events {
			var on string
			switch dig(e, "Type") {
			case "HttpApi":
				on, _ = dig(e, "Properties", "ApiId").(string)
			case "S3":
				on, _ = dig(e, "Properties", "Bucket").(string)
			}
			if target, ok := strings.CutPrefix(on, "!Ref "); ok {
				deps[target][fn] = true
			}
		}
	}
	state := map[string]int{}
	var stack []string
	var visit func(n string)
	visit = func(n string) {
		state[n] = 1
		stack = append(stack, n)
		for _, d := range slices.Sorted(mapKeys(deps[n])) {
			switch state[d] {
			case 0:
				visit(d)
			case 1:
				i := slices.Index(stack, d)
				t.Errorf("circular dependency: %s -> %s", strings.Join(stack[i:], " -> "), d)
			}
		}
		stack = stack[:len(stack)-1]
		state[n] = 2
	}
	for _, n := range slices.Sorted(mapKeys(deps)) {
		if state[n] == 0 {
			visit(n)
		}
	}
}

// ------------------------------------------------------------------ tools

// requirement returns the version infra/requirements.txt pins for pkg.
func requirement(t *testing.T, pkg string) string {
	data, err := os.ReadFile("requirements.txt")
	if err != nil {
		t.Fatal(err)
	}
	for _, line := range strings.Split(string(data), "\n") {
		if v, ok := strings.CutPrefix(strings.TrimSpace(line), pkg+"=="); ok {
			return v
		}
	}
	t.Fatalf("infra/requirements.txt pins no %s", pkg)
	return ""
}

// tool finds a command of infra/requirements.txt, or skips (fails with
// BRIGHTRUN_REQUIRE_TOOLS=1).
func tool(t *testing.T, name, pkg string) string {
	t.Helper()
	p, err := exec.LookPath(name)
	if err != nil {
		msg := fmt.Sprintf("%s is not installed (make setup installs it under .cache/sam; make test puts .cache/bin on PATH)", name)
		if os.Getenv(infra.RequireToolsEnv) == "1" {
			t.Fatalf("%s; %s=1, so this is a failure", msg, infra.RequireToolsEnv)
		}
		t.Skipf("%s; skipping (%s=1 makes this a failure)", msg, infra.RequireToolsEnv)
	}
	out, _ := exec.Command(p, "--version").CombinedOutput()
	if want := requirement(t, pkg); !strings.Contains(string(out), want) {
		t.Logf("%s --version = %q; infra/requirements.txt pins %s==%s", name, strings.TrimSpace(string(out)), pkg, want)
	}
	return p
}

// offline is the environment of the tools: a region and dummy credentials,
// no telemetry; nothing they do needs AWS.
func offline() []string {
	var env []string
	for _, kv := range os.Environ() {
		if !strings.HasPrefix(kv, "AWS_") {
			env = append(env, kv)
		}
	}
	return append(env, "AWS_DEFAULT_REGION=us-east-1", "AWS_REGION=us-east-1", "AWS_ACCESS_KEY_ID=AKIDTEST",
		"AWS_SECRET_ACCESS_KEY=secret", "AWS_EC2_METADATA_DISABLED=true", "SAM_CLI_TELEMETRY=0")
}

func run(t *testing.T, timeout time.Duration, dir string, argv ...string) string {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	cmd := exec.CommandContext(ctx, argv[0], argv[1:]...)
	cmd.Dir, cmd.Env = dir, offline()
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("%s: %v\n%s", strings.Join(argv, " "), err, out)
	}
	return string(out)
}

func TestCfnLint(t *testing.T) {
	lint := tool(t, "cfn-lint", "cfn-lint")
	run(t, 5*time.Minute, root, lint, "template.yaml")
}

func TestSamValidateLint(t *testing.T) {
	sam := tool(t, "sam", "aws-sam-cli")
	out := run(t, 5*time.Minute, root, sam, "validate", "--lint", "--template-file", "template.yaml")
	if !strings.Contains(out, "is a valid SAM Template") {
		t.Errorf("sam validate --lint:\n%s", out)
	}
}

// TestSamBuild runs the makefile builder (infra/sam.mk) as `sam build`
// does on deploy, and checks the seven bootstraps are static linux/arm64
// executables.
func TestSamBuild(t *testing.T) {
	if testing.Short() {
		t.Skip("sam build compiles seven functions: skipped with -short")
	}
	sam := tool(t, "sam", "aws-sam-cli")
	out := t.TempDir()
	run(t, 10*time.Minute, root, sam, "build", "--template-file", "template.yaml",
		"--build-dir", filepath.Join(out, "build"), "--cache-dir", filepath.Join(out, "cache"))
	for _, fn := range functionFolders(t) {
		bin := filepath.Join(out, "build", logicalID(fn), "bootstrap")
		f, err := elf.Open(bin)
		if err != nil {
			t.Errorf("%s: %v", path.Join(logicalID(fn), "bootstrap"), err)
			continue
		}
		interp := f.Section(".interp") != nil
		machine := f.Machine
		f.Close()
		if machine != elf.EM_AARCH64 || interp {
			t.Errorf("%s/bootstrap: machine %v, dynamic %v; want a static arm64 executable", logicalID(fn), machine, interp)
		}
	}
}
