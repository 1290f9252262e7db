package dynamo

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/feature/dynamodb/expression"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb/types"

	"github.com/brightrun/brightrun/shared/pipeline"
)

var (
	_ pipeline.JobLog     = (*Store)(nil)
	_ pipeline.JobScanner = (*Store)(nil)
)

var (
	eventKind        = kind{"EVENT", "event"}
	eventIDKind      = kind{"EVENTID", "event"}
	metricKind       = kind{"METRIC", "metric point"}
	notificationKind = kind{"NOTIFICATION", "notification"}
	measurementKind  = kind{"MEASUREMENT", "measurement"}
)

const (
	// maxPKBytes and maxSKBytes are DynamoDB's key length limits.
	maxPKBytes = 2048
	maxSKBytes = 1024
	// maxCounter bounds attempts and steps: they are keyed in 10 digits.
	maxCounter = 9_999_999_999
	// batchSize is BatchWriteItem's limit on puts per call.
	batchSize = 25
	// batchTries bounds the calls that write one batch, unprocessed items
	// included, before PutMetrics gives up with EUnavailable.
	batchTries = 8
)

// jobLogPK is the partition of a job's events and metric points. The
// job id is last and may not hold '#', so no two (owner, job) pairs share
// a partition.
func jobLogPK(owner, jobID string) (string, error) {
	if owner == "" || jobID == "" {
		return "", pipeline.Errorf(pipeline.EInvalid, "a job log needs an owner and a job id")
	}
	if strings.Contains(jobID, "#") {
		return "", pipeline.Errorf(pipeline.EInvalid, "job id %q cannot have a log: it holds '#'", jobID)
	}
	pk := "JOBLOG#" + owner + "#" + jobID
	if len(pk) > maxPKBytes {
		return "", pipeline.Errorf(pipeline.EInvalid, "owner and job id are too long for a job log")
	}
	return pk, nil
}

func eventSK(at time.Time, id string) string { return eventKind.prefix + "#" + timeKey(at) + "#" + id }
func eventIDSK(id string) string             { return eventIDKind.prefix + "#" + id }
func metricSK(attempt, step int) string {
	return fmt.Sprintf("%s#%010d#%010d", metricKind.prefix, attempt, step)
}
func notificationSK(created time.Time, id string) string {
	return notificationKind.prefix + "#" + timeKey(created) + "#" + id
}

// logItem builds the item of a job-log entry: its keys, its JSON document
// and, when the store keeps logs for a limited time, its expiry.
func (s *Store) logItem(k kind, id string, rec any, pk, sk string) (map[string]types.AttributeValue, error) {
	if len(sk) > maxSKBytes {
		return nil, pipeline.Errorf(pipeline.EInvalid, "%s id %q is too long", k.name, id)
	}
	var item map[string]types.AttributeValue
	if rec == nil {
		item = map[string]types.AttributeValue{}
	} else {
		var err error
		if item, err = encodeDoc(rec); err != nil {
			if pipeline.ErrorCode(err) == pipeline.ETooLarge {
				return nil, err
			}
			return nil, fmt.Errorf("encode %s %s: %w", k.name, id, err)
		}
	}
	item[attrPK] = &types.AttributeValueMemberS{Value: pk}
	item[attrSK] = &types.AttributeValueMemberS{Value: sk}
	if s.logRetention > 0 {
		exp := time.Now().Add(s.logRetention).Unix()
		item[AttrExpiresAt] = &types.AttributeValueMemberN{Value: strconv.FormatInt(exp, 10)}
	}
	return item, checkSize(k, id, item)
}

// AppendEvent stores e unless an event with its id is stored for the job,
// and reports whether it was new. It writes two items in one transaction:
// a guard keyed by the event id, which makes the id unique, and the event
// keyed by its time and id, which orders the log. An event without a time
// is ordered by the time it is appended.
func (s *Store) AppendEvent(ctx context.Context, e *pipeline.Event) (bool, error) {
	if e.ID == "" {
		return false, pipeline.Errorf(pipeline.EInvalid, "an event needs an id")
	}
	pk, err := jobLogPK(e.Owner, e.JobID)
	if err != nil {
		return false, err
	}
	at := e.Time
	if at.IsZero() {
		at = time.Now()
	}
	ev, err := s.logItem(eventKind, e.ID, e, pk, eventSK(at, e.ID))
	if err != nil {
		return false, err
	}
	guard, err := s.logItem(eventIDKind, e.ID, nil, pk, eventIDSK(e.ID))
	if err != nil {
		return false, err
	}
	expr, err := expression.NewBuilder().WithCondition(expression.AttributeNotExists(expression.Name(attrPK))).Build()
	if err != nil {
		return false, fmt.Errorf("build condition: %w", err)
	}
	put := func(item map[string]types.AttributeValue) types.TransactWriteItem {
		return types.TransactWriteItem{Put: &types.Put{
			TableName:                aws.String(s.table),
			Item:                     item,
			ConditionExpression:      expr.Condition(),
			ExpressionAttributeNames: expr.Names(),
		}}
	}
	_, err = s.client.TransactWriteItems(ctx, &dynamodb.TransactWriteItemsInput{
		TransactItems: []types.TransactWriteItem{put(guard), put(ev)},
	})
	var tce *types.TransactionCanceledException
	if errors.As(err, &tce) {
		for _, r := range tce.CancellationReasons {
			switch aws.ToString(r.Code) {
			case "ConditionalCheckFailed":
				return false, nil
			case "TransactionConflict", "ThrottlingError", "ProvisionedThroughputExceeded":
				return false, &pipeline.Error{Code: pipeline.EUnavailable, Message: "the database is busy: try again",
					Details: map[string]string{"aws_error": aws.ToString(r.Code)}}
			}
		}
	}
	if err != nil {
		return false, s.translate(err, "append event %s of job %s", e.ID, e.JobID)
	}
	return true, nil
}

// ListEvents returns one page of a job's events, oldest first (by their
// time, then id), read consistently.
func (s *Store) ListEvents(ctx context.Context, owner, jobID string, p pipeline.Page) ([]*pipeline.Event, string, error) {
	pk, err := jobLogPK(owner, jobID)
	if err != nil {
		return nil, "", err
	}
	q := listQuery{hashAttr: attrPK, hash: pk, rangeAttr: attrSK, prefix: eventKind.prefix + "#",
		scope: "events:" + jobID, owner: owner}
	items, next, err := s.query(ctx, q, p)
	if err != nil {
		return nil, "", err
	}
	out := make([]*pipeline.Event, 0, len(items))
	for _, item := range items {
		var e pipeline.Event
		if err := decodeDoc(item, &e); err != nil {
			return nil, "", fmt.Errorf("decode stored event: %w", err)
		}
		out = append(out, &e)
	}
	return out, next, nil
}

// PutMetrics stores points by (attempt, step), replacing a stored point
// with the same attempt and step (of two such points in pts, the later
// wins). It writes in batches of 25 and retries what DynamoDB leaves
// unprocessed; points written before a failure stay written.
func (s *Store) PutMetrics(ctx context.Context, owner, jobID string, pts []pipeline.MetricPoint) error {
	pk, err := jobLogPK(owner, jobID)
	if err != nil {
		return err
	}
	var reqs []types.WriteRequest
	at := map[string]int{} // sort key -> index in reqs
	for _, pt := range pts {
		if pt.Attempt < 0 || pt.Step < 0 || pt.Attempt > maxCounter || pt.Step > maxCounter {
			return pipeline.Errorf(pipeline.EInvalid, "metric point attempt %d, step %d: each must be in 0..%d", pt.Attempt, pt.Step, maxCounter)
		}
		sk := metricSK(pt.Attempt, pt.Step)
		item, err := s.logItem(metricKind, fmt.Sprintf("%d/%d", pt.Attempt, pt.Step), pt, pk, sk)
		if err != nil {
			return err
		}
		req := types.WriteRequest{PutRequest: &types.PutRequest{Item: item}}
		if i, ok := at[sk]; ok {
			reqs[i] = req // one batch may not put one key twice
			continue
		}
		at[sk] = len(reqs)
		reqs = append(reqs, req)
	}
	for len(reqs) > 0 {
		n := min(batchSize, len(reqs))
		if err := s.batchWrite(ctx, reqs[:n]); err != nil {
			return fmt.Errorf("put metrics of job %s: %w", jobID, err)
		}
		reqs = reqs[n:]
	}
	return nil
}

// batchWrite writes up to 25 requests, retrying unprocessed ones with
// exponential backoff.
func (s *Store) batchWrite(ctx context.Context, reqs []types.WriteRequest) error {
	delay := s.retryDelay
	for try := 1; ; try++ {
		out, err := s.client.BatchWriteItem(ctx, &dynamodb.BatchWriteItemInput{
			RequestItems: map[string][]types.WriteRequest{s.table: reqs},
		})
		if err != nil {
			return s.translate(err, "batch write")
		}
		reqs = out.UnprocessedItems[s.table]
		if len(reqs) == 0 {
			return nil
		}
		if try == batchTries {
			return &pipeline.Error{Code: pipeline.EUnavailable, Message: "the database is busy: try again",
				Details: map[string]string{"unprocessed": strconv.Itoa(len(reqs))}}
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(delay):
		}
		delay = min(2*delay, 2*time.Second)
	}
}

// ListMetrics returns one page of a job's points by attempt, then step,
// read consistently.
func (s *Store) ListMetrics(ctx context.Context, owner, jobID string, p pipeline.Page) ([]pipeline.MetricPoint, string, error) {
	pk, err := jobLogPK(owner, jobID)
	if err != nil {
		return nil, "", err
	}
	q := listQuery{hashAttr: attrPK, hash: pk, rangeAttr: attrSK, prefix: metricKind.prefix + "#",
		scope: "metrics:" + jobID, owner: owner}
	items, next, err := s.query(ctx, q, p)
	if err != nil {
		return nil, "", err
	}
	out := make([]pipeline.MetricPoint, 0, len(items))
	for _, item := range items {
		var pt pipeline.MetricPoint
		if err := decodeDoc(item, &pt); err != nil {
			return nil, "", fmt.Errorf("decode stored metric point: %w", err)
		}
		out = append(out, pt)
	}
	return out, next, nil
}

// CreateNotification stores n in its owner's partition, keyed by its
// creation time and id; EConflict when that key is stored already.
func (s *Store) CreateNotification(ctx context.Context, n *pipeline.Notification) error {
	if n.ID == "" || n.Owner == "" {
		return pipeline.Errorf(pipeline.EInvalid, "a notification needs an id and an owner")
	}
	item, err := s.logItem(notificationKind, n.ID, n, ownerPK(n.Owner), notificationSK(n.CreatedAt, n.ID))
	if err != nil {
		return err
	}
	return s.create(ctx, notificationKind, n.ID, item)
}

// ListNotifications returns one page of an owner's notifications, newest
// first, read consistently.
func (s *Store) ListNotifications(ctx context.Context, owner string, p pipeline.Page) ([]*pipeline.Notification, string, error) {
	if owner == "" {
		return nil, "", pipeline.Errorf(pipeline.EInvalid, "a list needs an owner")
	}
	q := listQuery{hashAttr: attrPK, hash: ownerPK(owner), rangeAttr: attrSK, prefix: notificationKind.prefix + "#",
		scope: "notifications", owner: owner, desc: true}
	items, next, err := s.query(ctx, q, p)
	if err != nil {
		return nil, "", err
	}
	out := make([]*pipeline.Notification, 0, len(items))
	for _, item := range items {
		var n pipeline.Notification
		if err := decodeDoc(item, &n); err != nil {
			return nil, "", fmt.Errorf("decode stored notification: %w", err)
		}
		out = append(out, &n)
	}
	return out, next, nil
}

// measurementPK is the partition of a model's measurements on a GPU
// type. The GPU id comes first and may not hold '#', so no two pairs share
// a partition.
func measurementPK(model, gpu string) (string, error) {
	if model == "" || gpu == "" || strings.Contains(gpu, "#") {
		return "", pipeline.Errorf(pipeline.EInvalid, "a measurement needs a model and a GPU id without '#'")
	}
	pk := "MEASURE#" + gpu + "#" + model
	if len(pk) > maxPKBytes {
		return "", pipeline.Errorf(pipeline.EInvalid, "model and GPU ids are too long for a measurement")
	}
	return pk, nil
}

// PutMeasurement stores m in its model and GPU's partition, keyed by the
// job's creation time and id; a repeat replaces it (unconditional put).
// Measurements do not expire with the job log: they are what the
// estimator learns from.
func (s *Store) PutMeasurement(ctx context.Context, m *pipeline.Measurement) error {
	pk, err := measurementPK(m.Model, m.GPU)
	if err != nil {
		return err
	}
	if m.JobID == "" {
		return pipeline.Errorf(pipeline.EInvalid, "a measurement needs a job id")
	}
	sk := measurementKind.prefix + "#" + timeKey(m.JobCreatedAt) + "#" + m.JobID
	if len(sk) > maxSKBytes {
		return pipeline.Errorf(pipeline.EInvalid, "job id %q is too long for a measurement", m.JobID)
	}
	item, err := encodeDoc(m)
	if err != nil {
		return fmt.Errorf("encode measurement of job %s: %w", m.JobID, err)
	}
	item[attrPK] = &types.AttributeValueMemberS{Value: pk}
	item[attrSK] = &types.AttributeValueMemberS{Value: sk}
	if _, err := s.client.PutItem(ctx, &dynamodb.PutItemInput{TableName: aws.String(s.table), Item: item}); err != nil {
		return s.translate(err, "put measurement of job %s", m.JobID)
	}
	return nil
}

// ListMeasurements returns up to limit measurements of a model on a GPU,
// newest job first, read consistently.
func (s *Store) ListMeasurements(ctx context.Context, model, gpu string, limit int) ([]*pipeline.Measurement, error) {
	pk, err := measurementPK(model, gpu)
	if err != nil {
		return nil, err
	}
	q := listQuery{hashAttr: attrPK, hash: pk, rangeAttr: attrSK, prefix: measurementKind.prefix + "#",
		scope: "measurements", desc: true}
	items, _, err := s.query(ctx, q, pipeline.Page{Limit: limit})
	if err != nil {
		return nil, err
	}
	out := make([]*pipeline.Measurement, 0, len(items))
	for _, item := range items {
		var m pipeline.Measurement
		if err := decodeDoc(item, &m); err != nil {
			return nil, fmt.Errorf("decode stored measurement: %w", err)
		}
		out = append(out, &m)
	}
	return out, nil
}

// ListJobsByStatus returns one page of every owner's jobs in a
// non-terminal status, their live state merged. Terminal statuses are
// refused with EInvalid: the index is sparse, holding only jobs that can
// still change, which is all reconciliation looks at; an owner's finished
// jobs are listed by ListJobs. The status's jobs are spread over
// activeShards partitions (and, on a table written before sharding, one
// more): a page walks them in turn, each oldest created first. It reads
// an eventually consistent index: re-read a job with GetJob before acting
// on it.
func (s *Store) ListJobsByStatus(ctx context.Context, status pipeline.JobStatus, p pipeline.Page) ([]*pipeline.Job, string, error) {
	items, next, err := s.walkUnfinished(ctx, indexActiveByCreated, status, p)
	if err != nil {
		return nil, "", err
	}
	return s.decodeJobs(ctx, items, next)
}

// ListJobKeys returns one page of every owner's jobs in a non-terminal
// status by key, from the unfinished index (keys and served_at: about
// 150 bytes a job), walked as ListJobsByStatus walks its index.
func (s *Store) ListJobKeys(ctx context.Context, status pipeline.JobStatus, p pipeline.Page) ([]pipeline.JobKey, string, error) {
	items, next, err := s.walkUnfinished(ctx, indexUnfinished, status, p)
	if err != nil {
		return nil, "", err
	}
	out := make([]pipeline.JobKey, 0, len(items))
	for _, item := range items {
		k, err := jobKeyOf(item, status)
		if err != nil {
			return nil, "", err
		}
		out = append(out, k)
	}
	return out, next, nil
}

// jobKeyOf reads a job's key from its index item: owner and id from the
// table's key, the creation time from list_sk.
func jobKeyOf(item map[string]types.AttributeValue, status pipeline.JobStatus) (pipeline.JobKey, error) {
	str := func(name string) string {
		v, _ := item[name].(*types.AttributeValueMemberS)
		if v == nil {
			return ""
		}
		return v.Value
	}
	owner, okOwner := strings.CutPrefix(str(attrPK), "OWNER#")
	id, okID := strings.CutPrefix(str(attrSK), jobKind.prefix+"#")
	created, _, okList := strings.Cut(str(attrListSK), "#")
	at, err := time.Parse(timeFormat, created)
	if !okOwner || !okID || !okList || err != nil {
		return pipeline.JobKey{}, fmt.Errorf("index item of an unfinished job has malformed keys (%s, %s, %s)", str(attrPK), str(attrSK), str(attrListSK))
	}
	k := pipeline.JobKey{Owner: owner, ID: id, Status: status, CreatedAt: at}
	if v := str(attrServedAt); v != "" {
		if t, err := time.Parse(timeFormat, v); err == nil {
			k.ServedAt = &t
		}
	}
	return k, nil
}

// walkUnfinished reads one page of index (active_by_created or
// unfinished: the same keys) for status, across its partitions.
func (s *Store) walkUnfinished(ctx context.Context, index string, status pipeline.JobStatus, p pipeline.Page) ([]map[string]types.AttributeValue, string, error) {
	if !status.Valid() || status.Terminal() {
		return nil, "", pipeline.Errorf(pipeline.EInvalid, "status %q is not a non-terminal job status", status)
	}
	p = p.Clamp()
	parts := activeParts(status)
	query := func(part string) listQuery {
		return listQuery{index: index, hashAttr: attrActivePK, hash: part, rangeAttr: attrListSK,
			scope: index + ":" + string(status)}
	}
	first, cursor := 0, ""
	if p.Cursor != "" {
		first = -1
		for i, part := range parts {
			if _, err := s.cursor.decode(p.Cursor, query(part)); err == nil {
				first, cursor = i, p.Cursor
				break
			}
		}
		if first < 0 {
			return nil, "", errBadCursor
		}
	}
	var items []map[string]types.AttributeValue
	for i := first; i < len(parts); i++ {
		q := query(parts[i])
		got, next, err := s.query(ctx, q, pipeline.Page{Cursor: cursor, Limit: p.Limit - len(items)})
		if err != nil {
			return nil, "", err
		}
		cursor = ""
		items = append(items, got...)
		if next == "" && len(items) == p.Limit && len(got) > 0 && i < len(parts)-1 {
			// Full at the end of a partition: go on after its last job.
			next, err = s.cursor.encode(q, indexKey(got[len(got)-1], q))
			if err != nil {
				return nil, "", err
			}
		}
		if next != "" {
			return items, next, nil
		}
	}
	return items, "", nil
}

// DeleteJobLog removes a job's events and metric points: every item of
// its log partition (a job without any is no error).
func (s *Store) DeleteJobLog(ctx context.Context, owner, jobID string) error {
	pk, err := jobLogPK(owner, jobID)
	if err != nil {
		return err
	}
	return s.deletePartition(ctx, pk, "the log of job "+jobID)
}

// deletePartition removes every item of the partition pk, read by key
// and deleted in batches of 25; what names it in errors.
func (s *Store) deletePartition(ctx context.Context, pk, what string) error {
	var start map[string]types.AttributeValue
	for {
		out, err := s.client.Query(ctx, &dynamodb.QueryInput{
			TableName:                 aws.String(s.table),
			KeyConditionExpression:    aws.String("#pk = :pk"),
			ProjectionExpression:      aws.String("#pk, #sk"),
			ExpressionAttributeNames:  map[string]string{"#pk": attrPK, "#sk": attrSK},
			ExpressionAttributeValues: map[string]types.AttributeValue{":pk": &types.AttributeValueMemberS{Value: pk}},
			ExclusiveStartKey:         start,
			ConsistentRead:            aws.Bool(true),
		})
		if err != nil {
			return s.translate(err, "list %s", what)
		}
		for items := out.Items; len(items) > 0; {
			n := min(batchSize, len(items))
			reqs := make([]types.WriteRequest, 0, n)
			for _, it := range items[:n] {
				reqs = append(reqs, types.WriteRequest{DeleteRequest: &types.DeleteRequest{
					Key: map[string]types.AttributeValue{attrPK: it[attrPK], attrSK: it[attrSK]}}})
			}
			if err := s.batchWrite(ctx, reqs); err != nil {
				return fmt.Errorf("delete %s: %w", what, err)
			}
			items = items[n:]
		}
		if len(out.LastEvaluatedKey) == 0 {
			return nil
		}
		start = out.LastEvaluatedKey
	}
}
