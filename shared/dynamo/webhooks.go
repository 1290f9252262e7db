package dynamo

// Webhook endpoints and their deliveries (pipeline.WebhookStore), with no
// index of their own. An endpoint lives in its owner's partition; its
// deliveries have a partition per endpoint, named by owner and endpoint,
// so that a busy endpoint's log does not heat its owner's partition and
// deleting the endpoint deletes one partition. An endpoint id holding '#'
// is refused, which keeps the name unambiguous:
//
//	webhook endpoint  pk OWNER#<owner>  sk WEBHOOK#<id>  version
//	                    (ids are ULIDs, time-ordered: a Query of
//	                    begins_with(sk, "WEBHOOK#"), descending, lists an
//	                    owner's endpoints newest first)
//	webhook delivery  pk WEBHOOKLOG#<owner>#<endpoint id>  sk DELIVERY#<id>
//	                    version, expires_at <created_at + DeliveryRetention>
//	                    (ids are ULIDs of the event's time: a Query of
//	                    the partition, descending, lists newest first)
//
// Both are records (version, doc or doc_gz, as schema.go says). Access
// patterns: GetItem pk, sk (strongly consistent), versioned PutItem, and
// the two Queries above (strongly consistent: the table, not an index).
// A delivery keeps its payload (the dataset's or job's view, a few KB)
// and at most pipeline.MaxKeptAttempts attempts, far from 400 KB.

import (
	"context"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb/types"

	"github.com/brightrun/brightrun/shared/pipeline"
)

var _ pipeline.WebhookStore = (*Store)(nil)

var (
	webhookKind  = kind{"WEBHOOK", "webhook endpoint"}
	deliveryKind = kind{"DELIVERY", "webhook delivery"}
)

// DeliveryRetention is how long a delivery record is kept (DynamoDB's TTL
// removes it after).
const DeliveryRetention = 30 * 24 * time.Hour

// deliveryPK is the partition of an endpoint's deliveries.
func deliveryPK(owner, endpointID string) (string, error) {
	if owner == "" || endpointID == "" {
		return "", pipeline.Errorf(pipeline.EInvalid, "a webhook delivery needs an owner and an endpoint")
	}
	if strings.Contains(endpointID, "#") || !pipeline.KeyFits(owner, endpointID) {
		return "", notFound(webhookKind, endpointID[:min(len(endpointID), 40)])
	}
	return "WEBHOOKLOG#" + owner + "#" + endpointID, nil
}

func webhookItem(e *pipeline.WebhookEndpoint) (map[string]types.AttributeValue, error) {
	return record(webhookKind, e.ID, e.Version, e, map[string]string{attrPK: ownerPK(e.Owner), attrSK: recordSK(webhookKind, e.ID)})
}

func deliveryItem(d *pipeline.WebhookDelivery) (map[string]types.AttributeValue, error) {
	pk, err := deliveryPK(d.Owner, d.EndpointID)
	if err != nil {
		return nil, err
	}
	item, err := record(deliveryKind, d.ID, d.Version, d, map[string]string{attrPK: pk, attrSK: recordSK(deliveryKind, d.ID)})
	if err != nil {
		return nil, err
	}
	item[AttrExpiresAt] = &types.AttributeValueMemberN{Value: strconv.FormatInt(d.CreatedAt.Add(DeliveryRetention).Unix(), 10)}
	return item, nil
}

// CreateWebhookEndpoint stores a new endpoint with version 1.
func (s *Store) CreateWebhookEndpoint(ctx context.Context, e *pipeline.WebhookEndpoint) error {
	if err := checkKey(webhookKind, e.Owner, e.ID); err != nil {
		return err
	}
	if strings.Contains(e.ID, "#") {
		return pipeline.Errorf(pipeline.EInvalid, "webhook endpoint id %q holds '#'", e.ID)
	}
	old := e.Version
	e.Version = 1
	item, err := webhookItem(e)
	if err == nil {
		err = s.create(ctx, webhookKind, e.ID, item)
	}
	if err != nil {
		e.Version = old
	}
	return err
}

// GetWebhookEndpoint returns the owner's endpoint.
func (s *Store) GetWebhookEndpoint(ctx context.Context, owner, id string) (*pipeline.WebhookEndpoint, error) {
	item, err := s.get(ctx, webhookKind, owner, id)
	if err != nil {
		return nil, err
	}
	var e pipeline.WebhookEndpoint
	if err := decodeDoc(item, &e); err != nil {
		return nil, fmt.Errorf("decode stored webhook endpoint: %w", err)
	}
	return &e, nil
}

// UpdateWebhookEndpoint writes e if its stored version is e's.
func (s *Store) UpdateWebhookEndpoint(ctx context.Context, e *pipeline.WebhookEndpoint) error {
	if err := checkStoredKey(webhookKind, e.Owner, e.ID); err != nil {
		return err
	}
	old := e.Version
	e.Version = old + 1
	item, err := webhookItem(e)
	if err == nil {
		err = s.update(ctx, webhookKind, e.ID, old, item)
	}
	if err != nil {
		e.Version = old
	}
	return err
}

// DeleteWebhookEndpoint removes the owner's endpoint, then its deliveries
// (a failure half-way leaves deliveries that no read reaches without the
// endpoint, and that expire).
func (s *Store) DeleteWebhookEndpoint(ctx context.Context, owner, id string) error {
	if err := s.deleteRecord(ctx, webhookKind, owner, id); err != nil {
		return err
	}
	pk, err := deliveryPK(owner, id)
	if err != nil {
		return nil
	}
	return s.deletePartition(ctx, pk, "the deliveries of webhook endpoint "+id)
}

// ListWebhookEndpoints returns one page of the owner's endpoints, newest first.
func (s *Store) ListWebhookEndpoints(ctx context.Context, owner string, p pipeline.Page) ([]*pipeline.WebhookEndpoint, string, error) {
	q := listQuery{hashAttr: attrPK, hash: ownerPK(owner), rangeAttr: attrSK, prefix: webhookKind.prefix + "#",
		scope: "webhooks", owner: owner, desc: true}
	items, next, err := s.query(ctx, q, p)
	if err != nil {
		return nil, "", err
	}
	out := make([]*pipeline.WebhookEndpoint, 0, len(items))
	for _, item := range items {
		var e pipeline.WebhookEndpoint
		if err := decodeDoc(item, &e); err != nil {
			return nil, "", fmt.Errorf("decode stored webhook endpoint: %w", err)
		}
		out = append(out, &e)
	}
	return out, next, nil
}

// CreateWebhookDelivery stores a new delivery with version 1.
func (s *Store) CreateWebhookDelivery(ctx context.Context, d *pipeline.WebhookDelivery) error {
	if err := checkKey(deliveryKind, d.Owner, d.ID); err != nil {
		return err
	}
	if d.EndpointID == "" || strings.Contains(d.EndpointID, "#") {
		return pipeline.Errorf(pipeline.EInvalid, "a webhook delivery needs an endpoint id without '#'")
	}
	old := d.Version
	d.Version = 1
	item, err := deliveryItem(d)
	if err == nil {
		err = s.create(ctx, deliveryKind, d.ID, item)
	}
	if err != nil {
		d.Version = old
	}
	return err
}

// GetWebhookDelivery returns a delivery of the owner's endpoint.
func (s *Store) GetWebhookDelivery(ctx context.Context, owner, endpointID, id string) (*pipeline.WebhookDelivery, error) {
	if err := checkStoredKey(deliveryKind, owner, id); err != nil {
		return nil, err
	}
	pk, err := deliveryPK(owner, endpointID)
	if err != nil {
		return nil, notFound(deliveryKind, id)
	}
	out, err := s.client.GetItem(ctx, &dynamodb.GetItemInput{
		TableName: aws.String(s.table),
		Key: map[string]types.AttributeValue{
			attrPK: &types.AttributeValueMemberS{Value: pk},
			attrSK: &types.AttributeValueMemberS{Value: recordSK(deliveryKind, id)},
		},
		ConsistentRead: aws.Bool(true),
	})
	if err != nil {
		return nil, s.translate(err, "get webhook delivery %s", id)
	}
	if len(out.Item) == 0 {
		return nil, notFound(deliveryKind, id)
	}
	var d pipeline.WebhookDelivery
	if err := decodeDoc(out.Item, &d); err != nil {
		return nil, fmt.Errorf("decode stored webhook delivery: %w", err)
	}
	return &d, nil
}

// UpdateWebhookDelivery writes d if its stored version is d's.
func (s *Store) UpdateWebhookDelivery(ctx context.Context, d *pipeline.WebhookDelivery) error {
	if err := checkStoredKey(deliveryKind, d.Owner, d.ID); err != nil {
		return err
	}
	if _, err := deliveryPK(d.Owner, d.EndpointID); err != nil {
		return notFound(deliveryKind, d.ID)
	}
	old := d.Version
	d.Version = old + 1
	item, err := deliveryItem(d)
	if err == nil {
		err = s.update(ctx, deliveryKind, d.ID, old, item)
	}
	if err != nil {
		d.Version = old
	}
	return err
}

// ListWebhookDeliveries returns one page of an endpoint's deliveries, newest first.
func (s *Store) ListWebhookDeliveries(ctx context.Context, owner, endpointID string, p pipeline.Page) ([]*pipeline.WebhookDelivery, string, error) {
	pk, err := deliveryPK(owner, endpointID)
	if err != nil {
		return []*pipeline.WebhookDelivery{}, "", nil
	}
	q := listQuery{hashAttr: attrPK, hash: pk, rangeAttr: attrSK, prefix: deliveryKind.prefix + "#",
		scope: "webhook-deliveries:" + endpointID, owner: owner, desc: true}
	items, next, err := s.query(ctx, q, p)
	if err != nil {
		return nil, "", err
	}
	out := make([]*pipeline.WebhookDelivery, 0, len(items))
	for _, item := range items {
		var d pipeline.WebhookDelivery
		if err := decodeDoc(item, &d); err != nil {
			return nil, "", fmt.Errorf("decode stored webhook delivery: %w", err)
		}
		out = append(out, &d)
	}
	return out, next, nil
}
