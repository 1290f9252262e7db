package runpodemu

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"log/slog"
	"net/http"
	"sync"
	"time"

	"github.com/brightrun/brightrun/shared/contract"
)

// callbacks sends one attempt's signed callbacks, in order, the way
// gpu-image's CallbackClient does: network errors, 429 and 5xx are retried
// with doubling delays (a retry keeps the seq and webhook-id); other 4xx are
// dropped; {"action": "stop"} in a 2xx answer asks the worker to stop (the
// job was cancelled); 409 or 410 mean the attempt was superseded: the worker
// stops and sends nothing more.
type callbacks struct {
	url     string
	key     []byte
	jobID   string
	attempt int
	hc      *http.Client
	clock   Clock
	retries int
	delay   time.Duration
	log     *slog.Logger

	mu         sync.Mutex
	seq        int64
	stop       bool
	superseded bool
	reason     string
}

func (c *callbacks) stopped() (stop, superseded bool, reason string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.stop, c.superseded, c.reason
}

// send delivers one message and reports whether it was delivered.
func (c *callbacks) send(ctx context.Context, p contract.Payload) bool {
	_, _, ok := c.request(ctx, p)
	return ok
}

// request delivers one message and returns the last answer's status and
// body (status 0: no answer) and whether it was delivered (a 2xx). A urls
// callback reads its presigned URLs from the body.
func (c *callbacks) request(ctx context.Context, p contract.Payload) (status int, body []byte, delivered bool) {
	c.mu.Lock()
	if c.superseded {
		c.mu.Unlock()
		return 0, nil, false
	}
	c.seq++
	seq := c.seq
	c.mu.Unlock()

	cb, err := contract.NewCallback(c.jobID, c.attempt, seq, c.clock.Now(), p)
	if err != nil {
		c.log.Error("emulated worker built an invalid callback", "type", p.CallbackType(), "error", err)
		return 0, nil, false
	}
	msg, err := json.Marshal(cb)
	if err != nil {
		c.log.Error("encode callback", "error", err)
		return 0, nil, false
	}
	id := contract.WebhookID(c.jobID, c.attempt, seq)
	for try := 0; try <= c.retries; try++ {
		if try > 0 {
			if err := sleepCtx(ctx, c.delay<<(try-1)); err != nil {
				return status, body, false
			}
		}
		var resp []byte
		var err error
		status, resp, err = c.post(ctx, id, msg)
		body = resp
		switch {
		case err != nil:
			c.log.Warn("callback failed", "type", cb.Type, "seq", seq, "try", try+1, "error", err)
			continue
		case status >= 200 && status < 300:
			var doc struct {
				Action string `json:"action"`
				Reason string `json:"reason"`
			}
			if json.Unmarshal(resp, &doc) == nil && doc.Action == "stop" {
				c.mu.Lock()
				c.stop, c.reason = true, firstNonEmpty(doc.Reason, "the job was cancelled")
				c.mu.Unlock()
			}
			return status, resp, true
		case status == http.StatusConflict || status == http.StatusGone:
			c.mu.Lock()
			c.superseded, c.stop = true, true
			c.reason = firstNonEmpty(reason(resp), "this attempt was superseded")
			c.mu.Unlock()
			c.log.Warn("callback refused: attempt superseded", "type", cb.Type, "seq", seq, "status", status)
			return status, resp, false
		case status == http.StatusTooManyRequests || status >= 500:
			c.log.Warn("callback failed", "type", cb.Type, "seq", seq, "try", try+1, "status", status)
			continue
		default:
			c.log.Error("callback refused, not retried", "type", cb.Type, "seq", seq, "status", status, "body", string(resp))
			return status, resp, false
		}
	}
	c.log.Error("callback given up", "type", cb.Type, "seq", seq)
	return status, body, false
}

func (c *callbacks) post(ctx context.Context, id string, body []byte) (int, []byte, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, c.url, bytes.NewReader(body))
	if err != nil {
		return 0, nil, err
	}
	for k, v := range contract.SignedHeaders(c.key, id, c.clock.Now(), body) {
		req.Header[k] = v
	}
	req.Header.Set("Content-Type", "application/json")
	resp, err := c.hc.Do(req)
	if err != nil {
		return 0, nil, err
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(io.LimitReader(resp.Body, 64<<10))
	return resp.StatusCode, b, nil
}

// reason reads {"reason": "..."} or {"error": {"message": "..."}}.
func reason(b []byte) string {
	var doc struct {
		Reason string `json:"reason"`
		Error  struct {
			Message string `json:"message"`
		} `json:"error"`
	}
	if json.Unmarshal(b, &doc) != nil {
		return ""
	}
	return firstNonEmpty(doc.Reason, doc.Error.Message)
}

func firstNonEmpty(s ...string) string {
	for _, v := range s {
		if v != "" {
			return v
		}
	}
	return ""
}

func sleepCtx(ctx context.Context, d time.Duration) error {
	if d <= 0 {
		return ctx.Err()
	}
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return nil
	case <-ctx.Done():
		return context.Cause(ctx)
	}
}
