package local

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"

	"github.com/brightrun/brightrun/shared/pipeline"
	bolt "go.etcd.io/bbolt"
)

// Webhook endpoints are records of their owner; deliveries are records of
// the pseudo-owner owner NUL endpoint id, so that an endpoint's
// deliveries list under one prefix and go with it.
var (
	webhookEndpoints  = kind{[]byte("webhook_endpoints"), []byte("webhook_endpoints_by_time"), nil, "webhook endpoint"}
	webhookDeliveries = kind{[]byte("webhook_deliveries"), []byte("webhook_deliveries_by_time"), nil, "webhook delivery"}
	webhookBuckets    = [][]byte{webhookEndpoints.records, webhookEndpoints.byTime, webhookDeliveries.records, webhookDeliveries.byTime}

	_ pipeline.WebhookStore = (*Store)(nil)
)

// deliveryOwner is the key prefix of an endpoint's deliveries.
func deliveryOwner(owner, endpointID string) string { return owner + "\x00" + endpointID }

// CreateWebhookEndpoint stores a new endpoint with version 1.
func (s *Store) CreateWebhookEndpoint(ctx context.Context, e *pipeline.WebhookEndpoint) error {
	e.Version = 1
	if err := s.create(webhookEndpoints, e.Owner, e.ID, e.CreatedAt, "", e); err != nil {
		e.Version = 0
		return err
	}
	return nil
}

// GetWebhookEndpoint returns the owner's endpoint.
func (s *Store) GetWebhookEndpoint(ctx context.Context, owner, id string) (*pipeline.WebhookEndpoint, error) {
	var e pipeline.WebhookEndpoint
	if err := s.get(webhookEndpoints, owner, id, &e); err != nil {
		return nil, err
	}
	return &e, nil
}

// UpdateWebhookEndpoint writes e if nobody changed it since it was read.
func (s *Store) UpdateWebhookEndpoint(ctx context.Context, e *pipeline.WebhookEndpoint) error {
	old := e.Version
	err := s.update(webhookEndpoints, e.Owner, e.ID, e.Version, "", func(v int64) any {
		e.Version = v
		return e
	})
	if err != nil {
		e.Version = old
	}
	return err
}

// DeleteWebhookEndpoint removes the owner's endpoint and its deliveries.
func (s *Store) DeleteWebhookEndpoint(ctx context.Context, owner, id string) error {
	if err := s.delete(webhookEndpoints, owner, id); err != nil {
		return err
	}
	prefix := []byte(deliveryOwner(owner, id) + "\x00")
	return s.db.Batch(func(tx *bolt.Tx) error {
		for _, name := range [][]byte{webhookDeliveries.records, webhookDeliveries.byTime} {
			b := tx.Bucket(name)
			var keys [][]byte
			c := b.Cursor()
			for k, _ := c.Seek(prefix); k != nil && bytes.HasPrefix(k, prefix); k, _ = c.Next() {
				keys = append(keys, append([]byte(nil), k...))
			}
			for _, k := range keys {
				if err := b.Delete(k); err != nil {
					return fmt.Errorf("delete a delivery of webhook endpoint %s: %w", id, err)
				}
			}
		}
		return nil
	})
}

// ListWebhookEndpoints returns one page of the owner's endpoints, newest first.
func (s *Store) ListWebhookEndpoints(ctx context.Context, owner string, p pipeline.Page) ([]*pipeline.WebhookEndpoint, string, error) {
	var out []*pipeline.WebhookEndpoint
	next, err := s.list(webhookEndpoints, webhookEndpoints.byTime, append([]byte(owner), 0), p, owner, func(v []byte) error {
		var e pipeline.WebhookEndpoint
		if err := json.Unmarshal(v, &e); err != nil {
			return err
		}
		out = append(out, &e)
		return nil
	})
	return out, next, err
}

// CreateWebhookDelivery stores a new delivery with version 1.
func (s *Store) CreateWebhookDelivery(ctx context.Context, d *pipeline.WebhookDelivery) error {
	if d.EndpointID == "" {
		return pipeline.Errorf(pipeline.EInvalid, "a webhook delivery needs an endpoint")
	}
	d.Version = 1
	if err := s.create(webhookDeliveries, deliveryOwner(d.Owner, d.EndpointID), d.ID, d.CreatedAt, "", d); err != nil {
		d.Version = 0
		return err
	}
	return nil
}

// GetWebhookDelivery returns a delivery of the owner's endpoint.
func (s *Store) GetWebhookDelivery(ctx context.Context, owner, endpointID, id string) (*pipeline.WebhookDelivery, error) {
	var d pipeline.WebhookDelivery
	if err := s.get(webhookDeliveries, deliveryOwner(owner, endpointID), id, &d); err != nil {
		return nil, err
	}
	return &d, nil
}

// UpdateWebhookDelivery writes d if nobody changed it since it was read.
func (s *Store) UpdateWebhookDelivery(ctx context.Context, d *pipeline.WebhookDelivery) error {
	old := d.Version
	err := s.update(webhookDeliveries, deliveryOwner(d.Owner, d.EndpointID), d.ID, d.Version, "", func(v int64) any {
		d.Version = v
		return d
	})
	if err != nil {
		d.Version = old
	}
	return err
}

// ListWebhookDeliveries returns one page of an endpoint's deliveries, newest first.
func (s *Store) ListWebhookDeliveries(ctx context.Context, owner, endpointID string, p pipeline.Page) ([]*pipeline.WebhookDelivery, string, error) {
	var out []*pipeline.WebhookDelivery
	key := deliveryOwner(owner, endpointID)
	next, err := s.list(webhookDeliveries, webhookDeliveries.byTime, append([]byte(key), 0), p, key, func(v []byte) error {
		var d pipeline.WebhookDelivery
		if err := json.Unmarshal(v, &d); err != nil {
			return err
		}
		out = append(out, &d)
		return nil
	})
	return out, next, err
}
