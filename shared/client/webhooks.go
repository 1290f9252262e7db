package client

import (
	"context"
	"net/http"

	"github.com/brightrun/brightrun/shared/api"
)

// WebhookList is one page of the caller's webhook endpoints.
type WebhookList = api.WebhookEndpointList

// WebhookDeliveryList is one page of an endpoint's deliveries.
type WebhookDeliveryList = api.WebhookDeliveryList

// CreateWebhook registers an endpoint; the answer holds its secret, shown
// only here and on rotation. It is sent once (a retry would register a
// second endpoint).
func (cl *Client) CreateWebhook(ctx context.Context, req api.CreateWebhookRequest) (*api.WebhookEndpointSecret, error) {
	var out api.WebhookEndpointSecret
	if err := cl.do(ctx, call{method: http.MethodPost, path: "/v1/webhooks", body: req, out: &out}); err != nil {
		return nil, err
	}
	return &out, nil
}

// ListWebhooks lists the caller's endpoints, newest first.
func (cl *Client) ListWebhooks(ctx context.Context, o ListOptions) (*WebhookList, error) {
	var out WebhookList
	if err := cl.do(ctx, call{method: http.MethodGet, path: "/v1/webhooks", query: o.values(), idempotent: true, out: &out}); err != nil {
		return nil, err
	}
	return &out, nil
}

// UpdateWebhook changes the fields req sets.
func (cl *Client) UpdateWebhook(ctx context.Context, id string, req api.UpdateWebhookRequest) (*api.WebhookEndpointView, error) {
	var out api.WebhookEndpointView
	if err := cl.do(ctx, call{method: http.MethodPatch, path: "/v1/webhooks/" + pathID(id), body: req, idempotent: true, out: &out}); err != nil {
		return nil, err
	}
	return &out, nil
}

// DeleteWebhook removes an endpoint and its delivery log.
func (cl *Client) DeleteWebhook(ctx context.Context, id string) error {
	return cl.do(ctx, call{method: http.MethodDelete, path: "/v1/webhooks/" + pathID(id), idempotent: true})
}

// RotateWebhook gives an endpoint a new secret; the old one signs beside
// it for req's overlap. It is sent once (a retry would rotate again).
func (cl *Client) RotateWebhook(ctx context.Context, id string, req api.RotateWebhookRequest) (*api.WebhookEndpointSecret, error) {
	var out api.WebhookEndpointSecret
	if err := cl.do(ctx, call{method: http.MethodPost, path: "/v1/webhooks/" + pathID(id) + "/rotate", body: req, out: &out}); err != nil {
		return nil, err
	}
	return &out, nil
}

// WebhookDeliveries lists an endpoint's deliveries, newest first.
func (cl *Client) WebhookDeliveries(ctx context.Context, id string, o ListOptions) (*WebhookDeliveryList, error) {
	var out WebhookDeliveryList
	if err := cl.do(ctx, call{method: http.MethodGet, path: "/v1/webhooks/" + pathID(id) + "/deliveries", query: o.values(), idempotent: true, out: &out}); err != nil {
		return nil, err
	}
	return &out, nil
}

// Redeliver sends a delivery's event again now.
func (cl *Client) Redeliver(ctx context.Context, id, deliveryID string) (*api.WebhookDeliveryView, error) {
	var out api.WebhookDeliveryView
	if err := cl.do(ctx, call{method: http.MethodPost, path: "/v1/webhooks/" + pathID(id) + "/deliveries/" + pathID(deliveryID) + "/redeliver", out: &out}); err != nil {
		return nil, err
	}
	return &out, nil
}
