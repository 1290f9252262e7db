package httpapi_test

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/brightrun/brightrun/shared/api"

	"github.com/brightrun/brightrun/shared/contract"
	"github.com/brightrun/brightrun/shared/httpapi"
	"github.com/brightrun/brightrun/shared/pipeline"
)

// The security sweep: every route without or with bad credentials, every
// route with another owner's real ids, hostile JSON, hostile names and
// headers, and forged or replayed callbacks. It iterates over Routes(), so
// a new route is swept (or fails, asking for its fixture) automatically.
// Run with -v for the table of checks.

// sweepTable collects the sweep's checks and their results.
type sweepTable struct {
	rows [][2]string
}

// check runs one check as a subtest; f returns what it saw.
func (s *sweepTable) check(t *testing.T, name string, f func(t *testing.T) string) {
	t.Helper()
	result := ""
	if !t.Run(name, func(t *testing.T) { result = f(t) }) {
		result = "FAIL"
	}
	s.rows = append(s.rows, [2]string{name, result})
}

func (s *sweepTable) log(t *testing.T) {
	t.Helper()
	var b strings.Builder
	width := 0
	for _, r := range s.rows {
		width = max(width, len(r[0]))
	}
	fmt.Fprintf(&b, "security sweep:\n%-*s  %s\n", width, "check", "result")
	for _, r := range s.rows {
		fmt.Fprintf(&b, "%-*s  %s\n", width, r[0], r[1])
	}
	t.Log(b.String())
}

// sweepDo makes a request with exactly the headers given; it checks the
// error shape of a 4xx or 5xx answer.
func (a *testAPI) sweepDo(t *testing.T, method, path string, h http.Header, body string) (int, http.Header, []byte) {
	t.Helper()
	req, err := http.NewRequest(method, a.srv.URL+path, strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	for k, v := range h {
		req.Header[k] = v
	}
	resp, err := a.srv.Client().Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	data, _ := io.ReadAll(resp.Body)
	if resp.StatusCode >= 400 {
		var e api.ErrorBody
		if err := json.Unmarshal(data, &e); err != nil || e.Error.Code == "" || e.Error.Message == "" {
			t.Errorf("%s %s = %d with body %q, want the error shape", method, path, resp.StatusCode, data)
		}
	}
	return resp.StatusCode, resp.Header, data
}

// sweepState is everything stored of owner's, as JSON: the records (with
// their versions), the job logs, the notifications and which objects exist.
func (a *testAPI) sweepState(t *testing.T, owner string) string {
	t.Helper()
	ctx := context.Background()
	all := pipeline.Page{Limit: pipeline.MaxPageSize}
	ds, _, err := a.store.ListDatasets(ctx, owner, all)
	if err != nil {
		t.Fatal(err)
	}
	jobs, _, err := a.store.ListJobs(ctx, owner, pipeline.JobFilter{}, all)
	if err != nil {
		t.Fatal(err)
	}
	state := map[string]any{"datasets": ds, "jobs": jobs}
	for _, d := range ds {
		for _, key := range []string{d.ObjectKey, pipeline.ReportKey(d.ObjectKey)} {
			info, err := a.blobs.Stat(ctx, key)
			state["object "+key] = fmt.Sprint(info, pipeline.ErrorCode(err))
		}
	}
	for _, j := range jobs {
		evs, _, _ := a.store.ListEvents(ctx, owner, j.ID, all)
		pts, _, _ := a.store.ListMetrics(ctx, owner, j.ID, all)
		state["events "+j.ID], state["metrics "+j.ID] = evs, pts
	}
	state["notifications"], _, _ = a.store.ListNotifications(ctx, owner, all)
	eps, _, _ := a.store.ListWebhookEndpoints(ctx, owner, all)
	state["webhooks"] = eps
	for _, e := range eps {
		state["deliveries "+e.ID], _, _ = a.store.ListWebhookDeliveries(ctx, owner, e.ID, all)
	}
	out, _ := json.Marshal(state)
	return string(out)
}

// sweepFixture is alice's real records, in every state a route acts on.
type sweepFixture struct {
	datasets []string // awaiting a single upload, mid multipart upload, ready with its report
	jobs     []string // queued, completed with artifacts, metrics and a notification
	// webhook is an endpoint and delivery one of its deliveries.
	webhook, delivery string
}

func (a *testAPI) sweepRecords(t *testing.T) sweepFixture {
	t.Helper()
	ctx := context.Background()
	var fx sweepFixture
	for _, body := range []string{`{"name":"single","size_bytes":100}`, `{"name":"parts","size_bytes":12582929}`} {
		var c created
		if status := a.call("POST", "/v1/datasets", "alice-token", body, &c); status != 201 {
			t.Fatalf("create dataset = %d", status)
		}
		fx.datasets = append(fx.datasets, c.Dataset.ID)
	}
	a.readyDataset("alice", "ds_alice_ready", pipeline.DatasetReady)
	report := `{"valid":true}`
	if _, err := a.blobs.Put(ctx, pipeline.ReportKey(pipeline.DatasetKey("alice", "ds_alice_ready")), strings.NewReader(report), int64(len(report))); err != nil {
		t.Fatal(err)
	}
	fx.datasets = append(fx.datasets, "ds_alice_ready")

	var queued api.JobView
	if status := a.postJob("alice-token", "alice-key", `{"dataset_id":"ds_alice_ready"}`, &queued); status != 201 {
		t.Fatalf("create job = %d", status)
	}
	a.submittedJob("job_alice_done")
	for name, content := range map[string]string{contract.ArtifactAdapterConfig: "{}", contract.ArtifactAdapterModel: "0123456789"} {
		if _, err := a.blobs.Put(ctx, pipeline.ArtifactKey("alice", "job_alice_done", 2, name), strings.NewReader(content), int64(len(content))); err != nil {
			t.Fatal(err)
		}
	}
	sha := strings.Repeat("ab", 32)
	for i, cb := range []struct {
		typ  contract.CallbackType
		data string
	}{
		{contract.TypeStarted, `{"worker_id":"w1","runpod_job_id":"rp-1","worker_version":"1","gpu":null}`},
		{contract.TypeProgress, fmt.Sprintf(progress, 10, 1.5)},
		{contract.TypeArtifact, `{"name":"adapter_config.json","size_bytes":2,"sha256":"` + sha + `"}`},
		{contract.TypeArtifact, `{"name":"adapter_model.safetensors","size_bytes":10,"sha256":"` + sha + `"}`},
		{contract.TypeCompleted, `{"final_loss":1.2,"steps":100,"train_seconds":50,"tokens_trained":1000,"metrics":{}}`},
	} {
		if status, _ := a.callback("alice", "job_alice_done", 2, int64(i+1), cb.typ, cb.data, nil); status != 200 {
			t.Fatalf("callback %s = %d", cb.typ, status)
		}
	}
	if j := a.job("job_alice_done"); j.Status != pipeline.JobCompleted || len(j.Artifacts) != 2 {
		t.Fatalf("job_alice_done is %s with %d artifacts, want completed with 2", j.Status, len(j.Artifacts))
	}
	fx.jobs = []string{queued.ID, "job_alice_done"}

	var ep api.WebhookEndpointSecret
	if status := a.call("POST", "/v1/webhooks", "alice-token", `{"url":"http://127.0.0.1:9/hook"}`, &ep); status != 201 {
		t.Fatalf("create webhook = %d", status)
	}
	now := time.Now().UTC()
	d := &pipeline.WebhookDelivery{ID: "whd_alice", Owner: "alice", EndpointID: ep.ID, EventID: "msg_alice", EventType: pipeline.EventJobCompleted,
		Payload: json.RawMessage(`{"type":"job.completed"}`), Status: pipeline.DeliveryDelivered, CreatedAt: now, UpdatedAt: now}
	if err := a.store.CreateWebhookDelivery(ctx, d); err != nil {
		t.Fatal(err)
	}
	fx.webhook, fx.delivery = ep.ID, d.ID
	return fx
}

// sweepPaths fills a route's path parameters with each of alice's real
// ids of the kind the route takes.
func sweepPaths(t *testing.T, rt httpapi.Route, fx sweepFixture) []string {
	t.Helper()
	var ids []string
	switch {
	case !strings.Contains(rt.Path, "{"):
		return []string{rt.Path}
	case strings.HasPrefix(rt.Path, "/v1/datasets/{id}"):
		ids = fx.datasets
	case strings.HasPrefix(rt.Path, "/v1/jobs/{id}"):
		ids = fx.jobs
	case strings.HasPrefix(rt.Path, "/v1/webhooks/{id}"):
		return []string{strings.NewReplacer("{id}", fx.webhook, "{delivery_id}", fx.delivery).Replace(rt.Path)}
	default:
		t.Fatalf("route %s %s has a path parameter the sweep cannot fill: give it records in sweepRecords and ids in sweepPaths", rt.Method, rt.Path)
	}
	var out []string
	for _, id := range ids {
		out = append(out, strings.Replace(rt.Path, "{id}", id, 1))
	}
	return out
}

// sweepBodies are valid bodies for the routes that read one before they
// look a record up: with them, a 404 comes from the lookup.
var sweepBodies = map[string]string{
	"POST /v1/datasets/{id}/complete": `{"parts":[{"part_number":1,"etag":"x"}]}`,
	"POST /v1/datasets":               `{"name":"x","size_bytes":10}`,
	"POST /v1/estimates":              `{"dataset_id":"ds_alice_ready"}`,
	"POST /v1/jobs":                   `{"dataset_id":"ds_alice_ready"}`,
	"POST /v1/webhooks":               `{"url":"https://hooks.example.com/"}`,
	"PATCH /v1/webhooks/{id}":         `{"description":"x"}`,
}

func TestSecuritySweep(t *testing.T) {
	a := newTestAPI(t, httpapi.Config{MultipartThreshold: 6 << 20, PartSize: 5 << 20})
	a.api.CallbackSecret = master
	fx := a.sweepRecords(t)
	var table sweepTable
	defer table.log(t)

	var userRoutes, webhookRoutes []httpapi.Route
	for _, rt := range a.api.Routes() {
		if rt.Function == httpapi.FnWebhook {
			webhookRoutes = append(webhookRoutes, rt)
		} else {
			userRoutes = append(userRoutes, rt)
		}
	}

	table.check(t, "every user route without or with bad credentials is 401", func(t *testing.T) string {
		before := a.sweepState(t, "alice")
		n := 0
		for _, rt := range userRoutes {
			for _, path := range sweepPaths(t, rt, fx) {
				for name, c := range map[string]struct {
					query string
					h     http.Header
				}{
					"no Authorization":        {"", http.Header{}},
					"an unknown token":        {"", http.Header{"Authorization": {"Bearer nope"}}},
					"another scheme":          {"", http.Header{"Authorization": {"Basic YWxpY2U6YWxpY2UtdG9rZW4="}}},
					"an empty bearer":         {"", http.Header{"Authorization": {"Bearer "}}},
					"a token without scheme":  {"", http.Header{"Authorization": {"alice-token"}}},
					"a token with a suffix":   {"", http.Header{"Authorization": {"Bearer alice-token2"}}},
					"a prefix of a token":     {"", http.Header{"Authorization": {"Bearer alice-toke"}}},
					"the token in a cookie":   {"", http.Header{"Cookie": {"token=alice-token"}}},
					"the token in the query":  {"?access_token=alice-token&token=alice-token", http.Header{}},
					"two Authorization lines": {"", http.Header{"Authorization": {"Bearer nope", "Bearer alice-token"}}},
				} {
					status, rh, _ := a.sweepDo(t, rt.Method, path+c.query, c.h, sweepBodies[rt.Method+" "+rt.Path])
					if status != 401 || !strings.HasPrefix(rh.Get("WWW-Authenticate"), "Bearer") {
						t.Errorf("%s %s with %s = %d (WWW-Authenticate %q), want 401 with a Bearer challenge", rt.Method, path, name, status, rh.Get("WWW-Authenticate"))
					}
					n++
				}
			}
		}
		if after := a.sweepState(t, "alice"); after != before {
			t.Errorf("unauthenticated requests changed alice's records")
		}
		return fmt.Sprintf("401 ×%d (%d routes × 10 credentials), nothing changed", n, len(userRoutes))
	})

	table.check(t, "every user route with another owner's real ids is 404", func(t *testing.T) string {
		before := a.sweepState(t, "alice")
		n := 0
		for _, rt := range userRoutes {
			if !strings.Contains(rt.Path, "{") {
				continue
			}
			for _, path := range sweepPaths(t, rt, fx) {
				status, _, body := a.sweepDo(t, rt.Method, path, http.Header{"Authorization": {"Bearer bob-token"}}, sweepBodies[rt.Method+" "+rt.Path])
				if status != 404 {
					t.Errorf("bob %s %s = %d %s, want 404", rt.Method, path, status, body)
				}
				n++
			}
		}
		if after := a.sweepState(t, "alice"); after != before {
			t.Errorf("bob's requests changed alice's records:\nbefore %s\nafter  %s", before, after)
		}
		return fmt.Sprintf("404 ×%d, alice's records unchanged", n)
	})

	table.check(t, "another owner's ids in a body or a list are not found", func(t *testing.T) string {
		before := a.sweepState(t, "alice")
		for _, id := range fx.datasets {
			body := `{"dataset_id":"` + id + `"}`
			if status := a.call("POST", "/v1/estimates", "bob-token", body, nil); status != 404 {
				t.Errorf("bob estimating on alice's dataset %s = %d, want 404", id, status)
			}
			if status := a.postJob("bob-token", "", body, nil); status != 404 {
				t.Errorf("bob creating a job on alice's dataset %s = %d, want 404", id, status)
			}
		}
		if status := a.postJob("bob-token", "alice-key", `{"dataset_id":"ds_alice_ready"}`, nil); status != 404 {
			t.Errorf("bob replaying alice's Idempotency-Key = %d, want 404 (keys are per owner)", status)
		}
		shown := 0
		for _, rt := range userRoutes {
			if rt.Method != "GET" || strings.Contains(rt.Path, "{") {
				continue
			}
			_, _, body := a.sweepDo(t, "GET", rt.Path, http.Header{"Authorization": {"Bearer bob-token"}}, "")
			for _, id := range append(fx.datasets, fx.jobs...) {
				if strings.Contains(string(body), id) {
					t.Errorf("bob's GET %s shows alice's %s", rt.Path, id)
				}
			}
			shown++
		}
		if after := a.sweepState(t, "alice"); after != before {
			t.Errorf("bob's requests changed alice's records")
		}
		return fmt.Sprintf("404 for estimates, jobs and a replayed key; %d lists show none of alice's", shown)
	})

	table.check(t, "callback routes without a signature or token are 401", func(t *testing.T) string {
		before := a.sweepState(t, "alice")
		body := fmt.Sprintf(`{"version":1,"type":"progress","job_id":%q,"attempt":1,"seq":1,"sent_at":%q,"data":%s}`, fx.jobs[0], sentAt(1), fmt.Sprintf(progress, 1, 1.0))
		for _, rt := range webhookRoutes {
			var paths []string
			switch {
			case rt.Path == "/v1/callbacks/worker":
				paths = []string{pipeline.WorkerCallbackURL("", "alice"), pipeline.WorkerCallbackURL("", "bob"), rt.Path}
			case strings.HasSuffix(rt.Path, "/{token}"):
				base := strings.TrimSuffix(rt.Path, "{token}")
				paths = []string{base + "nope", base + "x.y", base + pipeline.WebhookToken([]byte("guessed"), "alice", fx.jobs[0], 1)}
			default:
				t.Fatalf("webhook route %s %s: the sweep does not know how it authenticates", rt.Method, rt.Path)
			}
			for _, p := range paths {
				if status, _, _ := a.sweepDo(t, rt.Method, p, nil, body); status != 401 {
					t.Errorf("%s %s unsigned = %d, want 401", rt.Method, p, status)
				}
			}
		}
		if after := a.sweepState(t, "alice"); after != before {
			t.Errorf("unsigned callbacks changed alice's records")
		}
		return fmt.Sprintf("401 on %d webhook routes, nothing changed", len(webhookRoutes))
	})

	// The routes that read a JSON body: those that call an empty body so.
	type jsonRoute struct{ pattern, method, path string }
	var jsonRoutes []jsonRoute
	for _, rt := range userRoutes {
		path := sweepPaths(t, rt, fx)[0]
		var e api.ErrorBody
		if status := a.call(rt.Method, path, "alice-token", "", &e); status == 400 && strings.Contains(e.Error.Message, "empty") {
			jsonRoutes = append(jsonRoutes, jsonRoute{rt.Method + " " + rt.Path, rt.Method, path})
		}
	}
	if len(jsonRoutes) < 4 {
		t.Fatalf("JSON routes found: %v, want at least the four POSTs with bodies", jsonRoutes)
	}
	deep := func(open, close string) string {
		return strings.Repeat(open, 10000) + strings.Repeat(close, 10000)
	}
	// Each hostile body, by route pattern ("" for any other route): the
	// hostile part sits in a field the route reads.
	hostile := []struct {
		name   string
		bodies map[string]string
		status int // 0: any 4xx
	}{
		{"a body over the limit", map[string]string{"": `{"name":"` + strings.Repeat("a", httpapi.MaxBodyBytes) + `"}`,
			"POST /v1/datasets/{id}/complete": `{"parts":"` + strings.Repeat("a", httpapi.MaxCompleteBodyBytes) + `"}`}, 413},
		{"a body over the limit in whitespace", map[string]string{"": `{` + strings.Repeat(" ", httpapi.MaxBodyBytes) + `}`,
			"POST /v1/datasets/{id}/complete": `{` + strings.Repeat(" ", httpapi.MaxCompleteBodyBytes) + `}`}, 413},
		{"arrays nested 10,000 deep", map[string]string{"": deep("[", "]")}, 400},
		{"objects nested 10,000 deep", map[string]string{"": deep(`{"a":`, "}")}, 400},
		{"a field nested 10,000 deep", map[string]string{
			"POST /v1/datasets":               `{"name":` + deep("[", "]") + `,"size_bytes":10}`,
			"POST /v1/datasets/{id}/complete": `{"parts":` + deep("[", "]") + `}`,
			"":                                `{"dataset_id":"ds_alice_ready","hyperparameters":` + deep(`{"a":`, "}") + `}`}, 400},
		{"invalid UTF-8", map[string]string{
			"POST /v1/datasets":               "{\"name\":\"a\xff\xfeb\",\"size_bytes\":10}",
			"POST /v1/jobs":                   "{\"dataset_id\":\"ds_alice_ready\",\"name\":\"a\xffb\"}",
			"POST /v1/datasets/{id}/complete": "{\"parts\":[{\"part_number\":1,\"etag\":\"\xff\"}]}",
			"":                                "{\"dataset_id\":\"ds_alice_ready\xc3\"}"}, 0},
		{"invalid UTF-8 outside strings", map[string]string{"": "{\xff:1}"}, 400},
		{"a lone surrogate", map[string]string{
			"POST /v1/datasets":               `{"name":"\ud800","size_bytes":10}`,
			"POST /v1/jobs":                   `{"dataset_id":"ds_alice_ready","name":"\udfff"}`,
			"POST /v1/datasets/{id}/complete": `{"parts":[{"part_number":1,"etag":"\ud800"}]}`,
			"":                                `{"dataset_id":"ds_alice_ready\ud800"}`}, 0},
		{"a huge number", map[string]string{
			"POST /v1/datasets":               `{"name":"x","size_bytes":1e400}`,
			"POST /v1/jobs":                   `{"dataset_id":"ds_alice_ready","budget_usd":1e400}`,
			"POST /v1/datasets/{id}/complete": `{"parts":[{"part_number":1e400,"etag":"x"}]}`,
			"":                                `{"dataset_id":"ds_alice_ready","hyperparameters":{"learning_rate":1e400}}`}, 400},
		{"a huge integer", map[string]string{
			"POST /v1/datasets":               `{"name":"x","size_bytes":99999999999999999999999}`,
			"POST /v1/datasets/{id}/complete": `{"parts":[{"part_number":99999999999999999999999,"etag":"x"}]}`,
			"":                                `{"dataset_id":"ds_alice_ready","hyperparameters":{"epochs":99999999999999999999999}}`}, 400},
		{"NaN", map[string]string{"": `{"dataset_id":"ds_alice_ready","budget_usd":NaN}`}, 400},
		{"a BOM before the JSON", map[string]string{"": "\xef\xbb\xbf{}"}, 400},
	}
	for _, h := range hostile {
		table.check(t, "JSON: "+h.name+" is refused", func(t *testing.T) string {
			before := a.sweepState(t, "alice")
			seen := map[int]int{}
			for _, r := range jsonRoutes {
				body, ok := h.bodies[r.pattern]
				if !ok {
					body = h.bodies[""]
				}
				status := a.call(r.method, r.path, "alice-token", body, nil)
				if h.status != 0 && status != h.status || status < 400 || status >= 500 {
					t.Errorf("%s %s with %s = %d, want %s", r.method, r.path, h.name, status, map[bool]string{true: "a 4xx", false: fmt.Sprint(h.status)}[h.status == 0])
				}
				seen[status]++
			}
			if after := a.sweepState(t, "alice"); after != before {
				t.Errorf("%s changed alice's records", h.name)
			}
			return fmt.Sprintf("%s on %d routes", statusCounts(seen), len(jsonRoutes))
		})
	}

	table.check(t, "JSON: duplicate keys: the value checked is the value stored", func(t *testing.T) string {
		if status := a.call("POST", "/v1/datasets", "alice-token", `{"name":"fine","name":"../evil","size_bytes":10}`, nil); status != 400 {
			t.Errorf("a bad last duplicate name = %d, want 400", status)
		}
		var c created
		status := a.call("POST", "/v1/datasets", "alice-token", `{"name":"../evil","name":"fine","size_bytes":10,"size_bytes":20}`, &c)
		if status == 201 {
			d, err := a.store.GetDataset(context.Background(), "alice", c.Dataset.ID)
			if err != nil || d.Name != "fine" || d.SizeBytes != 20 {
				t.Errorf("stored %+v (%v), want the values that were checked: the last ones", d, err)
			}
			a.call("DELETE", "/v1/datasets/"+c.Dataset.ID, "alice-token", "", nil)
			return "accepted, last value wins and is the one checked"
		}
		if status != 400 {
			t.Errorf("a good last duplicate name = %d, want 201 or 400", status)
		}
		return "refused"
	})

	table.check(t, "names with separators, controls or header injection are 400", func(t *testing.T) string {
		before := a.sweepState(t, "alice")
		names := []string{"a/b", "../../etc/passwd", `a\b`, `..\..\x`, "a\r\nX-Injected: 1", "a\nb", "a\rb", "a\x00b", "a\tb", "a\x1b[31mred", "a\u0085b", "a\x7fb", "\u202egnp.exe", "a\u200fb", "a\u2066b", "\u200b", "a\ufeffb", "a\u2028b", "a\u00adb", "a\U000e0041b", "a\ufffeb"}
		for _, name := range names {
			n, _ := json.Marshal(name)
			if status := a.call("POST", "/v1/datasets", "alice-token", `{"name":`+string(n)+`,"size_bytes":10}`, nil); status != 400 {
				t.Errorf("dataset name %q = %d, want 400", name, status)
			}
			if status := a.postJob("alice-token", "", `{"dataset_id":"ds_alice_ready","name":`+string(n)+`}`, nil); status != 400 {
				t.Errorf("job name %q = %d, want 400", name, status)
			}
		}
		if after := a.sweepState(t, "alice"); after != before {
			t.Errorf("refused names changed alice's records")
		}
		return fmt.Sprintf("400 ×%d (dataset and job names), nothing stored", 2*len(names))
	})

	table.check(t, "an Idempotency-Key with header injection or odd bytes is 400", func(t *testing.T) string {
		before := a.sweepState(t, "alice")
		// The client refuses to send these; the handler must refuse them too
		// (other front ends, such as API Gateway, may pass them on).
		keys := []string{"k\r\nX-Injected: 1", "k\nX-Injected: 1", "k\x00", "k k", "k\t", "ключ", "k\x7f", strings.Repeat("k", 256)}
		for _, key := range keys {
			req := httptest.NewRequest("POST", "/v1/jobs", strings.NewReader(`{"dataset_id":"ds_alice_ready"}`))
			req.Header.Set("Authorization", "Bearer alice-token")
			req.Header["Idempotency-Key"] = []string{key}
			rec := httptest.NewRecorder()
			a.api.Handler().ServeHTTP(rec, req)
			if rec.Code != 400 || rec.Header().Get("X-Injected") != "" {
				t.Errorf("Idempotency-Key %q = %d (X-Injected %q), want 400", key, rec.Code, rec.Header().Get("X-Injected"))
			}
		}
		if after := a.sweepState(t, "alice"); after != before {
			t.Errorf("refused keys changed alice's records")
		}
		return fmt.Sprintf("400 ×%d, nothing stored", len(keys))
	})

	a.sweepCallbacks(t, &table)
}

func statusCounts(m map[int]int) string {
	var parts []string
	for _, s := range []int{400, 401, 404, 409, 413} {
		if m[s] > 0 {
			parts = append(parts, fmt.Sprintf("%d ×%d", s, m[s]))
		}
		delete(m, s)
	}
	for s, n := range m {
		parts = append(parts, fmt.Sprintf("%d ×%d", s, n))
	}
	return strings.Join(parts, ", ")
}

// sweepCallbacks: forged, replayed, cross-job and cross-owner callbacks
// are refused and change nothing: the job's record, its events, its
// metric points and the notifications.
func (a *testAPI) sweepCallbacks(t *testing.T, table *sweepTable) {
	a.submittedJob("job_sweep")
	a.submittedJob("job_sweep_other")
	started := `{"worker_id":"w1","runpod_job_id":"rp-1","worker_version":"1","gpu":null}`
	if status, _ := a.callback("alice", "job_sweep", 2, 1, contract.TypeStarted, started, nil); status != 200 {
		t.Fatalf("started = %d", status)
	}
	signAt := func(job string, attempt int, seq int64, at time.Time) func([]byte) http.Header {
		return func(b []byte) http.Header {
			return contract.SignedHeaders(contract.DeriveSecret(master, job), contract.WebhookID("job_sweep", attempt, seq), at, b)
		}
	}
	step := fmt.Sprintf(progress, 50, 0.5)
	refused := []struct {
		name    string
		owner   string
		attempt int
		sign    func([]byte) http.Header
		status  int
	}{
		{"unsigned", "alice", 2, func([]byte) http.Header { return http.Header{} }, 401},
		{"forged signature", "alice", 2, func(b []byte) http.Header {
			h := signAt("job_sweep", 2, 2, time.Now())(b)
			h.Set(contract.HeaderSignature, "v1,"+strings.Repeat("A", 43)+"=")
			return h
		}, 401},
		{"signed with another master secret", "alice", 2, func(b []byte) http.Header {
			return contract.SignedHeaders(contract.DeriveSecret([]byte("guessed master"), "job_sweep"), contract.WebhookID("job_sweep", 2, 2), time.Now(), b)
		}, 401},
		{"signed with the master secret itself", "alice", 2, func(b []byte) http.Header {
			return contract.SignedHeaders(master, contract.WebhookID("job_sweep", 2, 2), time.Now(), b)
		}, 401},
		{"signed with another job's secret", "alice", 2, signAt("job_sweep_other", 2, 2, time.Now()), 401},
		{"replayed after the window", "alice", 2, signAt("job_sweep", 2, 2, time.Now().Add(-contract.Tolerance-time.Minute)), 401},
		{"dated after the window", "alice", 2, signAt("job_sweep", 2, 2, time.Now().Add(contract.Tolerance+time.Minute)), 401},
		{"with a webhook-id of another seq", "alice", 2, signAt("job_sweep", 2, 3, time.Now()), 400},
		{"to another owner's URL", "bob", 2, nil, 410},
		{"from a superseded attempt", "alice", 1, nil, 409},
	}
	for _, r := range refused {
		table.check(t, "callback "+r.name+" is refused", func(t *testing.T) string {
			before := a.sweepState(t, "alice")
			status, ans := a.callback(r.owner, "job_sweep", r.attempt, 2, contract.TypeProgress, step, r.sign)
			if status != r.status {
				t.Errorf("callback %s = %d %+v, want %d", r.name, status, ans, r.status)
			}
			if after := a.sweepState(t, "alice"); after != before {
				t.Errorf("a refused callback (%s) changed the job, its events, metrics or notifications", r.name)
			}
			return strings.TrimSpace(fmt.Sprintf("%d %s", status, ans.Action)) + ", nothing changed"
		})
	}

	table.check(t, "callback replayed within the window is applied once", func(t *testing.T) string {
		var h http.Header
		var body []byte
		capture := func(b []byte) http.Header {
			body, h = b, signAt("job_sweep", 2, 2, time.Now())(b)
			return h
		}
		if status, _ := a.callback("alice", "job_sweep", 2, 2, contract.TypeProgress, step, capture); status != 200 {
			t.Fatalf("the original = %d, want 200", status)
		}
		before := a.sweepState(t, "alice")
		for range 3 {
			if status, _ := a.postCallback(pipeline.WorkerCallbackURL(a.srv.URL, "alice"), h, body); status != 200 {
				t.Errorf("a replay = %d, want 200 (a worker retry is answered alike)", status)
			}
		}
		after := a.sweepState(t, "alice")
		// Only the heartbeat (and so the record's version) may move.
		strip := func(s string) string {
			var m map[string]json.RawMessage
			_ = json.Unmarshal([]byte(s), &m)
			delete(m, "jobs")
			out, _ := json.Marshal(m)
			return string(out)
		}
		if strip(after) != strip(before) {
			t.Errorf("replays added events, metrics or notifications")
		}
		if j := a.job("job_sweep"); j.Progress == nil || j.Progress.Step != 50 || j.Status != pipeline.JobRunning {
			t.Errorf("after replays the job is %s at %+v, want running at step 50", j.Status, j.Progress)
		}
		return "200 ×3, one event, one metric point"
	})

	table.check(t, "RunPod webhook forged or for another job is refused", func(t *testing.T) string {
		before := a.sweepState(t, "alice")
		good := pipeline.WebhookToken(master, "alice", "job_sweep", 2)
		payload, _, _ := strings.Cut(good, ".")
		for name, tc := range map[string]struct {
			token  string
			status int
			action string
		}{
			"a forged token":                {payload + ".AAAA", 401, ""},
			"another master secret's token": {pipeline.WebhookToken([]byte("guessed"), "alice", "job_sweep", 2), 401, ""},
			"another job's MAC":             {payload + "." + strings.SplitN(pipeline.WebhookToken(master, "alice", "job_sweep_other", 2), ".", 2)[1], 401, ""},
			"a superseded attempt's token":  {pipeline.WebhookToken(master, "alice", "job_sweep", 1), 200, "stop"},
			"another owner's token":         {pipeline.WebhookToken(master, "bob", "job_sweep", 2), 200, "stop"},
		} {
			status, ans := a.postCallback(a.srv.URL+"/v1/callbacks/runpod/"+tc.token, nil, []byte(`{"id":"rp-1","status":"COMPLETED"}`))
			if status != tc.status || ans.Action != tc.action {
				t.Errorf("RunPod webhook with %s = %d %+v, want %d %q", name, status, ans, tc.status, tc.action)
			}
		}
		if after := a.sweepState(t, "alice"); after != before {
			t.Errorf("refused webhooks changed alice's records")
		}
		return "401 forged, 200 stop for stale or foreign, nothing changed"
	})
}
