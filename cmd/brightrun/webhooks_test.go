package main

import (
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/brightrun/brightrun/shared/api"
	"github.com/brightrun/brightrun/shared/client"
	"github.com/brightrun/brightrun/shared/pipeline"
)

func TestWebhooks(t *testing.T) {
	var hits atomic.Int64
	recv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Header.Get("webhook-signature") != "" {
			hits.Add(1)
		}
		w.WriteHeader(http.StatusNoContent)
	}))
	defer recv.Close()

	var ep api.WebhookEndpointSecret
	decode(t, cli(t, "webhooks", "add", recv.URL+"/hook", "--event", "dataset.invalid", "--description", "cli test", "--json"), &ep)
	if !strings.HasPrefix(ep.Secret, "whsec_") || len(ep.EventTypes) != 1 {
		t.Fatalf("webhooks add = %+v, want a secret and one event type", ep)
	}
	if r := cli(t, "webhooks", "list"); r.code != 0 || !strings.Contains(r.stdout, ep.ID) || !strings.Contains(r.stdout, "dataset.invalid") {
		t.Errorf("webhooks list lacks %s\n%s", ep.ID, r)
	}

	// An invalid upload is an event the endpoint receives.
	cli(t, "datasets", "upload", badFile, "--force", "--name", "bad for webhooks")
	var list client.WebhookDeliveryList
	deadline := time.Now().Add(20 * time.Second)
	for {
		decode(t, cli(t, "webhooks", "deliveries", ep.ID, "--json"), &list)
		if len(list.Deliveries) > 0 && list.Deliveries[0].Status == pipeline.DeliveryDelivered || time.Now().After(deadline) {
			break
		}
		time.Sleep(100 * time.Millisecond)
	}
	if len(list.Deliveries) != 1 || list.Deliveries[0].EventType != pipeline.EventDatasetInvalid || list.Deliveries[0].Status != pipeline.DeliveryDelivered {
		t.Fatalf("deliveries = %+v, want one dataset.invalid delivered", list.Deliveries)
	}
	if r := cli(t, "webhooks", "deliveries", ep.ID); r.code != 0 || !strings.Contains(r.stdout, "delivered") || !strings.Contains(r.stdout, "204") {
		t.Errorf("webhooks deliveries lacks the delivery\n%s", r)
	}
	if r := cli(t, "webhooks", "redeliver", ep.ID, list.Deliveries[0].ID); r.code != 0 || !strings.Contains(r.stdout, "redelivering") {
		t.Errorf("webhooks redeliver\n%s", r)
	}
	deadline = time.Now().Add(10 * time.Second)
	for hits.Load() < 2 && time.Now().Before(deadline) {
		time.Sleep(50 * time.Millisecond)
	}
	if hits.Load() != 2 {
		t.Errorf("the receiver got %d signed deliveries, want 2 (the event and its redelivery)", hits.Load())
	}

	t.Run("rotate prints the new secret and the old one's overlap", func(t *testing.T) {
		r := cli(t, "webhooks", "rotate", ep.ID, "--overlap", "1h")
		if r.code != 0 || !strings.Contains(r.stdout, "new secret: whsec_") || strings.Contains(r.stdout, ep.Secret) || !strings.Contains(r.stdout, "also signs until") {
			t.Errorf("webhooks rotate\n%s", r)
		}
	})
	t.Run("a disallowed URL is refused by the API", func(t *testing.T) {
		if r := cli(t, "webhooks", "add", "http://10.0.0.1/hook"); r.code != 3 || !strings.Contains(r.stderr, "not allowed") {
			t.Errorf("want exit 3 and the refusal\n%s", r)
		}
	})
	t.Run("an unknown event type is a usage error", func(t *testing.T) {
		if r := cli(t, "webhooks", "add", recv.URL, "--event", "job.exploded"); r.code != 2 {
			t.Errorf("want exit 2\n%s", r)
		}
	})
	t.Run("another user sees none of it", func(t *testing.T) {
		if r := cliAt(t, stack.URL(), "nobody-token", "webhooks", "list"); r.code != 3 {
			t.Errorf("an unknown token: want exit 3\n%s", r)
		}
	})
	if r := cli(t, "webhooks", "remove", ep.ID); r.code != 0 || !strings.Contains(r.stdout, "removed") {
		t.Errorf("webhooks remove\n%s", r)
	}
	if r := cli(t, "webhooks", "deliveries", ep.ID); r.code != 3 || !strings.Contains(r.stderr, "not_found") {
		t.Errorf("deliveries of a removed webhook: want exit 3, not found\n%s", r)
	}
}
