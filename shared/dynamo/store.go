// Package dynamo is pipeline.Store, pipeline.JobLog and
// pipeline.JobScanner over one DynamoDB table (schema.go).
//
// Every write of a record is conditional: a create on the item not
// existing, an update and a delete on it existing and (for updates) on its
// version. ConditionalCheckFailedException becomes pipeline.EConflict, or
// pipeline.ENotFound when the item is missing. Of the job log, an event is
// created once per id (a transaction with a guard item), a notification
// once per key, and a metric point replaces the stored one of its attempt
// and step. List cursors are HMAC-signed with a key given to the store and
// bound to the owner and the list.
package dynamo

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"hash/fnv"
	"strconv"
	"strings"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/feature/dynamodb/expression"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb/types"
	"github.com/aws/smithy-go"

	"github.com/brightrun/brightrun/shared/pipeline"
)

// Client is the part of the DynamoDB API the store uses; *dynamodb.Client
// implements it.
type Client interface {
	GetItem(ctx context.Context, in *dynamodb.GetItemInput, optFns ...func(*dynamodb.Options)) (*dynamodb.GetItemOutput, error)
	PutItem(ctx context.Context, in *dynamodb.PutItemInput, optFns ...func(*dynamodb.Options)) (*dynamodb.PutItemOutput, error)
	DeleteItem(ctx context.Context, in *dynamodb.DeleteItemInput, optFns ...func(*dynamodb.Options)) (*dynamodb.DeleteItemOutput, error)
	Query(ctx context.Context, in *dynamodb.QueryInput, optFns ...func(*dynamodb.Options)) (*dynamodb.QueryOutput, error)
	BatchWriteItem(ctx context.Context, in *dynamodb.BatchWriteItemInput, optFns ...func(*dynamodb.Options)) (*dynamodb.BatchWriteItemOutput, error)
	TransactWriteItems(ctx context.Context, in *dynamodb.TransactWriteItemsInput, optFns ...func(*dynamodb.Options)) (*dynamodb.TransactWriteItemsOutput, error)
	BatchGetItem(ctx context.Context, in *dynamodb.BatchGetItemInput, optFns ...func(*dynamodb.Options)) (*dynamodb.BatchGetItemOutput, error)
}

// Options configure a Store.
type Options struct {
	// Table is the table's name (suggested setting: BRIGHTRUN_TABLE).
	Table string
	// CursorKey signs list cursors: at least 32 random bytes, the same for
	// every instance of every function that lists; a secret (suggested
	// setting: BRIGHTRUN_CURSOR_KEY, from Secrets Manager or SSM).
	CursorKey []byte
	// LogRetention, when positive, is how long job events, metric points
	// and notifications are kept: their items get expires_at (the table's
	// TTL attribute) that far after they are written. Zero keeps them.
	LogRetention time.Duration
}

// MinCursorKeyLen is the shortest cursor key New accepts.
const MinCursorKeyLen = 32

// Store is pipeline.Store, pipeline.JobLog and pipeline.JobScanner over
// DynamoDB.
type Store struct {
	client       Client
	table        string
	cursor       cursorSigner
	logRetention time.Duration
	retryDelay   time.Duration // the first wait before a batch is retried
}

var (
	_ pipeline.Store        = (*Store)(nil)
	_ pipeline.LiveRecorder = (*Store)(nil)
)

// New returns a store over the table.
func New(client Client, opts Options) (*Store, error) {
	switch {
	case client == nil:
		return nil, errors.New("dynamo: no client")
	case opts.Table == "":
		return nil, errors.New("dynamo: no table name")
	case len(opts.CursorKey) < MinCursorKeyLen:
		return nil, fmt.Errorf("dynamo: the cursor key must be at least %d bytes, got %d", MinCursorKeyLen, len(opts.CursorKey))
	}
	return &Store{client: client, table: opts.Table, cursor: cursorSigner{key: append([]byte(nil), opts.CursorKey...)},
		logRetention: opts.LogRetention, retryDelay: 50 * time.Millisecond}, nil
}

// Table returns the name of the store's table.
func (s *Store) Table() string { return s.table }

// kind is one record type: its sort-key prefix and name for messages.
type kind struct {
	prefix string // DATASET or JOB
	name   string
}

var (
	datasetKind = kind{"DATASET", "dataset"}
	jobKind     = kind{"JOB", "job"}
)

// timeFormat is T(x) of schema.go: fixed width, so that string order is
// time order.
const timeFormat = "2006-01-02T15:04:05.000000000Z"

// timeKey formats t in fixed width, so that string order is time order.
func timeKey(t time.Time) string {
	return t.UTC().Format(timeFormat)
}

func ownerPK(owner string) string                { return "OWNER#" + owner }
func recordSK(k kind, id string) string          { return k.prefix + "#" + id }
func listPK(k kind, owner string) string         { return k.prefix + "#" + owner }
func listSK(created time.Time, id string) string { return timeKey(created) + "#" + id }
func statusPK(owner string, s pipeline.JobStatus) string {
	return jobKind.prefix + "#" + owner + "#" + string(s)
}

// activeShards is how many partitions the active_by_created index spreads
// each unfinished status over: a job's shard is a hash of its owner and
// id, so that no partition takes more than 1/16 of the writes of the jobs
// of a status, however many run.
const activeShards = 16

// activePK is the active_by_created partition of owner's job id in status.
func activePK(s pipeline.JobStatus, owner, id string) string {
	h := fnv.New32a()
	h.Write([]byte(owner))
	h.Write([]byte{0})
	h.Write([]byte(id))
	return fmt.Sprintf("%s#%s#%02d", jobKind.prefix, s, h.Sum32()%activeShards)
}

// activeParts are the partitions of status in active_by_created that a
// reader walks: the one a table written before sharding uses (JOB#<status>,
// empty once tools/dynmigrate has run), then the shards.
func activeParts(s pipeline.JobStatus) []string {
	parts := []string{jobKind.prefix + "#" + string(s)}
	for i := 0; i < activeShards; i++ {
		parts = append(parts, fmt.Sprintf("%s#%s#%02d", jobKind.prefix, s, i))
	}
	return parts
}

func key(k kind, owner, id string) map[string]types.AttributeValue {
	return map[string]types.AttributeValue{
		attrPK: &types.AttributeValueMemberS{Value: ownerPK(owner)},
		attrSK: &types.AttributeValueMemberS{Value: recordSK(k, id)},
	}
}

// checkKey checks the key of a record to create.
func checkKey(k kind, owner, id string) error {
	if owner == "" || id == "" {
		return pipeline.Errorf(pipeline.EInvalid, "%s needs an owner and an id", k.name)
	}
	if !pipeline.KeyFits(owner, id) {
		return pipeline.Errorf(pipeline.EInvalid, "%s id must be at most %d bytes and its owner %d", k.name, pipeline.MaxIDBytes, pipeline.MaxOwnerBytes)
	}
	return nil
}

// checkStoredKey checks the key of a record to read, update or delete: one
// too long to have been created names no record (and would be refused by
// DynamoDB as a key).
func checkStoredKey(k kind, owner, id string) error {
	if owner == "" || id == "" {
		return pipeline.Errorf(pipeline.EInvalid, "%s needs an owner and an id", k.name)
	}
	if !pipeline.KeyFits(owner, id) {
		return notFound(k, id[:min(len(id), 40)]+"…")
	}
	return nil
}

func notFound(k kind, id string) error {
	return pipeline.Errorf(pipeline.ENotFound, "%s %q not found", k.name, id)
}

// record builds the item of a record: its keys, its version and its JSON
// document.
func record(k kind, id string, version int64, rec any, attrs map[string]string) (map[string]types.AttributeValue, error) {
	item, err := encodeDoc(rec)
	if err != nil {
		return nil, fmt.Errorf("encode %s %s: %w", k.name, id, err)
	}
	item[attrVersion] = &types.AttributeValueMemberN{Value: strconv.FormatInt(version, 10)}
	for name, v := range attrs {
		item[name] = &types.AttributeValueMemberS{Value: v}
	}
	return item, checkSize(k, id, item)
}

func datasetItem(d *pipeline.Dataset) (map[string]types.AttributeValue, error) {
	return record(datasetKind, d.ID, d.Version, d, map[string]string{
		attrPK:     ownerPK(d.Owner),
		attrSK:     recordSK(datasetKind, d.ID),
		attrListPK: listPK(datasetKind, d.Owner),
		attrListSK: listSK(d.CreatedAt, d.ID),
	})
}

func jobItem(j *pipeline.Job) (map[string]types.AttributeValue, error) {
	attrs := map[string]string{
		attrPK:       ownerPK(j.Owner),
		attrSK:       recordSK(jobKind, j.ID),
		attrListPK:   listPK(jobKind, j.Owner),
		attrListSK:   listSK(j.CreatedAt, j.ID),
		attrStatusPK: statusPK(j.Owner, j.Status),
	}
	if !j.Status.Terminal() {
		attrs[attrActivePK] = activePK(j.Status, j.Owner, j.ID)
	}
	if j.RunPodID != "" {
		attrs[attrRunPodPK] = j.RunPodID
	}
	if j.ServedAt != nil {
		attrs[attrServedAt] = timeKey(*j.ServedAt)
	}
	return record(jobKind, j.ID, j.Version, j, attrs)
}

func decodeDataset(item map[string]types.AttributeValue) (*pipeline.Dataset, error) {
	var d pipeline.Dataset
	if err := decodeDoc(item, &d); err != nil {
		return nil, fmt.Errorf("decode stored dataset: %w", err)
	}
	return &d, nil
}

func decodeJob(item map[string]types.AttributeValue) (*pipeline.Job, error) {
	var j pipeline.Job
	if err := decodeDoc(item, &j); err != nil {
		return nil, fmt.Errorf("decode stored job: %w", err)
	}
	return &j, nil
}

// create puts a new item, failing with EConflict when it exists.
func (s *Store) create(ctx context.Context, k kind, id string, item map[string]types.AttributeValue) error {
	cond := expression.AttributeNotExists(expression.Name(attrPK))
	expr, err := expression.NewBuilder().WithCondition(cond).Build()
	if err != nil {
		return fmt.Errorf("build condition: %w", err)
	}
	_, err = s.client.PutItem(ctx, &dynamodb.PutItemInput{
		TableName:                 aws.String(s.table),
		Item:                      item,
		ConditionExpression:       expr.Condition(),
		ExpressionAttributeNames:  expr.Names(),
		ExpressionAttributeValues: expr.Values(),
	})
	var ccf *types.ConditionalCheckFailedException
	if errors.As(err, &ccf) {
		return pipeline.Errorf(pipeline.EConflict, "%s %q already exists", k.name, id)
	}
	return s.translate(err, "create %s %s", k.name, id)
}

// update replaces the item if it exists with the given version. The
// stored version tells a conflict from a missing item.
func (s *Store) update(ctx context.Context, k kind, id string, version int64, item map[string]types.AttributeValue) error {
	cond := expression.AttributeExists(expression.Name(attrPK)).
		And(expression.Name(attrVersion).Equal(expression.Value(version)))
	expr, err := expression.NewBuilder().WithCondition(cond).Build()
	if err != nil {
		return fmt.Errorf("build condition: %w", err)
	}
	_, err = s.client.PutItem(ctx, &dynamodb.PutItemInput{
		TableName:                           aws.String(s.table),
		Item:                                item,
		ConditionExpression:                 expr.Condition(),
		ExpressionAttributeNames:            expr.Names(),
		ExpressionAttributeValues:           expr.Values(),
		ReturnValuesOnConditionCheckFailure: types.ReturnValuesOnConditionCheckFailureAllOld,
	})
	var ccf *types.ConditionalCheckFailedException
	if errors.As(err, &ccf) {
		if len(ccf.Item) == 0 {
			return notFound(k, id)
		}
		stored := "?"
		if v, ok := ccf.Item[attrVersion].(*types.AttributeValueMemberN); ok {
			stored = v.Value
		}
		return pipeline.Errorf(pipeline.EConflict, "%s %q was changed by someone else (version %s, expected %d)", k.name, id, stored, version)
	}
	return s.translate(err, "update %s %s", k.name, id)
}

func (s *Store) get(ctx context.Context, k kind, owner, id string) (map[string]types.AttributeValue, error) {
	if err := checkStoredKey(k, owner, id); err != nil {
		return nil, err
	}
	out, err := s.client.GetItem(ctx, &dynamodb.GetItemInput{
		TableName:      aws.String(s.table),
		Key:            key(k, owner, id),
		ConsistentRead: aws.Bool(true),
	})
	if err != nil {
		return nil, s.translate(err, "get %s %s", k.name, id)
	}
	if len(out.Item) == 0 {
		return nil, notFound(k, id)
	}
	return out.Item, nil
}

// CreateDataset stores a new dataset with version 1.
func (s *Store) CreateDataset(ctx context.Context, d *pipeline.Dataset) error {
	if err := checkKey(datasetKind, d.Owner, d.ID); err != nil {
		return err
	}
	old := d.Version
	d.Version = 1
	item, err := datasetItem(d)
	if err == nil {
		err = s.create(ctx, datasetKind, d.ID, item)
	}
	if err != nil {
		d.Version = old
	}
	return err
}

// GetDataset returns the owner's dataset.
func (s *Store) GetDataset(ctx context.Context, owner, id string) (*pipeline.Dataset, error) {
	item, err := s.get(ctx, datasetKind, owner, id)
	if err != nil {
		return nil, err
	}
	return decodeDataset(item)
}

// UpdateDataset writes d if the stored version is d.Version, and then
// increments d.Version.
func (s *Store) UpdateDataset(ctx context.Context, d *pipeline.Dataset) error {
	if err := checkStoredKey(datasetKind, d.Owner, d.ID); err != nil {
		return err
	}
	old := d.Version
	d.Version = old + 1
	item, err := datasetItem(d)
	if err == nil {
		err = s.update(ctx, datasetKind, d.ID, old, item)
	}
	if err != nil {
		d.Version = old
	}
	return err
}

// DeleteDataset removes the owner's dataset record.
func (s *Store) DeleteDataset(ctx context.Context, owner, id string) error {
	return s.deleteRecord(ctx, datasetKind, owner, id)
}

// DeleteJob removes the owner's job record (and with it its index
// entries).
func (s *Store) DeleteJob(ctx context.Context, owner, id string) error {
	return s.deleteRecord(ctx, jobKind, owner, id)
}

// deleteRecord deletes the owner's record of kind k, ENotFound when there
// is none.
func (s *Store) deleteRecord(ctx context.Context, k kind, owner, id string) error {
	if err := checkStoredKey(k, owner, id); err != nil {
		return err
	}
	expr, err := expression.NewBuilder().WithCondition(expression.AttributeExists(expression.Name(attrPK))).Build()
	if err != nil {
		return fmt.Errorf("build condition: %w", err)
	}
	_, err = s.client.DeleteItem(ctx, &dynamodb.DeleteItemInput{
		TableName:                aws.String(s.table),
		Key:                      key(k, owner, id),
		ConditionExpression:      expr.Condition(),
		ExpressionAttributeNames: expr.Names(),
	})
	var ccf *types.ConditionalCheckFailedException
	if errors.As(err, &ccf) {
		return notFound(k, id)
	}
	return s.translate(err, "delete %s %s", k.name, id)
}

// ListDatasets returns one page of the owner's datasets, newest first.
func (s *Store) ListDatasets(ctx context.Context, owner string, p pipeline.Page) ([]*pipeline.Dataset, string, error) {
	if owner == "" {
		return nil, "", pipeline.Errorf(pipeline.EInvalid, "a list needs an owner")
	}
	q := listQuery{index: indexByCreated, hashAttr: attrListPK, hash: listPK(datasetKind, owner), rangeAttr: attrListSK,
		scope: "datasets", owner: owner, desc: true}
	items, next, err := s.query(ctx, q, p)
	if err != nil {
		return nil, "", err
	}
	out := make([]*pipeline.Dataset, 0, len(items))
	for _, item := range items {
		d, err := decodeDataset(item)
		if err != nil {
			return nil, "", err
		}
		out = append(out, d)
	}
	return out, next, nil
}

// CreateJob stores a new job with version 1.
func (s *Store) CreateJob(ctx context.Context, j *pipeline.Job) error {
	if err := checkKey(jobKind, j.Owner, j.ID); err != nil {
		return err
	}
	old := j.Version
	j.Version = 1
	item, err := jobItem(j)
	if err == nil {
		err = s.create(ctx, jobKind, j.ID, item)
	}
	if err != nil {
		j.Version = old
	}
	return err
}

// GetJob returns the owner's job, its live state merged.
func (s *Store) GetJob(ctx context.Context, owner, id string) (*pipeline.Job, error) {
	item, err := s.get(ctx, jobKind, owner, id)
	if err != nil {
		return nil, err
	}
	j, err := decodeJob(item)
	if err != nil {
		return nil, err
	}
	if err := s.mergeLive(ctx, j); err != nil {
		return nil, err
	}
	return j, nil
}

// UpdateJob writes j if the stored version is j.Version, and then
// increments j.Version.
func (s *Store) UpdateJob(ctx context.Context, j *pipeline.Job) error {
	if err := checkStoredKey(jobKind, j.Owner, j.ID); err != nil {
		return err
	}
	old := j.Version
	j.Version = old + 1
	item, err := jobItem(j)
	if err == nil {
		err = s.update(ctx, jobKind, j.ID, old, item)
	}
	if err != nil {
		j.Version = old
	}
	return err
}

// ListJobs returns one page of the owner's jobs, newest first, optionally
// of one status.
func (s *Store) ListJobs(ctx context.Context, owner string, f pipeline.JobFilter, p pipeline.Page) ([]*pipeline.Job, string, error) {
	if owner == "" {
		return nil, "", pipeline.Errorf(pipeline.EInvalid, "a list needs an owner")
	}
	q := listQuery{index: indexByCreated, hashAttr: attrListPK, hash: listPK(jobKind, owner), rangeAttr: attrListSK,
		scope: "jobs", owner: owner, desc: true}
	if f.Status != "" {
		if !f.Status.Valid() {
			return nil, "", pipeline.Errorf(pipeline.EInvalid, "unknown job status %q", f.Status)
		}
		q.index, q.hashAttr, q.hash = indexByStatus, attrStatusPK, statusPK(owner, f.Status)
		q.scope = "jobs:" + string(f.Status)
	}
	return s.jobs(ctx, q, p)
}

// GetJobByRunPodID returns the job whose current attempt has the given
// RunPod id, read consistently. ENotFound when none has it (yet: the index
// is eventually consistent).
func (s *Store) GetJobByRunPodID(ctx context.Context, runPodID string) (*pipeline.Job, error) {
	if runPodID == "" {
		return nil, pipeline.Errorf(pipeline.EInvalid, "a RunPod id is required")
	}
	kc := expression.Key(attrRunPodPK).Equal(expression.Value(runPodID))
	expr, err := expression.NewBuilder().WithKeyCondition(kc).Build()
	if err != nil {
		return nil, fmt.Errorf("build key condition: %w", err)
	}
	out, err := s.client.Query(ctx, &dynamodb.QueryInput{
		TableName:                 aws.String(s.table),
		IndexName:                 aws.String(indexByRunPod),
		KeyConditionExpression:    expr.KeyCondition(),
		ExpressionAttributeNames:  expr.Names(),
		ExpressionAttributeValues: expr.Values(),
		Limit:                     aws.Int32(2),
	})
	if err != nil {
		return nil, s.translate(err, "find job by RunPod id %s", runPodID)
	}
	for _, k := range out.Items {
		pk, _ := k[attrPK].(*types.AttributeValueMemberS)
		sk, _ := k[attrSK].(*types.AttributeValueMemberS)
		if pk == nil || sk == nil || !strings.HasPrefix(pk.Value, "OWNER#") || !strings.HasPrefix(sk.Value, jobKind.prefix+"#") {
			continue
		}
		j, err := s.GetJob(ctx, strings.TrimPrefix(pk.Value, "OWNER#"), strings.TrimPrefix(sk.Value, jobKind.prefix+"#"))
		if pipeline.ErrorCode(err) == pipeline.ENotFound {
			continue
		}
		if err != nil {
			return nil, err
		}
		if j.RunPodID == runPodID {
			return j, nil
		}
	}
	return nil, pipeline.Errorf(pipeline.ENotFound, "no job has RunPod id %q", runPodID)
}

func (s *Store) jobs(ctx context.Context, q listQuery, p pipeline.Page) ([]*pipeline.Job, string, error) {
	items, next, err := s.query(ctx, q, p)
	if err != nil {
		return nil, "", err
	}
	return s.decodeJobs(ctx, items, next)
}

// decodeJobs decodes a page of job items and merges their live states.
func (s *Store) decodeJobs(ctx context.Context, items []map[string]types.AttributeValue, next string) ([]*pipeline.Job, string, error) {
	out := make([]*pipeline.Job, 0, len(items))
	for _, item := range items {
		j, err := decodeJob(item)
		if err != nil {
			return nil, "", err
		}
		out = append(out, j)
	}
	if err := s.mergeLives(ctx, out); err != nil {
		return nil, "", err
	}
	return out, next, nil
}

// listQuery is one walk of an index, or of the table itself when index is
// "" (then hashAttr and rangeAttr are pk and sk, and the read is strongly
// consistent).
type listQuery struct {
	index, hashAttr, hash, rangeAttr string
	before                           string // only range keys below this one ("" for all)
	prefix                           string // only range keys that begin with this ("" for all)
	scope, owner                     string // what a cursor is bound to
	desc                             bool
}

// query returns up to p.Limit items of q from p's cursor, and the cursor of
// the next page ("" when there is none).
func (s *Store) query(ctx context.Context, q listQuery, p pipeline.Page) ([]map[string]types.AttributeValue, string, error) {
	p = p.Clamp()
	var start map[string]types.AttributeValue
	if p.Cursor != "" {
		k, err := s.cursor.decode(p.Cursor, q)
		if err != nil {
			return nil, "", err
		}
		start = k
	}
	kc := expression.Key(q.hashAttr).Equal(expression.Value(q.hash))
	if q.before != "" {
		kc = kc.And(expression.Key(q.rangeAttr).LessThan(expression.Value(q.before)))
	}
	if q.prefix != "" {
		kc = kc.And(expression.Key(q.rangeAttr).BeginsWith(q.prefix))
	}
	var index *string
	if q.index != "" {
		index = aws.String(q.index)
	}
	expr, err := expression.NewBuilder().WithKeyCondition(kc).Build()
	if err != nil {
		return nil, "", fmt.Errorf("build key condition: %w", err)
	}
	// Read one more than the page to know whether there is a next page.
	var items []map[string]types.AttributeValue
	for len(items) <= p.Limit {
		out, err := s.client.Query(ctx, &dynamodb.QueryInput{
			TableName:                 aws.String(s.table),
			IndexName:                 index,
			ConsistentRead:            aws.Bool(index == nil),
			KeyConditionExpression:    expr.KeyCondition(),
			ExpressionAttributeNames:  expr.Names(),
			ExpressionAttributeValues: expr.Values(),
			ScanIndexForward:          aws.Bool(!q.desc),
			Limit:                     aws.Int32(int32(p.Limit + 1 - len(items))),
			ExclusiveStartKey:         start,
		})
		if err != nil {
			return nil, "", s.translate(err, "query %s", cmp.Or(q.index, q.scope))
		}
		items = append(items, out.Items...)
		if len(out.LastEvaluatedKey) == 0 {
			break
		}
		start = out.LastEvaluatedKey
	}
	if len(items) <= p.Limit {
		return items, "", nil
	}
	items = items[:p.Limit]
	next, err := s.cursor.encode(q, indexKey(items[len(items)-1], q))
	if err != nil {
		return nil, "", err
	}
	return items, next, nil
}

// indexKey is the position of item in q's index: the table's and the
// index's key attributes, as DynamoDB's LastEvaluatedKey would give it.
func indexKey(item map[string]types.AttributeValue, q listQuery) map[string]string {
	k := map[string]string{}
	for _, a := range []string{attrPK, attrSK, q.hashAttr, q.rangeAttr} {
		if v, ok := item[a].(*types.AttributeValueMemberS); ok {
			k[a] = v.Value
		}
	}
	return k
}

// translate turns an AWS error into the domain's; nil stays nil.
func (s *Store) translate(err error, format string, args ...any) error {
	if err == nil {
		return nil
	}
	what := fmt.Sprintf(format, args...)
	var apiErr smithy.APIError
	if errors.As(err, &apiErr) {
		switch code := apiErr.ErrorCode(); code {
		case "ProvisionedThroughputExceededException", "RequestLimitExceeded", "ThrottlingException",
			"InternalServerError", "ServiceUnavailable", "TransactionConflictException":
			return &pipeline.Error{Code: pipeline.EUnavailable, Message: "the database is busy: try again", Details: map[string]string{"aws_error": code}}
		case "ValidationException":
			if strings.Contains(strings.ToLower(apiErr.ErrorMessage()), "item size") {
				return pipeline.Errorf(pipeline.ETooLarge, "%s: the record is over DynamoDB's %d KB item limit", what, maxItemBytes/1024)
			}
		}
	}
	return fmt.Errorf("%s in table %s: %w", what, s.table, err)
}
