package storetest

import (
	"context"
	"encoding/json"
	"fmt"
	"testing"
	"time"

	"github.com/brightrun/brightrun/shared/pipeline"
)

// RunWebhooks runs the suite of pipeline.WebhookStore.
func RunWebhooks(t *testing.T, newStore func(t *testing.T) pipeline.WebhookStore) {
	t.Run("an endpoint reads back equal and updates are versioned", func(t *testing.T) { testEndpointRoundTrip(t, newStore(t)) })
	t.Run("another owner cannot read update delete or list endpoints and deliveries", func(t *testing.T) {
		testWebhookIsolation(t, newStore(t))
	})
	t.Run("endpoints and deliveries list newest first across pages", func(t *testing.T) { testWebhookPagination(t, newStore(t)) })
	t.Run("a delivery reads back equal, updates are versioned, and a created id conflicts", func(t *testing.T) {
		testDeliveryRoundTrip(t, newStore(t))
	})
	t.Run("deleting an endpoint deletes its deliveries and no other endpoint's", func(t *testing.T) {
		testDeleteEndpoint(t, newStore(t))
	})
}

func endpoint(owner string, i int) *pipeline.WebhookEndpoint {
	at := base.Add(time.Duration(i) * time.Second)
	return &pipeline.WebhookEndpoint{ID: fmt.Sprintf("whe_%04d", i), Owner: owner, URL: fmt.Sprintf("https://hooks.example.com/%d", i),
		Description: "ci", EventTypes: []string{pipeline.EventJobCompleted}, Secret: "whsec_" + fmt.Sprint(i), CreatedAt: at, UpdatedAt: at}
}

func delivery(owner, endpointID string, i int) *pipeline.WebhookDelivery {
	at := base.Add(time.Duration(i) * time.Second)
	return &pipeline.WebhookDelivery{ID: fmt.Sprintf("whd_%04d", i), Owner: owner, EndpointID: endpointID, EventID: fmt.Sprintf("msg_%04d", i),
		EventType: pipeline.EventJobCompleted, Payload: json.RawMessage(`{"type":"job.completed"}`), Status: pipeline.DeliveryPending,
		NextAttemptAt: &at, CreatedAt: at, UpdatedAt: at}
}

func testEndpointRoundTrip(t *testing.T, s pipeline.WebhookStore) {
	ctx := context.Background()
	e := endpoint("alice", 1)
	must(t, s.CreateWebhookEndpoint(ctx, e))
	if e.Version != 1 {
		t.Errorf("Version after CreateWebhookEndpoint = %d, want 1", e.Version)
	}
	if err := s.CreateWebhookEndpoint(ctx, endpoint("alice", 1)); pipeline.ErrorCode(err) != pipeline.EConflict {
		t.Errorf("CreateWebhookEndpoint(existing id) = %v, want %s", err, pipeline.EConflict)
	}
	got, err := s.GetWebhookEndpoint(ctx, "alice", e.ID)
	must(t, err)
	if got.URL != e.URL || got.Secret != e.Secret || len(got.EventTypes) != 1 || !got.CreatedAt.Equal(e.CreatedAt) || got.Version != 1 {
		t.Errorf("GetWebhookEndpoint = %+v, want %+v", got, e)
	}
	expires := base.Add(24 * time.Hour)
	got.PreviousSecret, got.PreviousSecretExpiresAt, got.Secret = got.Secret, &expires, "whsec_new"
	must(t, s.UpdateWebhookEndpoint(ctx, got))
	if got.Version != 2 {
		t.Errorf("Version after UpdateWebhookEndpoint = %d, want 2", got.Version)
	}
	stale := *e // version 1
	stale.Description = "stale"
	if err := s.UpdateWebhookEndpoint(ctx, &stale); pipeline.ErrorCode(err) != pipeline.EConflict {
		t.Errorf("UpdateWebhookEndpoint(stale) = %v, want %s", err, pipeline.EConflict)
	}
	again, err := s.GetWebhookEndpoint(ctx, "alice", e.ID)
	must(t, err)
	if again.Secret != "whsec_new" || again.PreviousSecret != e.Secret || again.PreviousSecretExpiresAt == nil || !again.PreviousSecretExpiresAt.Equal(expires) {
		t.Errorf("after rotation GetWebhookEndpoint = %+v", again)
	}
}

func testWebhookIsolation(t *testing.T, s pipeline.WebhookStore) {
	ctx := context.Background()
	e := endpoint("alice", 1)
	must(t, s.CreateWebhookEndpoint(ctx, e))
	d := delivery("alice", e.ID, 1)
	must(t, s.CreateWebhookDelivery(ctx, d))
	if _, err := s.GetWebhookEndpoint(ctx, "bob", e.ID); pipeline.ErrorCode(err) != pipeline.ENotFound {
		t.Errorf("GetWebhookEndpoint(bob) = %v, want %s", err, pipeline.ENotFound)
	}
	theirs := *e
	theirs.Owner = "bob"
	if err := s.UpdateWebhookEndpoint(ctx, &theirs); pipeline.ErrorCode(err) != pipeline.ENotFound {
		t.Errorf("UpdateWebhookEndpoint(bob) = %v, want %s", err, pipeline.ENotFound)
	}
	if err := s.DeleteWebhookEndpoint(ctx, "bob", e.ID); pipeline.ErrorCode(err) != pipeline.ENotFound {
		t.Errorf("DeleteWebhookEndpoint(bob) = %v, want %s", err, pipeline.ENotFound)
	}
	if l, _, err := s.ListWebhookEndpoints(ctx, "bob", pipeline.Page{}); err != nil || len(l) != 0 {
		t.Errorf("ListWebhookEndpoints(bob) = %d, %v, want none", len(l), err)
	}
	if _, err := s.GetWebhookDelivery(ctx, "bob", e.ID, d.ID); pipeline.ErrorCode(err) != pipeline.ENotFound {
		t.Errorf("GetWebhookDelivery(bob) = %v, want %s", err, pipeline.ENotFound)
	}
	theirD := *d
	theirD.Owner = "bob"
	if err := s.UpdateWebhookDelivery(ctx, &theirD); pipeline.ErrorCode(err) != pipeline.ENotFound {
		t.Errorf("UpdateWebhookDelivery(bob) = %v, want %s", err, pipeline.ENotFound)
	}
	if l, _, err := s.ListWebhookDeliveries(ctx, "bob", e.ID, pipeline.Page{}); err != nil || len(l) != 0 {
		t.Errorf("ListWebhookDeliveries(bob) = %d, %v, want none", len(l), err)
	}
	if _, err := s.GetWebhookEndpoint(ctx, "alice", e.ID); err != nil {
		t.Errorf("GetWebhookEndpoint(alice) after bob's tries = %v", err)
	}
}

func testWebhookPagination(t *testing.T, s pipeline.WebhookStore) {
	ctx := context.Background()
	for i := 1; i <= 5; i++ {
		must(t, s.CreateWebhookEndpoint(ctx, endpoint("alice", i)))
		must(t, s.CreateWebhookDelivery(ctx, delivery("alice", "whe_0001", i)))
	}
	must(t, s.CreateWebhookEndpoint(ctx, endpoint("bob", 9)))
	must(t, s.CreateWebhookDelivery(ctx, delivery("alice", "whe_0002", 9)))
	var ids []string
	p := pipeline.Page{Limit: 2}
	for {
		l, next, err := s.ListWebhookEndpoints(ctx, "alice", p)
		must(t, err)
		for _, e := range l {
			ids = append(ids, e.ID)
		}
		if next == "" {
			break
		}
		p.Cursor = next
	}
	if want := "whe_0005 whe_0004 whe_0003 whe_0002 whe_0001"; fmt.Sprint(ids) != "["+want+"]" {
		t.Errorf("ListWebhookEndpoints pages = %v, want [%s]", ids, want)
	}
	ids = nil
	p = pipeline.Page{Limit: 3}
	for {
		l, next, err := s.ListWebhookDeliveries(ctx, "alice", "whe_0001", p)
		must(t, err)
		for _, d := range l {
			ids = append(ids, d.ID)
		}
		if next == "" {
			break
		}
		p.Cursor = next
	}
	if want := "whd_0005 whd_0004 whd_0003 whd_0002 whd_0001"; fmt.Sprint(ids) != "["+want+"]" {
		t.Errorf("ListWebhookDeliveries pages = %v, want [%s]", ids, want)
	}
}

func testDeliveryRoundTrip(t *testing.T, s pipeline.WebhookStore) {
	ctx := context.Background()
	d := delivery("alice", "whe_0001", 1)
	must(t, s.CreateWebhookDelivery(ctx, d))
	if err := s.CreateWebhookDelivery(ctx, delivery("alice", "whe_0001", 1)); pipeline.ErrorCode(err) != pipeline.EConflict {
		t.Errorf("CreateWebhookDelivery(existing id) = %v, want %s", err, pipeline.EConflict)
	}
	got, err := s.GetWebhookDelivery(ctx, "alice", "whe_0001", d.ID)
	must(t, err)
	if string(got.Payload) != string(d.Payload) || got.Status != pipeline.DeliveryPending || got.NextAttemptAt == nil || !got.NextAttemptAt.Equal(*d.NextAttemptAt) {
		t.Errorf("GetWebhookDelivery = %+v, want %+v", got, d)
	}
	got.AddAttempt(pipeline.DeliveryAttempt{At: base, StatusCode: 500, DurationMS: 12})
	got.AddAttempt(pipeline.DeliveryAttempt{At: base.Add(time.Second), StatusCode: 204, DurationMS: 3})
	got.Status, got.NextAttemptAt = pipeline.DeliveryDelivered, nil
	must(t, s.UpdateWebhookDelivery(ctx, got))
	stale := *d
	if err := s.UpdateWebhookDelivery(ctx, &stale); pipeline.ErrorCode(err) != pipeline.EConflict {
		t.Errorf("UpdateWebhookDelivery(stale) = %v, want %s", err, pipeline.EConflict)
	}
	again, err := s.GetWebhookDelivery(ctx, "alice", "whe_0001", d.ID)
	must(t, err)
	if again.Status != pipeline.DeliveryDelivered || again.AttemptCount != 2 || len(again.Attempts) != 2 || again.Attempts[0].StatusCode != 500 ||
		again.LastStatusCode != 204 || again.NextAttemptAt != nil || again.Version != 2 {
		t.Errorf("after update GetWebhookDelivery = %+v", again)
	}
	if _, err := s.GetWebhookDelivery(ctx, "alice", "whe_0002", d.ID); pipeline.ErrorCode(err) != pipeline.ENotFound {
		t.Errorf("GetWebhookDelivery(another endpoint) = %v, want %s", err, pipeline.ENotFound)
	}
}

func testDeleteEndpoint(t *testing.T, s pipeline.WebhookStore) {
	ctx := context.Background()
	for i := 1; i <= 2; i++ {
		e := endpoint("alice", i)
		must(t, s.CreateWebhookEndpoint(ctx, e))
		for k := 0; k < 3; k++ {
			must(t, s.CreateWebhookDelivery(ctx, delivery("alice", e.ID, 10*i+k)))
		}
	}
	must(t, s.DeleteWebhookEndpoint(ctx, "alice", "whe_0001"))
	if _, err := s.GetWebhookEndpoint(ctx, "alice", "whe_0001"); pipeline.ErrorCode(err) != pipeline.ENotFound {
		t.Errorf("GetWebhookEndpoint(deleted) = %v, want %s", err, pipeline.ENotFound)
	}
	if _, err := s.GetWebhookDelivery(ctx, "alice", "whe_0001", "whd_0010"); pipeline.ErrorCode(err) != pipeline.ENotFound {
		t.Errorf("GetWebhookDelivery(of a deleted endpoint) = %v, want %s", err, pipeline.ENotFound)
	}
	if l, _, err := s.ListWebhookDeliveries(ctx, "alice", "whe_0001", pipeline.Page{}); err != nil || len(l) != 0 {
		t.Errorf("ListWebhookDeliveries(deleted endpoint) = %d, %v, want none", len(l), err)
	}
	if l, _, err := s.ListWebhookDeliveries(ctx, "alice", "whe_0002", pipeline.Page{}); err != nil || len(l) != 3 {
		t.Errorf("ListWebhookDeliveries(kept endpoint) = %d, %v, want 3", len(l), err)
	}
	if err := s.DeleteWebhookEndpoint(ctx, "alice", "whe_0001"); pipeline.ErrorCode(err) != pipeline.ENotFound {
		t.Errorf("DeleteWebhookEndpoint(again) = %v, want %s", err, pipeline.ENotFound)
	}
}
