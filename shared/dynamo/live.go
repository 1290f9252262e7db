package dynamo

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb/types"

	"github.com/brightrun/brightrun/shared/pipeline"
)

// A job's live state (pipeline.Live: its latest metric point and when its
// worker was last heard of) is one small item in the job's log partition,
// written by every progress callback of a running job instead of the job
// item. It holds no index attribute, so a callback writes about 300 bytes
// once: 1 WCU, no index touched, no index key moved.
//
//	live  pk JOBLOG#<owner>#<job>  sk LIVE
//	      attempt (N), run (the run's key, or ""), step (N), sent T(point's
//	      time): the condition's operands (pipeline.Live.Replaces); doc:
//	      the JSON of pipeline.Live
//
// It is written only when it replaces the stored one (a later attempt,
// another run of the attempt, a later step of the run, the same step sent
// later), is deleted with the job's log, and is read with
// the job: GetJob reads both items (an ended job's record holds its last
// point: its end was written from the job as read), lists read the live
// items of their unfinished jobs in one BatchGetItem, and the job as returned has it
// merged (pipeline.Job.MergeLive).
const (
	liveSK      = "LIVE"
	attrAttempt = "attempt"
	attrStep    = "step"
	attrSent    = "sent"
	attrRun     = "run"
)

var liveKind = kind{"LIVE", "live state"}

// RecordLive stores the job's live state unless the stored one is newer.
func (s *Store) RecordLive(ctx context.Context, owner, jobID string, l pipeline.Live) error {
	pk, err := jobLogPK(owner, jobID)
	if err != nil {
		return err
	}
	item, err := encodeDoc(l)
	if err != nil {
		return fmt.Errorf("encode live state of job %s: %w", jobID, err)
	}
	item[attrPK] = &types.AttributeValueMemberS{Value: pk}
	item[attrSK] = &types.AttributeValueMemberS{Value: liveSK}
	item[attrAttempt] = &types.AttributeValueMemberN{Value: strconv.Itoa(l.Attempt)}
	item[attrStep] = &types.AttributeValueMemberN{Value: strconv.Itoa(l.Progress.Step)}
	item[attrSent] = &types.AttributeValueMemberS{Value: timeKey(l.Progress.Time)}
	item[attrRun] = &types.AttributeValueMemberS{Value: l.Run}
	if s.logRetention > 0 {
		// Kept as long as the job's log, which it belongs to.
		item[AttrExpiresAt] = &types.AttributeValueMemberN{Value: strconv.FormatInt(time.Now().Add(s.logRetention).Unix(), 10)}
	}
	if err := checkSize(liveKind, jobID, item); err != nil {
		return err
	}
	_, err = s.client.PutItem(ctx, &dynamodb.PutItemInput{
		TableName: aws.String(s.table),
		Item:      item,
		ConditionExpression: aws.String("attribute_not_exists(#pk) OR #a < :a OR " +
			"(#a = :a AND (#r <> :r OR #s < :s OR (#s = :s AND #t < :t)))"),
		ExpressionAttributeNames: map[string]string{"#pk": attrPK, "#a": attrAttempt, "#r": attrRun, "#s": attrStep, "#t": attrSent},
		ExpressionAttributeValues: map[string]types.AttributeValue{
			":a": item[attrAttempt], ":r": item[attrRun], ":s": item[attrStep], ":t": item[attrSent],
		},
	})
	var ccf *types.ConditionalCheckFailedException
	if errors.As(err, &ccf) {
		return nil // a newer point is stored: this one is history
	}
	return s.translate(err, "record live state of job %s", jobID)
}

func liveKey(owner, jobID string) (map[string]types.AttributeValue, error) {
	pk, err := jobLogPK(owner, jobID)
	if err != nil {
		return nil, err
	}
	return map[string]types.AttributeValue{
		attrPK: &types.AttributeValueMemberS{Value: pk},
		attrSK: &types.AttributeValueMemberS{Value: liveSK},
	}, nil
}

// mergeLive reads the live state of one job, consistently, and merges it.
func (s *Store) mergeLive(ctx context.Context, j *pipeline.Job) error {
	if !pipeline.MayBeLive(j.Status) {
		// Not running yet, or ended: an end was written from the job as
		// read with its live state, so the record holds its last point.
		return nil
	}
	k, err := liveKey(j.Owner, j.ID)
	if err != nil {
		return nil // a job that cannot have a log has no live state
	}
	out, err := s.client.GetItem(ctx, &dynamodb.GetItemInput{TableName: aws.String(s.table), Key: k, ConsistentRead: aws.Bool(true)})
	if err != nil {
		return s.translate(err, "get live state of job %s", j.ID)
	}
	return mergeLiveItem(j, out.Item)
}

func mergeLiveItem(j *pipeline.Job, item map[string]types.AttributeValue) error {
	if len(item) == 0 {
		return nil
	}
	var l pipeline.Live
	if err := decodeDoc(item, &l); err != nil {
		return fmt.Errorf("decode live state of job %s: %w", j.ID, err)
	}
	j.MergeLive(&l)
	return nil
}

// mergeLives reads the live states of the jobs of a page that may have
// one (pipeline.MayBeLive), in batches of 100, eventually consistent (a
// list is), and merges them.
func (s *Store) mergeLives(ctx context.Context, jobs []*pipeline.Job) error {
	byPK := map[string]*pipeline.Job{}
	var keys []map[string]types.AttributeValue
	for _, j := range jobs {
		if !pipeline.MayBeLive(j.Status) {
			continue
		}
		k, err := liveKey(j.Owner, j.ID)
		if err != nil {
			continue
		}
		byPK[k[attrPK].(*types.AttributeValueMemberS).Value] = j
		keys = append(keys, k)
	}
	for len(keys) > 0 {
		n := min(100, len(keys))
		pending := map[string]types.KeysAndAttributes{s.table: {Keys: keys[:n]}}
		delay := s.retryDelay
		for try := 1; len(pending) > 0; try++ {
			out, err := s.client.BatchGetItem(ctx, &dynamodb.BatchGetItemInput{RequestItems: pending})
			if err != nil {
				return s.translate(err, "get live states")
			}
			for _, item := range out.Responses[s.table] {
				pk, _ := item[attrPK].(*types.AttributeValueMemberS)
				if pk == nil || byPK[pk.Value] == nil {
					continue
				}
				if err := mergeLiveItem(byPK[pk.Value], item); err != nil {
					return err
				}
			}
			pending = out.UnprocessedKeys
			if len(pending) == 0 {
				break
			}
			if try == batchTries {
				return pipeline.Errorf(pipeline.EUnavailable, "the database is busy: try again")
			}
			select {
			case <-ctx.Done():
				return ctx.Err()
			case <-time.After(delay):
			}
			delay = min(2*delay, 2*time.Second)
		}
		keys = keys[n:]
	}
	return nil
}
