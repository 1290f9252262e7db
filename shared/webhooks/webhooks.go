// Package webhooks delivers outbound events (a dataset ready or invalid, a
// job running, ended or over its budget) to the endpoints their owner
// registered, signed as the Standard Webhooks specification says, and
// keeps each endpoint's delivery log.
//
// The path of an event, and what each step keeps:
//
//  1. Publish (called by the jobs' lifecycle and by validation, right
//     after a transition) renders the payload once and sends one queue
//     message. It is the only step on the transition's path: one queue
//     send, no store read. Its failure is logged by the caller and the
//     event is lost; so is an event whose process dies between the
//     transition's write and the send.
//  2. The event message fans out: a delivery record per subscribed,
//     enabled endpoint (its id derived from the event's and the
//     endpoint's, so a repeat of the message makes no second record) and
//     a delivery message each. From here nothing is lost: a failure
//     leaves the message in the queue to come back.
//  3. A delivery message tries its delivery when the record says it is
//     due, and records the try. A 2xx answer delivers it; 410 Gone
//     disables the endpoint and fails it; a destination the network
//     policy refuses fails it; anything else (another status, a timeout,
//     a refused connection) waits Schedule[tries] and tries again, until
//     the schedule is spent (27 h 35 min by default).
//
// The delivery record is the schedule's truth, the queue message its alarm
// clock: a message that comes back early (a redelivered SQS message, a
// crash) is hidden again until the record's next attempt. The wait is a
// change of the message's visibility, at most MaxHide (SQS allows 12 h
// from a receive; the longest wait of the schedule is 10 h), so the one
// message spans the whole schedule, and the queue's retention (4 days on
// AWS) outlasts it. Redelivering by hand starts a new round of the
// schedule on the same record (same webhook-id, so receivers can
// deduplicate) with a new message; a message of an earlier round is
// dropped when it comes.
package webhooks

import (
	"bytes"
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"slices"
	"strings"
	"sync"
	"time"
	"unicode/utf8"

	"github.com/brightrun/brightrun/shared/api"
	"github.com/brightrun/brightrun/shared/contract"
	"github.com/brightrun/brightrun/shared/netguard"
	"github.com/brightrun/brightrun/shared/pipeline"
	"github.com/oklog/ulid/v2"
)

// DefaultSchedule is the wait before each try of a delivery: the first at
// once, then after 5 s, 5 min, 30 min, 2 h, 5 h, 10 h and 10 h, 27 h 35 min
// in all (Standard Webhooks' and Svix's schedule).
var DefaultSchedule = []time.Duration{0, 5 * time.Second, 5 * time.Minute, 30 * time.Minute, 2 * time.Hour, 5 * time.Hour, 10 * time.Hour, 10 * time.Hour}

// Span is the time from a delivery's first try to its last.
func Span(schedule []time.Duration) time.Duration {
	var total time.Duration
	for _, d := range schedule[1:] {
		total += d
	}
	return total
}

// Limits and defaults.
const (
	// DefaultOverlap is how long a rotated-out secret still signs.
	DefaultOverlap = 24 * time.Hour
	// MaxOverlap bounds the overlap a rotation may ask for.
	MaxOverlap = 7 * 24 * time.Hour
	// MaxHide is the longest a message is hidden at once (SQS's limit is
	// 12 h from its receive).
	MaxHide = 11*time.Hour + 30*time.Minute
	// DefaultTimeout bounds one delivery attempt.
	DefaultTimeout = 15 * time.Second
	// PublishTimeout bounds Publish, so that a slow queue cannot hold up
	// the transition that published (the event is lost instead, logged).
	PublishTimeout = 5 * time.Second
	// MaxEndpoints is how many endpoints an owner may register.
	MaxEndpoints = 20
	// MaxURLChars, MaxDescriptionChars and MaxEventTypes bound an
	// endpoint's fields.
	MaxURLChars         = 2048
	MaxDescriptionChars = 512
	MaxEventTypes       = 16
	// secretBytes is the size of a signing key (Standard Webhooks: 24 to 64).
	secretBytes = 32
)

// Service registers endpoints, publishes events and delivers them.
type Service struct {
	Store pipeline.WebhookStore
	// Queue carries event and delivery messages; its consumer calls
	// HandleMessage (Run locally, HandleSQSEvent on Lambda).
	Queue pipeline.Queue
	// Policy checks endpoint URLs when they are registered; Client, made
	// from it by default, checks every address dialled.
	Policy netguard.Policy
	Client *http.Client
	// Schedule is the wait before each try (nil: DefaultSchedule).
	Schedule []time.Duration
	Log      *slog.Logger
	Now      func() time.Time

	clientOnce sync.Once
}

var _ pipeline.EventPublisher = (*Service)(nil)

func (s *Service) now() time.Time {
	if s.Now != nil {
		return s.Now().UTC()
	}
	return time.Now().UTC()
}

func (s *Service) log() *slog.Logger {
	if s.Log != nil {
		return s.Log
	}
	return slog.Default()
}

func (s *Service) schedule() []time.Duration {
	if len(s.Schedule) > 0 {
		return s.Schedule
	}
	return DefaultSchedule
}

// EndpointInput is what a new endpoint is made of; no EventTypes
// subscribes it to every type there is now.
type EndpointInput struct {
	URL         string
	Description string
	EventTypes  []string
}

// EndpointPatch changes an endpoint's fields that are set.
type EndpointPatch struct {
	URL         *string
	Description *string
	EventTypes  *[]string
	Disabled    *bool
}

// NewSecret returns a fresh endpoint secret: "whsec_" + base64 of 32
// random bytes.
func NewSecret() (string, error) {
	key := make([]byte, secretBytes)
	if _, err := rand.Read(key); err != nil {
		return "", fmt.Errorf("make a webhook secret: %w", err)
	}
	return contract.FormatSecret(key), nil
}

func (s *Service) checkURL(raw string) error {
	if utf8.RuneCountInString(raw) > MaxURLChars {
		return pipeline.Errorf(pipeline.EInvalid, "url must be at most %d characters", MaxURLChars)
	}
	if _, err := s.Policy.CheckURL(raw); err != nil {
		return &pipeline.Error{Code: pipeline.EInvalid, Message: "url is not allowed as a webhook endpoint: " + err.Error(),
			Details: map[string]string{"field": "url"}}
	}
	return nil
}

func checkDescription(d string) error {
	if !utf8.ValidString(d) || utf8.RuneCountInString(d) > MaxDescriptionChars {
		return pipeline.Errorf(pipeline.EInvalid, "description must be valid UTF-8 of at most %d characters", MaxDescriptionChars)
	}
	return nil
}

// eventTypes checks and sorts a subscription, without repeats.
func eventTypes(types []string) ([]string, error) {
	if len(types) > MaxEventTypes {
		return nil, pipeline.Errorf(pipeline.EInvalid, "event_types may list at most %d types", MaxEventTypes)
	}
	out := make([]string, 0, len(types))
	for _, t := range types {
		if !pipeline.ValidEventType(t) {
			return nil, &pipeline.Error{Code: pipeline.EInvalid, Message: fmt.Sprintf("event type %q is not one of %s", t, strings.Join(pipeline.OutboundEventTypes, ", ")),
				Details: map[string]any{"field": "event_types", "allowed": pipeline.OutboundEventTypes}}
		}
		if !slices.Contains(out, t) {
			out = append(out, t)
		}
	}
	slices.Sort(out)
	return out, nil
}

// Create registers an endpoint for owner with a new secret.
func (s *Service) Create(ctx context.Context, owner string, in EndpointInput) (*pipeline.WebhookEndpoint, error) {
	if err := s.checkURL(in.URL); err != nil {
		return nil, err
	}
	if err := checkDescription(in.Description); err != nil {
		return nil, err
	}
	if len(in.EventTypes) == 0 {
		in.EventTypes = pipeline.OutboundEventTypes
	}
	types, err := eventTypes(in.EventTypes)
	if err != nil {
		return nil, err
	}
	existing, _, err := s.Store.ListWebhookEndpoints(ctx, owner, pipeline.Page{Limit: MaxEndpoints})
	if err != nil {
		return nil, fmt.Errorf("count webhook endpoints: %w", err)
	}
	if len(existing) >= MaxEndpoints {
		return nil, pipeline.Errorf(pipeline.EPrecondition, "an account may register at most %d webhook endpoints: delete one first", MaxEndpoints)
	}
	secret, err := NewSecret()
	if err != nil {
		return nil, err
	}
	now := s.now()
	e := &pipeline.WebhookEndpoint{ID: pipeline.NewID("whe", now), Owner: owner, URL: in.URL, Description: in.Description,
		EventTypes: types, Secret: secret, CreatedAt: now, UpdatedAt: now}
	if err := s.Store.CreateWebhookEndpoint(ctx, e); err != nil {
		return nil, fmt.Errorf("store webhook endpoint: %w", err)
	}
	return e, nil
}

// Get returns the owner's endpoint.
func (s *Service) Get(ctx context.Context, owner, id string) (*pipeline.WebhookEndpoint, error) {
	return s.Store.GetWebhookEndpoint(ctx, owner, id)
}

// List returns a page of the owner's endpoints, newest first.
func (s *Service) List(ctx context.Context, owner string, p pipeline.Page) ([]*pipeline.WebhookEndpoint, string, error) {
	return s.Store.ListWebhookEndpoints(ctx, owner, p)
}

// Delete removes the owner's endpoint and its delivery log; its pending
// deliveries are dropped when their messages come.
func (s *Service) Delete(ctx context.Context, owner, id string) error {
	return s.Store.DeleteWebhookEndpoint(ctx, owner, id)
}

// maxUpdateTries bounds the read-change-write loops on one record.
const maxUpdateTries = 5

// updateEndpoint applies change to the stored endpoint with a versioned write.
func (s *Service) updateEndpoint(ctx context.Context, owner, id string, change func(e *pipeline.WebhookEndpoint) error) (*pipeline.WebhookEndpoint, error) {
	for try := 0; try < maxUpdateTries; try++ {
		e, err := s.Store.GetWebhookEndpoint(ctx, owner, id)
		if err != nil {
			return nil, err
		}
		if err := change(e); err != nil {
			return nil, err
		}
		e.UpdatedAt = s.now()
		err = s.Store.UpdateWebhookEndpoint(ctx, e)
		if pipeline.ErrorCode(err) == pipeline.EConflict {
			continue
		}
		if err != nil {
			return nil, fmt.Errorf("update webhook endpoint %s: %w", id, err)
		}
		return e, nil
	}
	return nil, pipeline.Errorf(pipeline.EUnavailable, "webhook endpoint %s is being changed by too many writers: try again", id)
}

// Update changes the owner's endpoint as p says. Enabling an endpoint
// clears the reason it was disabled.
func (s *Service) Update(ctx context.Context, owner, id string, p EndpointPatch) (*pipeline.WebhookEndpoint, error) {
	if p.URL != nil {
		if err := s.checkURL(*p.URL); err != nil {
			return nil, err
		}
	}
	if p.Description != nil {
		if err := checkDescription(*p.Description); err != nil {
			return nil, err
		}
	}
	var types []string
	if p.EventTypes != nil {
		if len(*p.EventTypes) == 0 {
			return nil, pipeline.Errorf(pipeline.EInvalid, "event_types must name at least one type: disable the endpoint to receive none")
		}
		var err error
		if types, err = eventTypes(*p.EventTypes); err != nil {
			return nil, err
		}
	}
	return s.updateEndpoint(ctx, owner, id, func(e *pipeline.WebhookEndpoint) error {
		if p.URL != nil {
			e.URL = *p.URL
		}
		if p.Description != nil {
			e.Description = *p.Description
		}
		if p.EventTypes != nil {
			e.EventTypes = types
		}
		if p.Disabled != nil {
			e.Disabled = *p.Disabled
			e.DisabledReason = ""
			if e.Disabled {
				e.DisabledReason = "disabled by its owner"
			}
		}
		return nil
	})
}

// Rotate gives the owner's endpoint a new secret; the old one still signs
// deliveries (beside the new) for overlap, DefaultOverlap when nil.
func (s *Service) Rotate(ctx context.Context, owner, id string, overlap *time.Duration) (*pipeline.WebhookEndpoint, error) {
	o := DefaultOverlap
	if overlap != nil {
		o = *overlap
	}
	if o < 0 || o > MaxOverlap {
		return nil, pipeline.Errorf(pipeline.EInvalid, "overlap_seconds must be between 0 and %d", int(MaxOverlap.Seconds()))
	}
	secret, err := NewSecret()
	if err != nil {
		return nil, err
	}
	return s.updateEndpoint(ctx, owner, id, func(e *pipeline.WebhookEndpoint) error {
		until := s.now().Add(o)
		e.PreviousSecret, e.PreviousSecretExpiresAt, e.Secret = e.Secret, &until, secret
		if o == 0 {
			e.PreviousSecret, e.PreviousSecretExpiresAt = "", nil
		}
		return nil
	})
}

// Deliveries returns a page of the delivery log of the owner's endpoint,
// newest first.
func (s *Service) Deliveries(ctx context.Context, owner, endpointID string, p pipeline.Page) ([]*pipeline.WebhookDelivery, string, error) {
	if _, err := s.Store.GetWebhookEndpoint(ctx, owner, endpointID); err != nil {
		return nil, "", err
	}
	return s.Store.ListWebhookDeliveries(ctx, owner, endpointID, p)
}

// Delivery returns one delivery of the owner's endpoint.
func (s *Service) Delivery(ctx context.Context, owner, endpointID, id string) (*pipeline.WebhookDelivery, error) {
	return s.Store.GetWebhookDelivery(ctx, owner, endpointID, id)
}

// Redeliver tries a delivery of the owner's endpoint again now, whatever
// became of it, as a new round of the retry schedule.
func (s *Service) Redeliver(ctx context.Context, owner, endpointID, id string) (*pipeline.WebhookDelivery, error) {
	e, err := s.Store.GetWebhookEndpoint(ctx, owner, endpointID)
	if err != nil {
		return nil, err
	}
	if e.Disabled {
		return nil, pipeline.Errorf(pipeline.EPrecondition, "webhook endpoint %s is disabled (%s): enable it first", endpointID, e.DisabledReason)
	}
	for try := 0; try < maxUpdateTries; try++ {
		d, err := s.Store.GetWebhookDelivery(ctx, owner, endpointID, id)
		if err != nil {
			return nil, err
		}
		now := s.now()
		d.Round++
		d.Tries, d.Status, d.Error, d.NextAttemptAt, d.UpdatedAt = 0, pipeline.DeliveryPending, "", &now, now
		err = s.Store.UpdateWebhookDelivery(ctx, d)
		if pipeline.ErrorCode(err) == pipeline.EConflict {
			continue
		}
		if err != nil {
			return nil, fmt.Errorf("update webhook delivery %s: %w", id, err)
		}
		// Record first, then queue: a message of the new round finds it.
		if err := s.send(ctx, message{Delivery: refOf(d)}); err != nil {
			s.log().ErrorContext(ctx, "redelivery not queued", "delivery_id", d.ID, "err", err)
			d.Status, d.Error, d.NextAttemptAt = pipeline.DeliveryFailed, "the redelivery could not be queued: ask again", nil
			if uerr := s.Store.UpdateWebhookDelivery(ctx, d); uerr != nil {
				s.log().ErrorContext(ctx, "record the unqueued redelivery", "delivery_id", d.ID, "err", uerr)
			}
			return nil, pipeline.Errorf(pipeline.EUnavailable, "the redelivery could not be queued: try again")
		}
		return d, nil
	}
	return nil, pipeline.Errorf(pipeline.EUnavailable, "webhook delivery %s is being changed by too many writers: try again", id)
}

// Payload is the body every endpoint receives for e: {"type", "timestamp",
// "data"}, data the job's or the dataset's API view.
func Payload(e pipeline.OutboundEvent) ([]byte, error) {
	var data any
	switch {
	case e.Job != nil:
		data = api.ViewJobAt(e.Job, e.Time)
	case e.Dataset != nil:
		data = api.ViewDataset(e.Dataset)
	default:
		return nil, fmt.Errorf("event %s has neither a job nor a dataset", e.Type)
	}
	return json.Marshal(struct {
		Type      string    `json:"type"`
		Timestamp time.Time `json:"timestamp"`
		Data      any       `json:"data"`
	}{e.Type, e.Time.UTC(), data})
}

// Publish queues e for the owner's endpoints: one message, no store
// read, within PublishTimeout.
func (s *Service) Publish(ctx context.Context, e pipeline.OutboundEvent) error {
	ctx, cancel := context.WithTimeout(ctx, PublishTimeout)
	defer cancel()
	if e.Time.IsZero() {
		e.Time = s.now()
	}
	body, err := Payload(e)
	if err != nil {
		return err
	}
	return s.send(ctx, message{Event: &eventMessage{ID: pipeline.NewID("msg", e.Time), Type: e.Type, Owner: e.Owner, Time: e.Time, Payload: body}})
}

// message is one queue message: an event to fan out, or a delivery to try.
type message struct {
	Event    *eventMessage `json:"event,omitempty"`
	Delivery *deliveryRef  `json:"delivery,omitempty"`
}

type eventMessage struct {
	ID      string          `json:"id"`
	Type    string          `json:"type"`
	Owner   string          `json:"owner"`
	Time    time.Time       `json:"time"`
	Payload json.RawMessage `json:"payload"`
}

type deliveryRef struct {
	Owner      string `json:"owner"`
	EndpointID string `json:"endpoint_id"`
	DeliveryID string `json:"delivery_id"`
	Round      int    `json:"round"`
}

func refOf(d *pipeline.WebhookDelivery) *deliveryRef {
	return &deliveryRef{Owner: d.Owner, EndpointID: d.EndpointID, DeliveryID: d.ID, Round: d.Round}
}

func (s *Service) send(ctx context.Context, m message) error {
	body, err := json.Marshal(m)
	if err != nil {
		return fmt.Errorf("encode webhook message: %w", err)
	}
	if _, err := s.Queue.Send(ctx, pipeline.Message{Body: body}); err != nil {
		return fmt.Errorf("queue webhook message: %w", err)
	}
	return nil
}

// deliveryID is the id of the delivery of event to endpoint: time-ordered
// by the event, and the same every time the event's message is handled.
func deliveryID(eventID, endpointID string, at time.Time) string {
	sum := sha256.Sum256([]byte(eventID + "\x00" + endpointID))
	id, err := ulid.New(ulid.Timestamp(at), bytes.NewReader(sum[:]))
	if err != nil {
		panic(fmt.Sprintf("ulid of %s: %v", at, err)) // only for times before 1970 or after 10889
	}
	return "whd_" + strings.ToLower(id.String())
}

// fanOut makes a delivery of ev for each of its owner's endpoints that
// wants it, and queues each.
func (s *Service) fanOut(ctx context.Context, ev *eventMessage) error {
	var p pipeline.Page
	p.Limit = pipeline.MaxPageSize
	for {
		eps, next, err := s.Store.ListWebhookEndpoints(ctx, ev.Owner, p)
		if err != nil {
			return fmt.Errorf("list webhook endpoints: %w", err)
		}
		for _, e := range eps {
			if e.Disabled || !e.Subscribed(ev.Type) {
				continue
			}
			if err := s.createDelivery(ctx, ev, e); err != nil {
				return err
			}
		}
		if next == "" {
			return nil
		}
		p.Cursor = next
	}
}

func (s *Service) createDelivery(ctx context.Context, ev *eventMessage, e *pipeline.WebhookEndpoint) error {
	now := s.now()
	d := &pipeline.WebhookDelivery{ID: deliveryID(ev.ID, e.ID, ev.Time), Owner: ev.Owner, EndpointID: e.ID, EventID: ev.ID, EventType: ev.Type,
		Payload: ev.Payload, Status: pipeline.DeliveryPending, NextAttemptAt: &now, CreatedAt: now, UpdatedAt: now}
	err := s.Store.CreateWebhookDelivery(ctx, d)
	if pipeline.ErrorCode(err) == pipeline.EConflict {
		// The event's message came again: queue the delivery again only
		// if it never got its first try.
		if d, err = s.Store.GetWebhookDelivery(ctx, ev.Owner, e.ID, d.ID); err != nil {
			return fmt.Errorf("read webhook delivery: %w", err)
		}
		if d.AttemptCount > 0 || d.Status != pipeline.DeliveryPending {
			return nil
		}
	} else if err != nil {
		return fmt.Errorf("store webhook delivery: %w", err)
	}
	return s.send(ctx, message{Delivery: refOf(d)})
}

// errMalformed marks a message no retry can handle.
var errMalformed = errors.New("malformed webhook message")
