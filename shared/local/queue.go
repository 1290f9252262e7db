package local

import (
	"context"
	"crypto/rand"
	"encoding/binary"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"strings"
	"sync"
	"time"

	"github.com/brightrun/brightrun/shared/pipeline"
	bolt "go.etcd.io/bbolt"
)

// Queue is a durable at-least-once queue in the local state file, with the
// semantics of an SQS standard queue with a redrive policy: received
// messages are hidden for their visibility timeout, come back unless
// deleted, and move to the dead-letter queue after MaxReceives deliveries.
type Queue struct {
	db          *bolt.DB
	main, dead  []byte
	maxReceives int
	now         func() time.Time

	mu     sync.Mutex
	notify chan struct{} // closed and replaced when a message is sent
}

var _ pipeline.Queue = (*Queue)(nil)

// QueueOptions configure a local queue.
type QueueOptions struct {
	// MaxReceives is how many deliveries a message gets before it moves to
	// the dead-letter queue (SQS's maxReceiveCount). Default 5.
	MaxReceives int
	// Now is the clock (tests move it); default time.Now.
	Now func() time.Time
}

type queuedMessage struct {
	ID           string            `json:"id"`
	Body         []byte            `json:"body"`
	Attributes   map[string]string `json:"attributes,omitempty"`
	VisibleAt    time.Time         `json:"visible_at"`
	ReceiveCount int               `json:"receive_count"`
	Receipt      string            `json:"receipt,omitempty"`
}

// NewQueue returns the named queue (and its dead-letter queue) kept in db.
func NewQueue(db *DB, name string, opts QueueOptions) (*Queue, error) {
	if opts.MaxReceives <= 0 {
		opts.MaxReceives = 5
	}
	if opts.Now == nil {
		opts.Now = time.Now
	}
	q := &Queue{
		db:          db.bolt,
		main:        []byte("queue:" + name),
		dead:        []byte("queue:" + name + ":dlq"),
		maxReceives: opts.MaxReceives,
		now:         opts.Now,
		notify:      make(chan struct{}),
	}
	err := db.bolt.Update(func(tx *bolt.Tx) error {
		for _, b := range [][]byte{q.main, q.dead} {
			if _, err := tx.CreateBucketIfNotExists(b); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("create queue %s: %w", name, err)
	}
	return q, nil
}

func randomHex(n int) string {
	b := make([]byte, n)
	_, _ = rand.Read(b)
	return hex.EncodeToString(b)
}

// Send appends m to the queue.
func (q *Queue) Send(ctx context.Context, m pipeline.Message) (string, error) {
	msg := queuedMessage{ID: randomHex(16), Body: m.Body, Attributes: m.Attributes, VisibleAt: q.now()}
	data, err := json.Marshal(msg)
	if err != nil {
		return "", fmt.Errorf("encode message: %w", err)
	}
	err = q.db.Batch(func(tx *bolt.Tx) error {
		b := tx.Bucket(q.main)
		seq, err := b.NextSequence()
		if err != nil {
			return err
		}
		return b.Put(binary.BigEndian.AppendUint64(nil, seq), data)
	})
	if err != nil {
		return "", fmt.Errorf("send message: %w", err)
	}
	q.mu.Lock()
	close(q.notify)
	q.notify = make(chan struct{})
	q.mu.Unlock()
	return msg.ID, nil
}

// receipt handles are "<sequence hex>.<random>": they name the message and
// the one delivery they were issued for.
func makeReceipt(key []byte) string { return hex.EncodeToString(key) + "." + randomHex(8) }

func parseReceipt(r string) ([]byte, error) {
	seq, _, ok := strings.Cut(r, ".")
	key, err := hex.DecodeString(seq)
	if !ok || err != nil || len(key) != 8 {
		return nil, pipeline.Errorf(pipeline.EInvalid, "receipt handle %q is malformed", r)
	}
	return key, nil
}

// Receive returns up to max visible messages, waiting up to wait for one.
func (q *Queue) Receive(ctx context.Context, max int, visibility, wait time.Duration) ([]pipeline.Delivery, error) {
	if max <= 0 || max > 10 {
		return nil, pipeline.Errorf(pipeline.EInvalid, "max must be between 1 and 10, got %d", max)
	}
	deadline := time.Now().Add(wait)
	for {
		q.mu.Lock()
		notify := q.notify
		q.mu.Unlock()
		out, next, err := q.receiveOnce(max, visibility)
		if err != nil || len(out) > 0 {
			return out, err
		}
		left := time.Until(deadline)
		if left <= 0 {
			return nil, nil
		}
		// Sleep until a send, the next hidden message's return, or the deadline.
		if !next.IsZero() {
			if d := next.Sub(q.now()); d < left {
				left = max0(d)
			}
		}
		timer := time.NewTimer(left)
		select {
		case <-ctx.Done():
			timer.Stop()
			return nil, ctx.Err()
		case <-notify:
		case <-timer.C:
		}
		timer.Stop()
	}
}

func max0(d time.Duration) time.Duration {
	if d < time.Millisecond {
		return time.Millisecond
	}
	return d
}

// receiveOnce takes visible messages; it also reports when the earliest
// hidden one becomes visible again.
func (q *Queue) receiveOnce(max int, visibility time.Duration) ([]pipeline.Delivery, time.Time, error) {
	var out []pipeline.Delivery
	var next time.Time
	err := q.db.Update(func(tx *bolt.Tx) error {
		b, dead := tx.Bucket(q.main), tx.Bucket(q.dead)
		now := q.now()
		c := b.Cursor()
		for k, v := c.First(); k != nil && len(out) < max; k, v = c.Next() {
			var m queuedMessage
			if err := json.Unmarshal(v, &m); err != nil {
				return fmt.Errorf("decode queued message: %w", err)
			}
			if m.VisibleAt.After(now) {
				if next.IsZero() || m.VisibleAt.Before(next) {
					next = m.VisibleAt
				}
				continue
			}
			key := append([]byte(nil), k...)
			if m.ReceiveCount >= q.maxReceives {
				// Redrive: delivered too often without being deleted.
				m.Receipt = ""
				data, _ := json.Marshal(m)
				seq, err := dead.NextSequence()
				if err != nil {
					return err
				}
				if err := dead.Put(binary.BigEndian.AppendUint64(nil, seq), data); err != nil {
					return err
				}
				if err := c.Delete(); err != nil {
					return err
				}
				continue
			}
			m.ReceiveCount++
			m.VisibleAt = now.Add(visibility)
			m.Receipt = makeReceipt(key)
			data, err := json.Marshal(m)
			if err != nil {
				return err
			}
			if err := b.Put(key, data); err != nil {
				return err
			}
			out = append(out, pipeline.Delivery{ID: m.ID, Body: m.Body, Attributes: m.Attributes, Receipt: m.Receipt, ReceiveCount: m.ReceiveCount})
		}
		return nil
	})
	return out, next, err
}

// withReceipt runs fn on the message a receipt was issued for, if that
// delivery is still the current one.
func (q *Queue) withReceipt(receipt string, fn func(b *bolt.Bucket, key []byte, m *queuedMessage) error) error {
	key, err := parseReceipt(receipt)
	if err != nil {
		return err
	}
	return q.db.Update(func(tx *bolt.Tx) error {
		b := tx.Bucket(q.main)
		v := b.Get(key)
		if v == nil {
			return nil // already deleted: deleting twice is fine, as in SQS
		}
		var m queuedMessage
		if err := json.Unmarshal(v, &m); err != nil {
			return fmt.Errorf("decode queued message: %w", err)
		}
		if m.Receipt != receipt {
			return pipeline.Errorf(pipeline.EConflict, "receipt handle is stale: the message was delivered again since")
		}
		return fn(b, key, &m)
	})
}

// Delete removes the message a receipt was issued for.
func (q *Queue) Delete(ctx context.Context, receipt string) error {
	return q.withReceipt(receipt, func(b *bolt.Bucket, key []byte, _ *queuedMessage) error {
		return b.Delete(key)
	})
}

// ChangeVisibility hides (or, with 0, releases) a received message.
func (q *Queue) ChangeVisibility(ctx context.Context, receipt string, visibility time.Duration) error {
	err := q.withReceipt(receipt, func(b *bolt.Bucket, key []byte, m *queuedMessage) error {
		m.VisibleAt = q.now().Add(visibility)
		data, err := json.Marshal(m)
		if err != nil {
			return err
		}
		return b.Put(key, data)
	})
	if err == nil && visibility == 0 {
		q.mu.Lock()
		close(q.notify)
		q.notify = make(chan struct{})
		q.mu.Unlock()
	}
	return err
}

// DeadLetters lists up to max messages of the dead-letter queue.
func (q *Queue) DeadLetters(ctx context.Context, max int) ([]pipeline.Delivery, error) {
	var out []pipeline.Delivery
	err := q.db.View(func(tx *bolt.Tx) error {
		c := tx.Bucket(q.dead).Cursor()
		for k, v := c.First(); k != nil && len(out) < max; k, v = c.Next() {
			var m queuedMessage
			if err := json.Unmarshal(v, &m); err != nil {
				return fmt.Errorf("decode dead letter: %w", err)
			}
			out = append(out, pipeline.Delivery{ID: m.ID, Body: m.Body, Attributes: m.Attributes, ReceiveCount: m.ReceiveCount})
		}
		return nil
	})
	return out, err
}
