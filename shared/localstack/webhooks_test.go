package localstack_test

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/brightrun/brightrun/shared/localstack"
	"github.com/brightrun/brightrun/shared/pipeline"
	"github.com/brightrun/brightrun/shared/runpodemu"
	"github.com/brightrun/brightrun/shared/webhooks/webhookstest"
)

// callAs is call with another user's token.
func callAs(t *testing.T, token, method, url, body string, out any) int {
	t.Helper()
	req, _ := http.NewRequest(method, url, strings.NewReader(body))
	req.Header.Set("Authorization", "Bearer "+token)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if out != nil {
		if err := json.NewDecoder(resp.Body).Decode(out); err != nil {
			t.Fatal(err)
		}
	}
	return resp.StatusCode
}

func TestJobsAndDatasetsInTheLocalStackSendTheirEventsToARegisteredEndpoint(t *testing.T) {
	recv := webhookstest.Start(t, 0)
	id := func(key string) string { return pipeline.IdempotentJobID("dev", key) }
	s, err := localstack.Open(localstack.Config{
		Addr: "127.0.0.1:0", DataDir: t.TempDir(), DevTokens: "dev:dev-token,eve:eve-token",
		Log:                slog.New(slog.NewTextHandler(io.Discard, nil)),
		Emulator:           runpodemu.Config{StepsPerSecond: 200, WebhookRetryInterval: 100 * time.Millisecond, Faults: runpodemu.FaultsByJobID(map[string]runpodemu.Fault{id("oom"): {FailAtStep: 3, FailCode: "oom"}})},
		DispatchVisibility: time.Second, ReconcileEvery: 200 * time.Millisecond,
	})
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close(context.Background()) })

	var ep struct{ ID, Secret string }
	if status := call(t, "POST", s.URL()+"/v1/webhooks", fmt.Sprintf(`{"url":%q,"description":"all events"}`, recv.URL+"/brightrun"), &ep); status != 201 || !strings.HasPrefix(ep.Secret, "whsec_") {
		t.Fatalf("POST /v1/webhooks = %d %+v, want 201 with a whsec_ secret", status, ep)
	}

	ds := readyDataset(t, s)
	if _, status := uploadAs(t, s, "dev-token", "upload", []byte("this is not JSON\n")); status != "invalid" {
		t.Fatalf("a bad upload ended %s, want invalid", status)
	}
	done := createJob(t, s, ds, `,"preset":"fast","hyperparameters":{"batch_size":1,"gradient_accumulation":1}`)
	failed := createKeyed(t, s, "oom", ds, `,"preset":"fast","hyperparameters":{"batch_size":1,"gradient_accumulation":4}`)
	cancelled := createJob(t, s, ds, `,"preset":"quality","hyperparameters":{"batch_size":1,"gradient_accumulation":1}`)
	if status := call(t, "POST", s.URL()+"/v1/jobs/"+cancelled.ID+"/cancel", "", nil); status != 200 {
		t.Fatalf("cancel = %d", status)
	}
	want := map[string]string{ // event type → the job or dataset it must name
		pipeline.EventDatasetReady: ds, pipeline.EventJobCompleted: done.ID, pipeline.EventJobRunning: done.ID,
		pipeline.EventJobFailed: failed.ID, pipeline.EventJobCancelled: cancelled.ID, pipeline.EventDatasetInvalid: "",
	}
	type seen struct{ typ, id string }
	var got []seen
	waitFor(t, 60*time.Second, func() bool {
		log := recv.Log(t)
		got = got[:0]
		for i := range log {
			v := recv.Verify(t, i, ep.Secret, time.Now())
			if !v.OK {
				t.Fatalf("standardwebhooks verify(delivery %d) = %s", i, v.Error)
			}
			var p struct {
				Type string
				Data struct{ ID string }
			}
			if err := json.Unmarshal(v.Payload, &p); err != nil {
				t.Fatal(err)
			}
			got = append(got, seen{p.Type, p.Data.ID})
		}
		for typ, id := range want {
			if !slices.ContainsFunc(got, func(g seen) bool { return g.typ == typ && (id == "" || g.id == id) }) {
				return false
			}
		}
		return true
	}, "every event delivered")
	t.Logf("delivered: %v", got)

	var list struct {
		Deliveries []struct {
			ID, Status   string
			AttemptCount int `json:"attempt_count"`
		}
	}
	if status := call(t, "GET", s.URL()+"/v1/webhooks/"+ep.ID+"/deliveries?limit=100", "", &list); status != 200 || len(list.Deliveries) < len(want) {
		t.Fatalf("GET deliveries = %d, %d deliveries, want 200 and at least %d", status, len(list.Deliveries), len(want))
	}
	for _, d := range list.Deliveries {
		if d.Status != "delivered" || d.AttemptCount != 1 {
			t.Errorf("delivery %+v, want delivered at the first try", d)
		}
	}

	// Another user sees none of it and cannot redeliver.
	deliveryURL := s.URL() + "/v1/webhooks/" + ep.ID + "/deliveries/" + list.Deliveries[0].ID
	for _, c := range []struct{ method, url string }{
		{"GET", s.URL() + "/v1/webhooks/" + ep.ID},
		{"GET", s.URL() + "/v1/webhooks/" + ep.ID + "/deliveries"},
		{"GET", deliveryURL},
		{"POST", deliveryURL + "/redeliver"},
		{"POST", s.URL() + "/v1/webhooks/" + ep.ID + "/rotate"},
		{"DELETE", s.URL() + "/v1/webhooks/" + ep.ID},
	} {
		if status := callAs(t, "eve-token", c.method, c.url, "", nil); status != 404 {
			t.Errorf("eve's %s %s = %d, want 404", c.method, strings.TrimPrefix(c.url, s.URL()), status)
		}
	}
	var eves struct{ Webhooks []any }
	if status := callAs(t, "eve-token", "GET", s.URL()+"/v1/webhooks", "", &eves); status != 200 || len(eves.Webhooks) != 0 {
		t.Errorf("eve's GET /v1/webhooks = %d, %d endpoints, want 200 and none", status, len(eves.Webhooks))
	}
	n := len(recv.Log(t))

	// The owner can: redelivered and verified again.
	if status := call(t, "POST", deliveryURL+"/redeliver", "", nil); status != 202 {
		t.Fatalf("redeliver = %d, want 202", status)
	}
	waitFor(t, 10*time.Second, func() bool { return len(recv.Log(t)) == n+1 }, "the redelivery")
	if v := recv.Verify(t, n, ep.Secret, time.Now()); !v.OK {
		t.Errorf("standardwebhooks verify(redelivery) = %s", v.Error)
	}
}

func TestTheWebhookAPIRefusesADisallowedURLAndAnUnknownEventType(t *testing.T) {
	s := MustStart(t, t.TempDir())
	defer s.Close(context.Background())
	tests := []struct {
		name, body string
	}{
		{"a private address", `{"url":"http://10.0.0.5/hook"}`},
		{"the metadata service", `{"url":"https://169.254.169.254/latest"}`},
		{"plain http to a public host", `{"url":"http://hooks.example.com/"}`},
		{"an unknown event type", `{"url":"https://hooks.example.com/","event_types":["job.exploded"]}`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var e struct {
				Error struct{ Code, Message string }
			}
			if status := call(t, "POST", s.URL()+"/v1/webhooks", tt.body, &e); status != 400 || e.Error.Code != "invalid" || e.Error.Message == "" {
				t.Errorf("POST /v1/webhooks %s = %d %+v, want 400 invalid with a message", tt.body, status, e)
			}
		})
	}
}
