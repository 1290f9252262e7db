package webhooks

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/aws/aws-lambda-go/events"
	"github.com/brightrun/brightrun/shared/contract"
	"github.com/brightrun/brightrun/shared/netguard"
	"github.com/brightrun/brightrun/shared/pipeline"
)

// HandleMessage handles one queue message. It answers what to do with the
// message: delete it (0, nil), hide it for the returned time and keep it
// (the next try is not due yet), or, with an error, leave it to come back
// after the queue's visibility timeout.
func (s *Service) HandleMessage(ctx context.Context, body []byte) (time.Duration, error) {
	var m message
	if err := json.Unmarshal(body, &m); err != nil || (m.Event == nil) == (m.Delivery == nil) {
		s.log().ErrorContext(ctx, "malformed webhook message dropped", "body", truncate(string(body), 500), "err", errMalformed)
		return 0, nil
	}
	if ev := m.Event; ev != nil {
		if ev.ID == "" || ev.Owner == "" || ev.Type == "" {
			s.log().ErrorContext(ctx, "webhook event without id, owner or type dropped", "body", truncate(string(body), 500))
			return 0, nil
		}
		return 0, s.fanOut(ctx, ev)
	}
	return s.deliver(ctx, m.Delivery)
}

// hide is how long to hide a message until at: at least a second (SQS
// counts whole seconds), at most MaxHide.
func hide(wait time.Duration) time.Duration {
	wait = wait.Round(time.Second)
	if wait < time.Second {
		return time.Second
	}
	return min(wait, MaxHide)
}

// verdict is what an attempt's outcome does to its delivery.
type verdict int

const (
	retry     verdict = iota // try again after the schedule's wait
	delivered                // a 2xx answer
	gone                     // 410: disable the endpoint, give up
	forbidden                // the network policy refuses the destination: give up
)

// deliver tries the delivery ref names when it is due, and records the try.
func (s *Service) deliver(ctx context.Context, ref *deliveryRef) (time.Duration, error) {
	log := s.log().With("owner", ref.Owner, "endpoint_id", ref.EndpointID, "delivery_id", ref.DeliveryID)
	d, err := s.Store.GetWebhookDelivery(ctx, ref.Owner, ref.EndpointID, ref.DeliveryID)
	switch {
	case pipeline.ErrorCode(err) == pipeline.ENotFound:
		log.InfoContext(ctx, "webhook delivery no longer exists (its endpoint was deleted): message dropped")
		return 0, nil
	case err != nil:
		return 0, fmt.Errorf("read webhook delivery: %w", err)
	case d.Round != ref.Round || d.Status != pipeline.DeliveryPending:
		return 0, nil // a stale message: the record moved on
	}
	now := s.now()
	if d.NextAttemptAt != nil && now.Before(*d.NextAttemptAt) {
		return hide(d.NextAttemptAt.Sub(now)), nil
	}
	e, err := s.Store.GetWebhookEndpoint(ctx, ref.Owner, ref.EndpointID)
	switch {
	case pipeline.ErrorCode(err) == pipeline.ENotFound:
		return 0, nil
	case err != nil:
		return 0, fmt.Errorf("read webhook endpoint: %w", err)
	}
	if e.Disabled {
		d.Status, d.Error, d.NextAttemptAt, d.UpdatedAt = pipeline.DeliveryFailed, "the endpoint is disabled ("+e.DisabledReason+")", nil, now
		return 0, s.saveDelivery(ctx, d)
	}

	// Claim the try: the record says it is under way until the lease
	// ends, so that another message of this delivery (an event's message
	// handled twice, a message SQS delivered twice) finds it not due; the
	// loser of the write drops its message. A consumer that dies here
	// leaves the try to its message, which comes back and finds it due
	// when the lease ends.
	lease := now.Add(attemptLease)
	d.NextAttemptAt, d.UpdatedAt = &lease, now
	err = s.Store.UpdateWebhookDelivery(ctx, d)
	switch {
	case pipeline.ErrorCode(err) == pipeline.EConflict || pipeline.ErrorCode(err) == pipeline.ENotFound:
		return 0, nil
	case err != nil:
		return 0, fmt.Errorf("claim webhook delivery %s: %w", d.ID, err)
	}

	a, v := s.attempt(ctx, e, d, now)
	a.Manual = d.Tries == 0 && d.Round > 0
	d.AddAttempt(a)
	d.Tries++
	d.UpdatedAt = now
	schedule := s.schedule()
	switch {
	case v == delivered:
		d.Status, d.Error, d.NextAttemptAt = pipeline.DeliveryDelivered, "", nil
	case v == gone:
		d.Status, d.Error, d.NextAttemptAt = pipeline.DeliveryFailed, "the endpoint answered 410 Gone: it was disabled", nil
		if _, err := s.updateEndpoint(ctx, e.Owner, e.ID, func(cur *pipeline.WebhookEndpoint) error {
			cur.Disabled, cur.DisabledReason = true, fmt.Sprintf("answered 410 Gone at %s", now.Format(time.RFC3339))
			return nil
		}); err != nil {
			log.WarnContext(ctx, "disable a gone webhook endpoint", "err", err)
		}
	case v == forbidden:
		d.Status, d.Error, d.NextAttemptAt = pipeline.DeliveryFailed, "the destination is not allowed: "+a.Error, nil
	case d.Tries >= len(schedule):
		d.Status, d.NextAttemptAt = pipeline.DeliveryFailed, nil
		d.Error = fmt.Sprintf("gave up after %d tries over %s", d.Tries, Span(schedule))
	default:
		next := now.Add(schedule[d.Tries])
		d.NextAttemptAt = &next
	}
	log.InfoContext(ctx, "webhook delivery attempt", "status_code", a.StatusCode, "error", a.Error, "tries", d.Tries, "status", d.Status)
	if err := s.saveDelivery(ctx, d); err != nil {
		return 0, err
	}
	if d.Status == pipeline.DeliveryPending {
		return hide(d.NextAttemptAt.Sub(now)), nil
	}
	return 0, nil
}

// saveDelivery writes d. A conflict means a redelivery by hand (a new
// round, with its own message) came meanwhile: this message is done.
func (s *Service) saveDelivery(ctx context.Context, d *pipeline.WebhookDelivery) error {
	err := s.Store.UpdateWebhookDelivery(ctx, d)
	if pipeline.ErrorCode(err) == pipeline.EConflict || pipeline.ErrorCode(err) == pipeline.ENotFound {
		s.log().InfoContext(ctx, "webhook delivery changed meanwhile: this try's record is dropped", "delivery_id", d.ID, "err", err)
		return nil
	}
	if err != nil {
		return fmt.Errorf("record webhook delivery %s: %w", d.ID, err)
	}
	return nil
}

// attemptLease is how long a claimed try holds its delivery: longer than
// an attempt may take.
const attemptLease = DefaultTimeout + 45*time.Second

// UserAgent names the sender of deliveries.
const UserAgent = "BrightRun-Webhooks/1"

// SignatureHeader is the webhook-signature value of body sent as id at
// ts, signed with each secret: space-separated "v1,<base64>" entries.
func SignatureHeader(secrets []string, id string, ts time.Time, body []byte) (string, error) {
	sigs := make([]string, 0, len(secrets))
	for _, sec := range secrets {
		key, err := contract.ParseSecret(sec)
		if err != nil {
			return "", fmt.Errorf("endpoint secret: %w", err)
		}
		sigs = append(sigs, contract.Sign(key, id, ts, body))
	}
	return strings.Join(sigs, " "), nil
}

// attempt posts d's payload to e once.
func (s *Service) attempt(ctx context.Context, e *pipeline.WebhookEndpoint, d *pipeline.WebhookDelivery, now time.Time) (pipeline.DeliveryAttempt, verdict) {
	a := pipeline.DeliveryAttempt{At: now}
	sig, err := SignatureHeader(e.SigningSecrets(now), d.EventID, now, d.Payload)
	if err != nil {
		a.Error = err.Error()
		return a, retry
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, e.URL, bytes.NewReader(d.Payload))
	if err != nil {
		a.Error = "bad endpoint URL"
		return a, forbidden
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("User-Agent", UserAgent)
	req.Header.Set(contract.HeaderID, d.EventID)
	req.Header.Set(contract.HeaderTimestamp, strconv.FormatInt(now.Unix(), 10))
	req.Header.Set(contract.HeaderSignature, sig)
	start := time.Now()
	resp, err := s.client().Do(req)
	a.DurationMS = time.Since(start).Milliseconds()
	if err != nil {
		// Without the URL: an endpoint's path often holds its token.
		a.Error = truncate(withoutURL(err).Error(), 300)
		if errors.Is(err, netguard.ErrForbidden) {
			return a, forbidden
		}
		return a, retry
	}
	// Read a little of the answer so the connection can be reused.
	_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, 64<<10))
	resp.Body.Close()
	a.StatusCode = resp.StatusCode
	switch {
	case resp.StatusCode >= 200 && resp.StatusCode < 300:
		return a, delivered
	case resp.StatusCode == http.StatusGone:
		return a, gone
	}
	return a, retry
}

// client is Client, or the policy's guarded client made once.
func (s *Service) client() *http.Client {
	s.clientOnce.Do(func() {
		if s.Client == nil {
			s.Client = s.Policy.Client(DefaultTimeout)
			// A redirect would turn the POST into a bodiless GET whose 2xx
			// is no delivery: a 3xx is an answer like any other non-2xx.
			s.Client.CheckRedirect = func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }
		}
	})
	return s.Client
}

// withoutURL drops url.Error's method and URL, keeping the cause.
func withoutURL(err error) error {
	var uerr *url.Error
	if errors.As(err, &uerr) {
		return uerr.Err
	}
	return err
}

func truncate(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return s[:n] + "…"
}

// Run consumes the webhook queue until ctx ends, as the deliver Lambda's
// SQS trigger does (the local stack's loop).
func (s *Service) Run(ctx context.Context, visibility time.Duration) {
	for ctx.Err() == nil {
		msgs, err := s.Queue.Receive(ctx, 10, visibility, time.Second)
		if err != nil {
			if ctx.Err() == nil {
				s.log().ErrorContext(ctx, "receive from the webhook queue", "err", err)
				time.Sleep(time.Second)
			}
			continue
		}
		s.handleBatch(ctx, msgs)
	}
}

// Drain handles the messages visible now, until none is left; tests call
// it after moving their clock.
func (s *Service) Drain(ctx context.Context, visibility time.Duration) error {
	for {
		msgs, err := s.Queue.Receive(ctx, 10, visibility, 0)
		if err != nil {
			return fmt.Errorf("receive from the webhook queue: %w", err)
		}
		if len(msgs) == 0 {
			return nil
		}
		s.handleBatch(ctx, msgs)
	}
}

// handleBatch handles received messages at once: deletes the done,
// hides the waiting, leaves the failed.
func (s *Service) handleBatch(ctx context.Context, msgs []pipeline.Delivery) {
	var wg sync.WaitGroup
	for _, m := range msgs {
		wg.Add(1)
		go func() {
			defer wg.Done()
			wait, err := s.HandleMessage(ctx, m.Body)
			switch {
			case err != nil:
				s.log().WarnContext(ctx, "webhook message failed: it comes back", "message_id", m.ID, "receives", m.ReceiveCount, "err", err)
			case wait > 0:
				if err := s.Queue.ChangeVisibility(ctx, m.Receipt, wait); err != nil {
					s.log().WarnContext(ctx, "hide a waiting webhook message", "message_id", m.ID, "err", err)
				}
			default:
				if err := s.Queue.Delete(ctx, m.Receipt); err != nil {
					s.log().ErrorContext(ctx, "delete a handled webhook message", "message_id", m.ID, "err", err)
				}
			}
		}()
	}
	wg.Wait()
}

// HandleSQSEvent is the deliver Lambda's handler. A message whose next
// try is not due is hidden until then (ChangeMessageVisibility) and
// reported as a batch item failure, so that Lambda keeps it; a failed one
// is reported too, and comes back after the queue's visibility timeout.
func (s *Service) HandleSQSEvent(ctx context.Context, ev events.SQSEvent) (events.SQSEventResponse, error) {
	var (
		resp events.SQSEventResponse
		mu   sync.Mutex
		wg   sync.WaitGroup
	)
	for _, m := range ev.Records {
		wg.Add(1)
		go func() {
			defer wg.Done()
			wait, err := s.HandleMessage(ctx, []byte(m.Body))
			if err == nil && wait > 0 {
				err = s.Queue.ChangeVisibility(ctx, m.ReceiptHandle, wait)
				if err == nil {
					err = errWaiting
				}
			}
			if err != nil {
				if !errors.Is(err, errWaiting) {
					s.log().ErrorContext(ctx, "webhook message failed: it comes back", "message_id", m.MessageId, "err", err)
				}
				mu.Lock()
				resp.BatchItemFailures = append(resp.BatchItemFailures, events.SQSBatchItemFailure{ItemIdentifier: m.MessageId})
				mu.Unlock()
			}
		}()
	}
	wg.Wait()
	return resp, nil
}

// errWaiting marks a message kept for its next try.
var errWaiting = errors.New("next try not due")
