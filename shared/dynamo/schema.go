package dynamo

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb/types"
)

// The table: one table, on-demand billing, string keys, TTL on expires_at.
// The SAM template must declare exactly this (CreateTable builds it for
// tests and the local stack):
//
//	BillingMode: PAY_PER_REQUEST
//	AttributeDefinitions (all S): pk, sk, list_pk, list_sk, status_pk,
//	  active_pk, active_sk, runpod_pk
//	KeySchema: pk HASH, sk RANGE
//	GlobalSecondaryIndexes:
//	  by_created         list_pk HASH, list_sk RANGE      Projection ALL
//	  by_status          status_pk HASH, list_sk RANGE    Projection ALL
//	  active             active_pk HASH, active_sk RANGE  Projection ALL
//	    (retired: no item is written with active_sk any more; it stays
//	    for one deploy because CloudFormation adds or drops one index
//	    per update, and this one adds unfinished: drop it in the next)
//	  by_runpod          runpod_pk HASH                   Projection KEYS_ONLY
//	  active_by_created  active_pk HASH, list_sk RANGE    Projection ALL
//	  unfinished         active_pk HASH, list_sk RANGE    Projection INCLUDE served_at
//	TimeToLiveSpecification: AttributeName expires_at, Enabled true
//
// Items. T(x) is a time in fixed width, 2006-01-02T15:04:05.000000000Z,
// so that string order is time order:
//
//	dataset  pk OWNER#<owner>  sk DATASET#<id>
//	         list_pk DATASET#<owner>  list_sk T(created_at)#<id>
//	job      pk OWNER#<owner>  sk JOB#<id>
//	         list_pk JOB#<owner>  list_sk T(created_at)#<id>
//	         status_pk JOB#<owner>#<status>
//	         active_pk JOB#<status>#<shard 00-15>
//	           (only while the status is not terminal, which keeps
//	           active_by_created sparse; the shard is a hash of owner and
//	           id, so a status's jobs spread over 16 partitions; no time
//	           in any index key, so only a transition moves a job in an
//	           index)
//	         runpod_pk <RunPod id>  (only once the job has one)
//	         served_at T(claimed)  (once dispatch gave it a slot: the
//	           one attribute unfinished projects beside the keys)
//	reserved pk OWNER#<owner>  sk IDEMPOTENCY#<key>  expires_at <epoch s>
//	           (idempotency keys: shape reserved, not written yet)
//
// The job log (pipeline.JobLog). A job's events and metric points have a
// partition of their own, named by owner and job, so that one owner's
// reads never reach another's and a busy job does not heat its owner's
// partition; a job id holding '#' is refused, which keeps the name
// unambiguous. Notifications live in the owner's partition:
//
//	event     pk JOBLOG#<owner>#<job>  sk EVENT#T(time)#<event id>
//	            (the log's order: oldest first, by time, then id; an
//	            event without a time gets the time it is appended)
//	event id  pk JOBLOG#<owner>#<job>  sk EVENTID#<event id>
//	            (guard, no doc: written in one transaction with the event,
//	            both on attribute_not_exists(pk), so an id is stored once)
//	metric    pk JOBLOG#<owner>#<job>  sk METRIC#<attempt %010d>#<step %010d>
//	            (a repeat replaces: unconditional, BatchWriteItem)
//	live      pk JOBLOG#<owner>#<job>  sk LIVE
//	            (the job's latest point and heartbeat, live.go: written
//	            by every progress callback of a running job instead of the
//	            job item, only when newer)
//	notification  pk OWNER#<owner>  sk NOTIFICATION#T(created_at)#<id>
//
// These items hold no version and no index attributes; each may hold
// expires_at when the store is given a LogRetention.
//
// Outbound webhook endpoints (in the owner's partition, sk WEBHOOK#<id>)
// and their deliveries (a partition per endpoint) are described in
// webhooks.go; they use no index.
//
// What completed jobs measured (pipeline.Measurement) lives in a partition
// per GPU type and model, across owners; a GPU id holding '#' is refused.
// It never expires:
//
//	measurement  pk MEASURE#<gpu>#<model>  sk MEASUREMENT#T(job created_at)#<job id>
//	               (a repeat replaces: unconditional PutItem)
//
// Every record item also holds version (N), the condition of every
// update. Records and job-log items hold their JSON in doc (S), or
// gzip-compressed in doc_gz (B) when the JSON is over 8 KiB (an event's
// data, a callback's JSON of up to 256 KiB, is the large case). An item is
// at most 400 KB; one that would not fit even compressed is refused with
// ETooLarge.
//
// Access patterns:
//   - a record by owner and id: GetItem pk, sk, strongly consistent (so
//     another owner's id is simply not found);
//   - an owner's datasets or jobs, newest first: Query by_created on
//     list_pk, descending;
//   - an owner's jobs of one status, newest first: Query by_status;
//   - every owner's jobs of a non-terminal status, for reconciliation and
//     fair dispatch: Query active_by_created on each of the status's 16
//     shards (and JOB#<status>, where a table written before sharding
//     kept them until tools/dynmigrate moved them); terminal statuses are
//     not listed;
//   - every owner's unfinished jobs of a status by key (owner, id,
//     created, served), for fair dispatch's plan: Query unfinished on
//     the same partitions, ~150 bytes a job instead of its document;
//   - a job's live state (live.go), with the job: GetItem pk
//     JOBLOG#<owner>#<job>, sk LIVE, or BatchGetItem for a page of jobs;
//   - a job's events, oldest first, or metric points by attempt and step:
//     Query pk JOBLOG#<owner>#<job>, begins_with(sk, "EVENT#" or
//     "METRIC#"), strongly consistent;
//   - an owner's notifications, newest first: Query pk OWNER#<owner>,
//     begins_with(sk, "NOTIFICATION#"), descending, strongly consistent;
//   - the latest measurements of a model on a GPU type: Query pk
//     MEASURE#<gpu>#<model>, begins_with(sk, "MEASUREMENT#"), descending,
//     strongly consistent, limited;
//   - a job by RunPod id, for the RunPod webhook: Query by_runpod, then
//     GetItem;
//   - idempotency keys, expiring through TTL: conditional PutItem / GetItem
//     on pk, sk.
//
// The indexes are eventually consistent: a list may miss a record written
// a moment ago, never another owner's.
const (
	attrPK       = "pk"
	attrSK       = "sk"
	attrListPK   = "list_pk"
	attrListSK   = "list_sk"
	attrStatusPK = "status_pk"
	attrActivePK = "active_pk"
	attrActiveSK = "active_sk" // the retired active index's range key
	attrServedAt = "served_at"
	attrRunPodPK = "runpod_pk"
	attrVersion  = "version"
	attrDoc      = "doc"
	attrDocGz    = "doc_gz"
	// AttrExpiresAt is the table's TTL attribute (epoch seconds).
	AttrExpiresAt = "expires_at"

	indexByCreated  = "by_created"
	indexByStatus   = "by_status"
	indexByRunPod   = "by_runpod"
	indexActive     = "active" // retired
	indexUnfinished = "unfinished"

	indexActiveByCreated = "active_by_created"
)

// Schema is the table's definition, the schema above: what CreateTable
// creates, and what a model of the table's capacity reads its indexes
// from.
func Schema(name string) *dynamodb.CreateTableInput {
	str := func(names ...string) []types.AttributeDefinition {
		var defs []types.AttributeDefinition
		for _, n := range names {
			defs = append(defs, types.AttributeDefinition{AttributeName: aws.String(n), AttributeType: types.ScalarAttributeTypeS})
		}
		return defs
	}
	key := func(hash, rng string) []types.KeySchemaElement {
		k := []types.KeySchemaElement{{AttributeName: aws.String(hash), KeyType: types.KeyTypeHash}}
		if rng != "" {
			k = append(k, types.KeySchemaElement{AttributeName: aws.String(rng), KeyType: types.KeyTypeRange})
		}
		return k
	}
	all := &types.Projection{ProjectionType: types.ProjectionTypeAll}
	return &dynamodb.CreateTableInput{
		TableName:            aws.String(name),
		BillingMode:          types.BillingModePayPerRequest,
		AttributeDefinitions: str(attrPK, attrSK, attrListPK, attrListSK, attrStatusPK, attrActivePK, attrActiveSK, attrRunPodPK),
		KeySchema:            key(attrPK, attrSK),
		GlobalSecondaryIndexes: []types.GlobalSecondaryIndex{
			{IndexName: aws.String(indexByCreated), KeySchema: key(attrListPK, attrListSK), Projection: all},
			{IndexName: aws.String(indexByStatus), KeySchema: key(attrStatusPK, attrListSK), Projection: all},
			{IndexName: aws.String(indexActive), KeySchema: key(attrActivePK, attrActiveSK), Projection: all},
			{IndexName: aws.String(indexByRunPod), KeySchema: key(attrRunPodPK, ""), Projection: &types.Projection{ProjectionType: types.ProjectionTypeKeysOnly}},
			{IndexName: aws.String(indexActiveByCreated), KeySchema: key(attrActivePK, attrListSK), Projection: all},
			{IndexName: aws.String(indexUnfinished), KeySchema: key(attrActivePK, attrListSK), Projection: &types.Projection{
				ProjectionType: types.ProjectionTypeInclude, NonKeyAttributes: []string{attrServedAt}}},
		},
	}
}

// CreateTable creates the store's table with the schema above, waits until
// it is active and turns on TTL on expires_at. It is for tests and the local
// stack; the deployed table comes from the SAM template, which must declare
// the same schema.
func CreateTable(ctx context.Context, client *dynamodb.Client, name string) error {
	_, err := client.CreateTable(ctx, Schema(name))
	var inUse *types.ResourceInUseException
	if err != nil && !errors.As(err, &inUse) {
		return fmt.Errorf("create table %s: %w", name, err)
	}
	if err := dynamodb.NewTableExistsWaiter(client).Wait(ctx, &dynamodb.DescribeTableInput{TableName: aws.String(name)}, 2*time.Minute,
		func(o *dynamodb.TableExistsWaiterOptions) {
			o.MinDelay, o.MaxDelay = 100*time.Millisecond, 2*time.Second
		}); err != nil {
		return fmt.Errorf("wait for table %s: %w", name, err)
	}
	ttl, err := client.DescribeTimeToLive(ctx, &dynamodb.DescribeTimeToLiveInput{TableName: aws.String(name)})
	if err == nil && ttl.TimeToLiveDescription != nil && ttl.TimeToLiveDescription.TimeToLiveStatus == types.TimeToLiveStatusEnabled {
		return nil
	}
	if _, err := client.UpdateTimeToLive(ctx, &dynamodb.UpdateTimeToLiveInput{
		TableName:               aws.String(name),
		TimeToLiveSpecification: &types.TimeToLiveSpecification{AttributeName: aws.String(AttrExpiresAt), Enabled: aws.Bool(true)},
	}); err != nil {
		return fmt.Errorf("enable TTL on %s: %w", name, err)
	}
	return nil
}
