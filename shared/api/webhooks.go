package api

import (
	"encoding/json"
	"time"

	"github.com/brightrun/brightrun/shared/pipeline"
)

// WebhookEndpointView is a webhook endpoint as the API shows it: never
// its secret (WebhookEndpointSecret, on create and rotate, does).
type WebhookEndpointView struct {
	ID          string   `json:"id"`
	URL         string   `json:"url"`
	Description string   `json:"description,omitempty"`
	EventTypes  []string `json:"event_types"`
	Disabled    bool     `json:"disabled"`
	// DisabledReason says who or what disabled it (its owner, a 410 Gone).
	DisabledReason string `json:"disabled_reason,omitempty"`
	// PreviousSecretExpiresAt, after a rotation, is when the old secret
	// stops signing deliveries beside the new one.
	PreviousSecretExpiresAt *time.Time `json:"previous_secret_expires_at,omitempty"`
	CreatedAt               time.Time  `json:"created_at"`
	UpdatedAt               time.Time  `json:"updated_at"`
}

// ViewWebhookEndpoint is e as the API shows it at now.
func ViewWebhookEndpoint(e *pipeline.WebhookEndpoint, now time.Time) WebhookEndpointView {
	v := WebhookEndpointView{ID: e.ID, URL: e.URL, Description: e.Description, EventTypes: e.EventTypes, Disabled: e.Disabled,
		DisabledReason: e.DisabledReason, CreatedAt: e.CreatedAt, UpdatedAt: e.UpdatedAt}
	if v.EventTypes == nil {
		v.EventTypes = []string{}
	}
	if e.PreviousSecretExpiresAt != nil && now.Before(*e.PreviousSecretExpiresAt) {
		v.PreviousSecretExpiresAt = e.PreviousSecretExpiresAt
	}
	return v
}

// WebhookEndpointSecret is an endpoint with its signing secret: the
// answer to its creation and to a rotation, the only times it is shown.
type WebhookEndpointSecret struct {
	WebhookEndpointView
	Secret string `json:"secret"`
}

// WebhookEndpointList is one page of the caller's endpoints, newest first.
type WebhookEndpointList struct {
	Webhooks   []WebhookEndpointView `json:"webhooks"`
	NextCursor string                `json:"next_cursor,omitempty"`
}

// WebhookDeliveryView is one delivery of an event to an endpoint.
type WebhookDeliveryView struct {
	ID         string                  `json:"id"`
	EndpointID string                  `json:"endpoint_id"`
	EventID    string                  `json:"event_id"`
	EventType  string                  `json:"event_type"`
	Status     pipeline.DeliveryStatus `json:"status"`
	// Payload is the exact body every try sent.
	Payload        json.RawMessage            `json:"payload"`
	Attempts       []pipeline.DeliveryAttempt `json:"attempts"`
	AttemptCount   int                        `json:"attempt_count"`
	LastStatusCode int                        `json:"last_status_code,omitempty"`
	LastAttemptAt  *time.Time                 `json:"last_attempt_at,omitempty"`
	NextAttemptAt  *time.Time                 `json:"next_attempt_at,omitempty"`
	Error          string                     `json:"error,omitempty"`
	CreatedAt      time.Time                  `json:"created_at"`
	UpdatedAt      time.Time                  `json:"updated_at"`
}

// ViewWebhookDelivery is d as the API shows it.
func ViewWebhookDelivery(d *pipeline.WebhookDelivery) WebhookDeliveryView {
	v := WebhookDeliveryView{ID: d.ID, EndpointID: d.EndpointID, EventID: d.EventID, EventType: d.EventType, Status: d.Status,
		Payload: d.Payload, Attempts: d.Attempts, AttemptCount: d.AttemptCount, LastStatusCode: d.LastStatusCode,
		LastAttemptAt: d.LastAttemptAt, NextAttemptAt: d.NextAttemptAt, Error: d.Error, CreatedAt: d.CreatedAt, UpdatedAt: d.UpdatedAt}
	if v.Attempts == nil {
		v.Attempts = []pipeline.DeliveryAttempt{}
	}
	if d.Status != pipeline.DeliveryPending {
		v.NextAttemptAt = nil
	}
	return v
}

// WebhookDeliveryList is one page of an endpoint's deliveries, newest first.
type WebhookDeliveryList struct {
	Deliveries []WebhookDeliveryView `json:"deliveries"`
	NextCursor string                `json:"next_cursor,omitempty"`
}

// CreateWebhookRequest registers an endpoint. EventTypes left out
// subscribes to every type; an empty list is refused.
type CreateWebhookRequest struct {
	URL         string    `json:"url"`
	Description string    `json:"description,omitempty"`
	EventTypes  *[]string `json:"event_types,omitempty"`
}

// UpdateWebhookRequest changes the fields it sets.
type UpdateWebhookRequest struct {
	URL         *string   `json:"url,omitempty"`
	Description *string   `json:"description,omitempty"`
	EventTypes  *[]string `json:"event_types,omitempty"`
	Disabled    *bool     `json:"disabled,omitempty"`
}

// RotateWebhookRequest rotates an endpoint's secret; the old one keeps
// signing beside the new for OverlapSeconds (default 86400).
type RotateWebhookRequest struct {
	OverlapSeconds *int64 `json:"overlap_seconds,omitempty"`
}
