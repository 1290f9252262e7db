package webhooks_test

import (
	"context"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/brightrun/brightrun/shared/local"
	"github.com/brightrun/brightrun/shared/netguard"
	"github.com/brightrun/brightrun/shared/pipeline"
	"github.com/brightrun/brightrun/shared/webhooks"
	"github.com/brightrun/brightrun/shared/webhooks/webhookstest"
)

// clock is a fake clock the service and the queue share.
type clock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *clock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}

func (c *clock) Add(d time.Duration) {
	c.mu.Lock()
	c.t = c.t.Add(d)
	c.mu.Unlock()
}

type harness struct {
	svc   *webhooks.Service
	store *local.Store
	queue *local.Queue
	clock *clock
}

// newHarness is the service over the local store and queue, on a fake
// clock that starts at the real time (so that the library's tolerance of
// 5 minutes holds for the first tries without a fake clock of its own).
func newHarness(t *testing.T, policy netguard.Policy) *harness {
	t.Helper()
	db, err := local.OpenDB(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })
	store, err := local.NewStore(db)
	if err != nil {
		t.Fatal(err)
	}
	c := &clock{t: time.Now().UTC().Truncate(time.Second)}
	q, err := local.NewQueue(db, "webhooks", local.QueueOptions{MaxReceives: 30, Now: c.Now})
	if err != nil {
		t.Fatal(err)
	}
	svc := &webhooks.Service{Store: store, Queue: q, Policy: policy, Now: c.Now}
	return &harness{svc: svc, store: store, queue: q, clock: c}
}

// drain handles every message visible now.
func (h *harness) drain(t *testing.T) {
	t.Helper()
	if err := h.svc.Drain(context.Background(), time.Minute); err != nil {
		t.Fatal(err)
	}
}

func (h *harness) publishJob(t *testing.T, owner, typ string, status pipeline.JobStatus) *pipeline.Job {
	t.Helper()
	now := h.clock.Now()
	j := &pipeline.Job{ID: pipeline.NewID("job", now), Owner: owner, Status: status, DatasetID: "ds_1", BaseModel: "m", GPUType: "g",
		Preset: "balanced", CreatedAt: now, UpdatedAt: now}
	if err := h.svc.Publish(context.Background(), pipeline.OutboundEvent{Type: typ, Owner: owner, Time: now, Job: j}); err != nil {
		t.Fatalf("Publish: %v", err)
	}
	return j
}

func (h *harness) onlyDelivery(t *testing.T, owner, endpointID string) *pipeline.WebhookDelivery {
	t.Helper()
	ds, _, err := h.store.ListWebhookDeliveries(context.Background(), owner, endpointID, pipeline.Page{})
	if err != nil {
		t.Fatal(err)
	}
	if len(ds) != 1 {
		t.Fatalf("deliveries of %s = %d, want 1", endpointID, len(ds))
	}
	return ds[0]
}

func codes(d *pipeline.WebhookDelivery) []int {
	var out []int
	for _, a := range d.Attempts {
		out = append(out, a.StatusCode)
	}
	return out
}

func TestTheRetryScheduleSpansMoreThanADayInWaitsSQSCanHold(t *testing.T) {
	tests := []struct {
		name     string
		schedule []time.Duration
		wantSpan time.Duration
	}{
		{"the default schedule", webhooks.DefaultSchedule, 27*time.Hour + 35*time.Minute + 5*time.Second},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := webhooks.Span(tt.schedule); got != tt.wantSpan || got < 24*time.Hour {
				t.Errorf("Span = %s, want %s (at least 24h)", got, tt.wantSpan)
			}
			if tt.schedule[0] != 0 {
				t.Errorf("first wait = %s, want 0 (the first try at once)", tt.schedule[0])
			}
			for i, w := range tt.schedule {
				if w > webhooks.MaxHide || webhooks.MaxHide > 12*time.Hour {
					t.Errorf("wait %d = %s, want at most MaxHide %s (SQS: 12h)", i, w, webhooks.MaxHide)
				}
				if i > 0 && w < tt.schedule[i-1] {
					t.Errorf("wait %d = %s, shorter than the one before (%s): want a backoff", i, w, tt.schedule[i-1])
				}
			}
		})
	}
}

func TestADeliveryThatFailedTwiceSucceedsOnItsThirdTryAndEachVerifiesWithTheStandardWebhooksLibrary(t *testing.T) {
	recv := webhookstest.Start(t, 2)
	h := newHarness(t, netguard.Local)
	ctx := context.Background()
	ep, err := h.svc.Create(ctx, "alice", webhooks.EndpointInput{URL: recv.URL + "/hooks/brightrun", EventTypes: []string{pipeline.EventJobCompleted}})
	if err != nil {
		t.Fatalf("Create: %v", err)
	}
	if !strings.HasPrefix(ep.Secret, "whsec_") {
		t.Fatalf("secret = %q, want whsec_…", ep.Secret)
	}
	j := h.publishJob(t, "alice", pipeline.EventJobCompleted, pipeline.JobCompleted)
	h.publishJob(t, "alice", pipeline.EventJobRunning, pipeline.JobRunning) // not subscribed
	start := h.clock.Now()

	h.drain(t) // fan out, first try: 500
	d := h.onlyDelivery(t, "alice", ep.ID)
	if d.Status != pipeline.DeliveryPending || d.AttemptCount != 1 || d.NextAttemptAt == nil || !d.NextAttemptAt.Equal(start.Add(5*time.Second)) {
		t.Fatalf("after the first try: %+v, want pending, 1 attempt, next at +5s", d)
	}
	h.drain(t) // nothing is due
	if n := len(recv.Log(t)); n != 1 {
		t.Fatalf("receiver got %d requests before the retry was due, want 1", n)
	}
	h.clock.Add(5 * time.Second)
	h.drain(t) // second try: 500
	h.clock.Add(5 * time.Minute)
	h.drain(t) // third try: 204

	d = h.onlyDelivery(t, "alice", ep.ID)
	if d.Status != pipeline.DeliveryDelivered || d.AttemptCount != 3 || d.LastStatusCode != 204 || d.NextAttemptAt != nil {
		t.Errorf("delivery = %+v, want delivered after 3 attempts", d)
	}
	if got := codes(d); len(got) != 3 || got[0] != 500 || got[1] != 500 || got[2] != 204 {
		t.Errorf("attempt codes = %v, want [500 500 204]", got)
	}
	log := recv.Log(t)
	if len(log) != 3 {
		t.Fatalf("receiver got %d requests, want 3", len(log))
	}
	for i, r := range log {
		if r.Headers["webhook-id"] != d.EventID {
			t.Errorf("request %d webhook-id = %q, want the event's %q on every try", i, r.Headers["webhook-id"], d.EventID)
		}
		v := recv.Verify(t, i, ep.Secret, d.Attempts[i].At)
		if !v.OK {
			t.Fatalf("standardwebhooks verify(request %d) = %s, want verified", i, v.Error)
		}
		var p struct {
			Type      string    `json:"type"`
			Timestamp time.Time `json:"timestamp"`
			Data      struct {
				ID     string `json:"id"`
				Status string `json:"status"`
			} `json:"data"`
		}
		if err := json.Unmarshal(v.Payload, &p); err != nil || p.Type != pipeline.EventJobCompleted || p.Data.ID != j.ID || p.Data.Status != "completed" || p.Timestamp.IsZero() {
			t.Errorf("payload %d = %s (%v), want job.completed of %s", i, v.Payload, err, j.ID)
		}
	}
	if v := recv.Verify(t, 2, "whsec_"+strings.Repeat("A", 43)+"=", d.Attempts[2].At); v.OK {
		t.Errorf("verify with another secret = ok, want refused (the receiver must not accept anything)")
	}

	// By hand: delivered again, verified again, one attempt more.
	h.clock.Add(time.Minute)
	if _, err := h.svc.Redeliver(ctx, "alice", ep.ID, d.ID); err != nil {
		t.Fatalf("Redeliver: %v", err)
	}
	h.drain(t)
	d = h.onlyDelivery(t, "alice", ep.ID)
	if d.Status != pipeline.DeliveryDelivered || d.AttemptCount != 4 || !d.Attempts[3].Manual || d.Attempts[3].StatusCode != 204 {
		t.Errorf("after redelivery: %+v, want delivered, a 4th manual attempt answered 204", d)
	}
	if log = recv.Log(t); len(log) != 4 {
		t.Fatalf("receiver got %d requests after the redelivery, want 4", len(log))
	}
	if v := recv.Verify(t, 3, ep.Secret, d.Attempts[3].At); !v.OK {
		t.Errorf("standardwebhooks verify(redelivery) = %s, want verified", v.Error)
	}
}

func TestDuringARotationsOverlapDeliveriesVerifyWithBothSecretsAndAfterItOnlyWithTheNew(t *testing.T) {
	recv := webhookstest.Start(t, 0)
	h := newHarness(t, netguard.Local)
	ctx := context.Background()
	ep, err := h.svc.Create(ctx, "alice", webhooks.EndpointInput{URL: recv.URL + "/h"})
	if err != nil {
		t.Fatal(err)
	}
	old := ep.Secret
	rotated, err := h.svc.Rotate(ctx, "alice", ep.ID, nil)
	if err != nil {
		t.Fatalf("Rotate: %v", err)
	}
	if rotated.Secret == old || rotated.PreviousSecret != old || !rotated.PreviousSecretExpiresAt.Equal(h.clock.Now().Add(webhooks.DefaultOverlap)) {
		t.Fatalf("rotated = %+v, want a new secret and the old one kept for 24h", rotated)
	}
	h.publishJob(t, "alice", pipeline.EventJobFailed, pipeline.JobFailed)
	h.drain(t)
	during := h.clock.Now()
	h.clock.Add(webhooks.DefaultOverlap + time.Second)
	h.publishJob(t, "alice", pipeline.EventJobCancelled, pipeline.JobCancelled)
	h.drain(t)
	after := h.clock.Now()

	log := recv.Log(t)
	if len(log) != 2 {
		t.Fatalf("receiver got %d requests, want 2", len(log))
	}
	if n := len(strings.Fields(log[0].Headers["webhook-signature"])); n != 2 {
		t.Errorf("signatures during the overlap = %d, want 2", n)
	}
	tests := []struct {
		name   string
		index  int
		secret string
		at     time.Time
		want   bool
	}{
		{"during the overlap the new secret verifies", 0, rotated.Secret, during, true},
		{"during the overlap the old secret verifies", 0, old, during, true},
		{"after the overlap the new secret verifies", 1, rotated.Secret, after, true},
		{"after the overlap the old secret does not", 1, old, after, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if v := recv.Verify(t, tt.index, tt.secret, tt.at); v.OK != tt.want {
				t.Errorf("standardwebhooks verify = %v (%s), want %v", v.OK, v.Error, tt.want)
			}
		})
	}
}

// statusServer answers every request with status and counts them.
func statusServer(t *testing.T, status int) (*httptest.Server, *atomic.Int64) {
	var n atomic.Int64
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		n.Add(1)
		w.WriteHeader(status)
	}))
	t.Cleanup(srv.Close)
	return srv, &n
}

func TestAnEndpointThatNeverAnswers2xxIsTriedOnScheduleForMoreThanADayThenGivenUp(t *testing.T) {
	srv, hits := statusServer(t, http.StatusServiceUnavailable)
	h := newHarness(t, netguard.Local)
	ctx := context.Background()
	ep, err := h.svc.Create(ctx, "alice", webhooks.EndpointInput{URL: srv.URL})
	if err != nil {
		t.Fatal(err)
	}
	h.publishJob(t, "alice", pipeline.EventJobFailed, pipeline.JobFailed)
	h.drain(t)
	for i := 0; i < 50; i++ {
		d := h.onlyDelivery(t, "alice", ep.ID)
		if d.Status != pipeline.DeliveryPending {
			break
		}
		// Move to the due time in two steps: the message wakes at most
		// MaxHide later, and an early wake only hides it again.
		h.clock.Add(d.NextAttemptAt.Sub(h.clock.Now()) / 2)
		h.drain(t)
		h.clock.Add(d.NextAttemptAt.Sub(h.clock.Now()))
		h.drain(t)
	}
	d := h.onlyDelivery(t, "alice", ep.ID)
	n := len(webhooks.DefaultSchedule)
	if d.Status != pipeline.DeliveryFailed || d.AttemptCount != n || int(hits.Load()) != n || !strings.Contains(d.Error, "gave up") {
		t.Fatalf("delivery = %+v (server hit %d times), want failed after %d tries", d, hits.Load(), n)
	}
	if span := d.Attempts[n-1].At.Sub(d.Attempts[0].At); span < 24*time.Hour {
		t.Errorf("first to last try = %s, want at least 24h", span)
	}
	for i, a := range d.Attempts {
		if a.StatusCode != http.StatusServiceUnavailable {
			t.Errorf("attempt %d code = %d, want 503", i, a.StatusCode)
		}
	}
}

func TestA410GoneDisablesTheEndpointAndEndsTheDelivery(t *testing.T) {
	srv, hits := statusServer(t, http.StatusGone)
	h := newHarness(t, netguard.Local)
	ctx := context.Background()
	ep, err := h.svc.Create(ctx, "alice", webhooks.EndpointInput{URL: srv.URL})
	if err != nil {
		t.Fatal(err)
	}
	h.publishJob(t, "alice", pipeline.EventJobCompleted, pipeline.JobCompleted)
	h.drain(t)
	if d := h.onlyDelivery(t, "alice", ep.ID); d.Status != pipeline.DeliveryFailed || d.LastStatusCode != 410 {
		t.Errorf("delivery = %+v, want failed with 410", d)
	}
	got, err := h.svc.Get(ctx, "alice", ep.ID)
	if err != nil || !got.Disabled || !strings.Contains(got.DisabledReason, "410") {
		t.Errorf("endpoint = %+v, %v, want disabled for its 410", got, err)
	}
	h.publishJob(t, "alice", pipeline.EventJobCompleted, pipeline.JobCompleted)
	h.drain(t)
	if hits.Load() != 1 {
		t.Errorf("server hit %d times, want 1: a disabled endpoint receives nothing", hits.Load())
	}
	if _, err := h.svc.Redeliver(ctx, "alice", ep.ID, h.onlyDelivery(t, "alice", ep.ID).ID); pipeline.ErrorCode(err) != pipeline.EPrecondition {
		t.Errorf("Redeliver to a disabled endpoint = %v, want %s", err, pipeline.EPrecondition)
	}
}

func TestDisallowedEndpointURLsAreRefusedWhenRegistered(t *testing.T) {
	tests := []struct {
		name   string
		policy netguard.Policy
		url    string
	}{
		{"loopback in the cloud", netguard.Cloud, "https://127.0.0.1/hook"},
		{"plain http in the cloud", netguard.Cloud, "http://hooks.example.com/"},
		{"a private address", netguard.Cloud, "https://10.1.2.3/hook"},
		{"the metadata service", netguard.Cloud, "https://169.254.169.254/latest/meta-data"},
		{"IPv6 loopback", netguard.Cloud, "https://[::1]/"},
		{"another scheme", netguard.Cloud, "ftp://hooks.example.com/"},
		{"user information", netguard.Cloud, "https://user:pw@hooks.example.com/"},
		{"no host", netguard.Cloud, "https:///path"},
		{"not a URL", netguard.Cloud, "://nope"},
		{"a private address locally", netguard.Local, "http://192.168.1.10/hook"},
		{"a very long URL", netguard.Cloud, "https://hooks.example.com/" + strings.Repeat("a", webhooks.MaxURLChars)},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			h := newHarness(t, tt.policy)
			_, err := h.svc.Create(context.Background(), "alice", webhooks.EndpointInput{URL: tt.url})
			if pipeline.ErrorCode(err) != pipeline.EInvalid {
				t.Errorf("Create(%q) = %v, want %s", tt.url, err, pipeline.EInvalid)
			}
			if l, _, _ := h.svc.List(context.Background(), "alice", pipeline.Page{}); len(l) != 0 {
				t.Errorf("endpoints after a refusal = %d, want 0", len(l))
			}
		})
	}
	t.Run("an unknown event type", func(t *testing.T) {
		h := newHarness(t, netguard.Cloud)
		_, err := h.svc.Create(context.Background(), "alice", webhooks.EndpointInput{URL: "https://hooks.example.com/", EventTypes: []string{"job.exploded"}})
		if pipeline.ErrorCode(err) != pipeline.EInvalid {
			t.Errorf("Create(job.exploded) = %v, want %s", err, pipeline.EInvalid)
		}
	})
}

func TestANameThatResolvesToLoopbackIsRefusedAtDeliveryUnderTheCloudPolicy(t *testing.T) {
	var hits atomic.Int64
	srv := httptest.NewTLSServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { hits.Add(1) }))
	t.Cleanup(srv.Close)
	h := newHarness(t, netguard.Cloud)
	ctx := context.Background()
	// A name passes the registration check (it is resolved on every
	// connection, not when registered): localhost stands for a public
	// name whose DNS answer turns to 127.0.0.1.
	u := strings.Replace(srv.URL, "127.0.0.1", "localhost", 1)
	ep, err := h.svc.Create(ctx, "alice", webhooks.EndpointInput{URL: u})
	if err != nil {
		t.Fatalf("Create(%s) = %v, want accepted (a name)", u, err)
	}
	h.publishJob(t, "alice", pipeline.EventJobCompleted, pipeline.JobCompleted)
	h.drain(t)
	d := h.onlyDelivery(t, "alice", ep.ID)
	if d.Status != pipeline.DeliveryFailed || !strings.Contains(d.Error, "not allowed") || d.AttemptCount != 1 || d.LastStatusCode != 0 {
		t.Errorf("delivery = %+v, want failed at once: destination not allowed", d)
	}
	if hits.Load() != 0 {
		t.Errorf("server hit %d times, want 0", hits.Load())
	}
}

func TestAnotherOwnerCannotSeeChangeOrRedeliverAnEndpoint(t *testing.T) {
	srv, _ := statusServer(t, http.StatusNoContent)
	h := newHarness(t, netguard.Local)
	ctx := context.Background()
	ep, err := h.svc.Create(ctx, "alice", webhooks.EndpointInput{URL: srv.URL})
	if err != nil {
		t.Fatal(err)
	}
	h.publishJob(t, "alice", pipeline.EventJobCompleted, pipeline.JobCompleted)
	h.publishJob(t, "bob", pipeline.EventJobCompleted, pipeline.JobCompleted)
	h.drain(t)
	d := h.onlyDelivery(t, "alice", ep.ID)
	disabled := true
	tests := []struct {
		name string
		call func() error
	}{
		{"get", func() error { _, err := h.svc.Get(ctx, "bob", ep.ID); return err }},
		{"update", func() error {
			_, err := h.svc.Update(ctx, "bob", ep.ID, webhooks.EndpointPatch{Disabled: &disabled})
			return err
		}},
		{"rotate", func() error { _, err := h.svc.Rotate(ctx, "bob", ep.ID, nil); return err }},
		{"list deliveries", func() error { _, _, err := h.svc.Deliveries(ctx, "bob", ep.ID, pipeline.Page{}); return err }},
		{"get a delivery", func() error { _, err := h.svc.Delivery(ctx, "bob", ep.ID, d.ID); return err }},
		{"redeliver", func() error { _, err := h.svc.Redeliver(ctx, "bob", ep.ID, d.ID); return err }},
		{"delete", func() error { return h.svc.Delete(ctx, "bob", ep.ID) }},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if err := tt.call(); pipeline.ErrorCode(err) != pipeline.ENotFound {
				t.Errorf("bob's %s = %v, want %s", tt.name, err, pipeline.ENotFound)
			}
		})
	}
	if l, _, _ := h.svc.List(ctx, "bob", pipeline.Page{}); len(l) != 0 {
		t.Errorf("bob's endpoints = %d, want 0", len(l))
	}
	if got := h.onlyDelivery(t, "alice", ep.ID); got.AttemptCount != 1 {
		t.Errorf("alice's delivery attempts = %d, want 1: bob's event reached her endpoint, or his redelivery did", got.AttemptCount)
	}
}

func TestAnEventMessageHandledTwiceMakesOneDeliveryPerSubscribedEnabledEndpoint(t *testing.T) {
	srv, hits := statusServer(t, http.StatusOK)
	h := newHarness(t, netguard.Local)
	ctx := context.Background()
	all, err := h.svc.Create(ctx, "alice", webhooks.EndpointInput{URL: srv.URL + "/all"})
	if err != nil {
		t.Fatal(err)
	}
	other, err := h.svc.Create(ctx, "alice", webhooks.EndpointInput{URL: srv.URL + "/other", EventTypes: []string{pipeline.EventDatasetReady}})
	if err != nil {
		t.Fatal(err)
	}
	off, err := h.svc.Create(ctx, "alice", webhooks.EndpointInput{URL: srv.URL + "/off"})
	if err != nil {
		t.Fatal(err)
	}
	disabled := true
	if _, err := h.svc.Update(ctx, "alice", off.ID, webhooks.EndpointPatch{Disabled: &disabled}); err != nil {
		t.Fatal(err)
	}
	h.publishJob(t, "alice", pipeline.EventJobCompleted, pipeline.JobCompleted)
	msgs, err := h.queue.Receive(ctx, 1, time.Minute, 0)
	if err != nil || len(msgs) != 1 {
		t.Fatalf("Receive = %d, %v", len(msgs), err)
	}
	for range 2 {
		if _, err := h.svc.HandleMessage(ctx, msgs[0].Body); err != nil {
			t.Fatalf("HandleMessage(event) = %v", err)
		}
	}
	if err := h.queue.Delete(ctx, msgs[0].Receipt); err != nil {
		t.Fatal(err)
	}
	h.drain(t)
	h.onlyDelivery(t, "alice", all.ID)
	for _, id := range []string{other.ID, off.ID} {
		if l, _, _ := h.store.ListWebhookDeliveries(ctx, "alice", id, pipeline.Page{}); len(l) != 0 {
			t.Errorf("deliveries of %s = %d, want 0", id, len(l))
		}
	}
	if hits.Load() != 1 {
		t.Errorf("server hit %d times, want 1 (the delivery's message may come twice, its try is due once)", hits.Load())
	}
}

func FuzzHandleMessage(f *testing.F) {
	f.Add([]byte(`{"event":{"id":"msg_1","type":"job.completed","owner":"alice","time":"2026-12-06T00:00:00Z","payload":{"type":"job.completed"}}}`))
	f.Add([]byte(`{"delivery":{"owner":"alice","endpoint_id":"whe_1","delivery_id":"whd_1","round":0}}`))
	f.Add([]byte(`{"event":{},"delivery":{}}`))
	f.Add([]byte(`null`))
	db, err := local.OpenDB(f.TempDir())
	if err != nil {
		f.Fatal(err)
	}
	defer db.Close()
	store, err := local.NewStore(db)
	if err != nil {
		f.Fatal(err)
	}
	q, err := local.NewQueue(db, "webhooks", local.QueueOptions{})
	if err != nil {
		f.Fatal(err)
	}
	svc := &webhooks.Service{Store: store, Queue: q, Policy: netguard.Cloud}
	f.Fuzz(func(t *testing.T, body []byte) {
		wait, err := svc.HandleMessage(context.Background(), body)
		if wait < 0 || wait > webhooks.MaxHide {
			t.Errorf("HandleMessage(%q) wait = %s, want 0..MaxHide", body, wait)
		}
		_ = err // a store failure may be returned; a malformed body is dropped (nil)
	})
}

// A redirect is an answer, not a delivery: following it would turn the
// POST into a bodiless GET whose 2xx says nothing. And an attempt's error
// never shows the endpoint's URL (its path often holds a token).
func TestARedirectIsNotFollowedAndErrorsHideTheURL(t *testing.T) {
	var gets atomic.Int32
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Method == http.MethodGet {
			gets.Add(1)
			return
		}
		http.Redirect(w, r, "/elsewhere", http.StatusFound)
	}))
	defer srv.Close()
	h := newHarness(t, netguard.Local)
	ctx := context.Background()
	ep, err := h.svc.Create(ctx, "alice", webhooks.EndpointInput{URL: srv.URL + "/hooks/T0KEN-secret"})
	if err != nil {
		t.Fatal(err)
	}
	h.publishJob(t, "alice", pipeline.EventJobCompleted, pipeline.JobCompleted)
	h.drain(t)
	d := h.onlyDelivery(t, "alice", ep.ID)
	if d.Status != pipeline.DeliveryPending || d.LastStatusCode != http.StatusFound || gets.Load() != 0 {
		t.Errorf("delivery %+v after a 302 (GETs %d), want pending with 302 and no GET", d, gets.Load())
	}

	// An endpoint whose host does not answer: the recorded error names
	// the cause, not the URL.
	closed := httptest.NewServer(http.NotFoundHandler())
	dead := closed.URL + "/hooks/T0KEN-secret"
	closed.Close()
	ep2, err := h.svc.Create(ctx, "bob", webhooks.EndpointInput{URL: dead})
	if err != nil {
		t.Fatal(err)
	}
	h.publishJob(t, "bob", pipeline.EventJobCompleted, pipeline.JobCompleted)
	h.drain(t)
	d2 := h.onlyDelivery(t, "bob", ep2.ID)
	if len(d2.Attempts) == 0 || d2.Attempts[0].Error == "" || strings.Contains(d2.Attempts[0].Error, "T0KEN") {
		t.Errorf("attempts %+v, want an error without the URL's token", d2.Attempts)
	}
}
