package pipeline

import (
	"context"
	"encoding/json"
	"slices"
	"time"
)

// Outbound event types: what a user's webhook endpoints may subscribe to.
const (
	EventDatasetReady      = "dataset.ready"
	EventDatasetInvalid    = "dataset.invalid"
	EventJobRunning        = "job.running"
	EventJobCompleted      = "job.completed"
	EventJobFailed         = "job.failed"
	EventJobCancelled      = "job.cancelled"
	EventJobBudgetExceeded = "job.budget_exceeded"
)

// OutboundEventTypes lists every outbound event type.
var OutboundEventTypes = []string{EventDatasetReady, EventDatasetInvalid, EventJobRunning, EventJobCompleted,
	EventJobFailed, EventJobCancelled, EventJobBudgetExceeded}

// ValidEventType reports whether typ is an outbound event type.
func ValidEventType(typ string) bool { return slices.Contains(OutboundEventTypes, typ) }

// OutboundEvent is news of one of an owner's datasets or jobs, for the
// owner's webhook endpoints: Job or Dataset is set, as the store holds it
// right after the change.
type OutboundEvent struct {
	Type    string
	Owner   string
	Time    time.Time
	Job     *Job
	Dataset *Dataset
}

// EventPublisher hands outbound events on to their delivery. Publish must
// be quick (one queue message): it runs right after a job's or a
// dataset's transition, whose caller logs its failure and goes on.
type EventPublisher interface {
	Publish(ctx context.Context, e OutboundEvent) error
}

// WebhookEndpoint is a URL an owner registered to receive outbound
// events, signed the Standard Webhooks way with its secret.
type WebhookEndpoint struct {
	ID          string `json:"id"`
	Owner       string `json:"owner"`
	URL         string `json:"url"`
	Description string `json:"description,omitempty"`
	// EventTypes are the types it receives; empty: all of them.
	EventTypes []string `json:"event_types,omitempty"`
	// Disabled endpoints receive nothing; DisabledReason says why (the
	// owner's choice, or a 410 Gone answer).
	Disabled       bool   `json:"disabled,omitempty"`
	DisabledReason string `json:"disabled_reason,omitempty"`
	// Secret is "whsec_" + base64 of the signing key.
	Secret string `json:"secret"`
	// PreviousSecret, after a rotation, also signs deliveries until
	// PreviousSecretExpiresAt, so that a receiver can switch over.
	PreviousSecret          string     `json:"previous_secret,omitempty"`
	PreviousSecretExpiresAt *time.Time `json:"previous_secret_expires_at,omitempty"`
	CreatedAt               time.Time  `json:"created_at"`
	UpdatedAt               time.Time  `json:"updated_at"`
	Version                 int64      `json:"version"`
}

// Subscribed reports whether e receives events of typ.
func (e *WebhookEndpoint) Subscribed(typ string) bool {
	return len(e.EventTypes) == 0 || slices.Contains(e.EventTypes, typ)
}

// SigningSecrets are the secrets that sign a delivery made at now: the
// current one, and the previous one during its overlap window.
func (e *WebhookEndpoint) SigningSecrets(now time.Time) []string {
	s := []string{e.Secret}
	if e.PreviousSecret != "" && e.PreviousSecretExpiresAt != nil && now.Before(*e.PreviousSecretExpiresAt) {
		s = append(s, e.PreviousSecret)
	}
	return s
}

// DeliveryStatus is where a webhook delivery is.
type DeliveryStatus string

const (
	DeliveryPending   DeliveryStatus = "pending"   // to be tried (again)
	DeliveryDelivered DeliveryStatus = "delivered" // a 2xx answer came
	DeliveryFailed    DeliveryStatus = "failed"    // given up: see Error
)

// DeliveryAttempt is one try of a delivery.
type DeliveryAttempt struct {
	At time.Time `json:"at"`
	// StatusCode is the endpoint's answer (0: none came, see Error).
	StatusCode int    `json:"status_code,omitempty"`
	Error      string `json:"error,omitempty"`
	DurationMS int64  `json:"duration_ms"`
	// Manual marks the first try after a redelivery asked for by hand.
	Manual bool `json:"manual,omitempty"`
}

// MaxKeptAttempts bounds the attempts a delivery record keeps (the
// newest); AttemptCount counts them all.
const MaxKeptAttempts = 20

// WebhookDelivery is one event for one endpoint, and its tries. EventID is
// the webhook-id every try carries (receivers deduplicate on it); Payload
// is the exact body.
type WebhookDelivery struct {
	ID         string          `json:"id"`
	Owner      string          `json:"owner"`
	EndpointID string          `json:"endpoint_id"`
	EventID    string          `json:"event_id"`
	EventType  string          `json:"event_type"`
	Payload    json.RawMessage `json:"payload"`
	Status     DeliveryStatus  `json:"status"`
	// Attempts are the newest tries (at most MaxKeptAttempts), oldest first.
	Attempts     []DeliveryAttempt `json:"attempts,omitempty"`
	AttemptCount int               `json:"attempt_count"`
	// Round counts redeliveries by hand; Tries counts the tries of this
	// round, which the retry schedule is indexed by. A queue message of
	// an earlier round is stale.
	Round          int        `json:"round"`
	Tries          int        `json:"tries"`
	LastStatusCode int        `json:"last_status_code,omitempty"`
	LastAttemptAt  *time.Time `json:"last_attempt_at,omitempty"`
	NextAttemptAt  *time.Time `json:"next_attempt_at,omitempty"`
	// Error says why a failed delivery was given up.
	Error     string    `json:"error,omitempty"`
	CreatedAt time.Time `json:"created_at"`
	UpdatedAt time.Time `json:"updated_at"`
	Version   int64     `json:"version"`
}

// AddAttempt records a try, keeping the newest MaxKeptAttempts.
func (d *WebhookDelivery) AddAttempt(a DeliveryAttempt) {
	d.Attempts = append(d.Attempts, a)
	if n := len(d.Attempts); n > MaxKeptAttempts {
		d.Attempts = slices.Delete(d.Attempts, 0, n-MaxKeptAttempts)
	}
	d.AttemptCount++
	at := a.At
	d.LastAttemptAt, d.LastStatusCode = &at, a.StatusCode
}

// WebhookStore keeps webhook endpoints and their deliveries, each only
// ever read through its owner (ENotFound otherwise), with the Store's
// rules: conditional creates (EConflict when the id exists) and
// versioned updates (EConflict when the stored version differs; success
// increments Version); lists newest first. Deleting an endpoint deletes
// its deliveries.
type WebhookStore interface {
	CreateWebhookEndpoint(ctx context.Context, e *WebhookEndpoint) error
	GetWebhookEndpoint(ctx context.Context, owner, id string) (*WebhookEndpoint, error)
	UpdateWebhookEndpoint(ctx context.Context, e *WebhookEndpoint) error
	DeleteWebhookEndpoint(ctx context.Context, owner, id string) error
	ListWebhookEndpoints(ctx context.Context, owner string, p Page) ([]*WebhookEndpoint, string, error)

	CreateWebhookDelivery(ctx context.Context, d *WebhookDelivery) error
	GetWebhookDelivery(ctx context.Context, owner, endpointID, id string) (*WebhookDelivery, error)
	UpdateWebhookDelivery(ctx context.Context, d *WebhookDelivery) error
	ListWebhookDeliveries(ctx context.Context, owner, endpointID string, p Page) ([]*WebhookDelivery, string, error)
}

// publish hands an event of j on to its owner's webhooks; a failure is
// logged, never returned, as notify's is: the transition stands.
func (l *Lifecycle) publish(ctx context.Context, typ string, j *Job) {
	if l.Events == nil {
		return
	}
	if err := l.Events.Publish(ctx, OutboundEvent{Type: typ, Owner: j.Owner, Time: l.now(), Job: j}); err != nil {
		l.log().WarnContext(ctx, "publish webhook event: its deliveries are lost", "job_id", j.ID, "type", typ, "err", err)
	}
}

// endEvents are the outbound events of a job's ends.
var endEvents = map[JobStatus]string{JobCompleted: EventJobCompleted, JobFailed: EventJobFailed, JobCancelled: EventJobCancelled}
