package dynamo

import (
	"context"
	"errors"
	"testing"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb/types"
	"github.com/aws/smithy-go"

	"github.com/brightrun/brightrun/shared/pipeline"
)

// A cursor signed with the right key but holding a position outside the
// list's partition (as a bug or a leaked key could make) is still refused.
func TestCursorPositionMustLieInTheList(t *testing.T) {
	c := cursorSigner{key: []byte("0123456789abcdef0123456789abcdef")}
	q := listQuery{index: indexByCreated, hashAttr: attrListPK, hash: listPK(datasetKind, "alice"), rangeAttr: attrListSK, scope: "datasets", owner: "alice"}
	good := map[string]string{attrPK: ownerPK("alice"), attrSK: "DATASET#ds_1", attrListPK: listPK(datasetKind, "alice"), attrListSK: "T#ds_1"}
	tests := []struct {
		name string
		edit func(map[string]string)
		ok   bool
	}{
		{"the list's own position", func(map[string]string) {}, true},
		{"another owner's partition", func(k map[string]string) { k[attrListPK] = listPK(datasetKind, "bob") }, false},
		{"another owner's table key", func(k map[string]string) { k[attrPK] = ownerPK("bob") }, false},
		{"an extra attribute", func(k map[string]string) { k["status_pk"] = "x" }, false},
		{"no range key", func(k map[string]string) { delete(k, attrListSK) }, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			k := map[string]string{}
			for a, v := range good {
				k[a] = v
			}
			tt.edit(k)
			cur, err := c.encode(q, k)
			if err != nil {
				t.Fatal(err)
			}
			_, err = c.decode(cur, q)
			if (err == nil) != tt.ok {
				t.Errorf("decode = %v, want ok %v", err, tt.ok)
			}
		})
	}
}

// fakeClient answers every call with err.
type fakeClient struct{ err error }

func (f fakeClient) GetItem(context.Context, *dynamodb.GetItemInput, ...func(*dynamodb.Options)) (*dynamodb.GetItemOutput, error) {
	return nil, f.err
}
func (f fakeClient) PutItem(context.Context, *dynamodb.PutItemInput, ...func(*dynamodb.Options)) (*dynamodb.PutItemOutput, error) {
	return nil, f.err
}
func (f fakeClient) DeleteItem(context.Context, *dynamodb.DeleteItemInput, ...func(*dynamodb.Options)) (*dynamodb.DeleteItemOutput, error) {
	return nil, f.err
}
func (f fakeClient) Query(context.Context, *dynamodb.QueryInput, ...func(*dynamodb.Options)) (*dynamodb.QueryOutput, error) {
	return nil, f.err
}
func (f fakeClient) BatchWriteItem(context.Context, *dynamodb.BatchWriteItemInput, ...func(*dynamodb.Options)) (*dynamodb.BatchWriteItemOutput, error) {
	return nil, f.err
}
func (f fakeClient) TransactWriteItems(context.Context, *dynamodb.TransactWriteItemsInput, ...func(*dynamodb.Options)) (*dynamodb.TransactWriteItemsOutput, error) {
	return nil, f.err
}
func (f fakeClient) BatchGetItem(context.Context, *dynamodb.BatchGetItemInput, ...func(*dynamodb.Options)) (*dynamodb.BatchGetItemOutput, error) {
	return nil, f.err
}

// Errors the emulator does not produce on demand, translated as DynamoDB sends them.
func TestAWSErrorsTranslate(t *testing.T) {
	tests := []struct {
		name string
		err  error
		code string
	}{
		{"throttling", &types.ProvisionedThroughputExceededException{Message: new(string)}, pipeline.EUnavailable},
		{"request limit", &smithy.GenericAPIError{Code: "RequestLimitExceeded"}, pipeline.EUnavailable},
		{"an item over 400 KB", &smithy.GenericAPIError{Code: "ValidationException", Message: "Item size has exceeded the maximum allowed size"}, pipeline.ETooLarge},
		{"another validation error", &smithy.GenericAPIError{Code: "ValidationException", Message: "One or more parameter values were invalid"}, pipeline.EInternal},
		{"a missing table", &types.ResourceNotFoundException{Message: new(string)}, pipeline.EInternal},
		{"a network error", errors.New("connection refused"), pipeline.EInternal},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s, err := New(fakeClient{tt.err}, Options{Table: "t", CursorKey: make([]byte, 32)})
			if err != nil {
				t.Fatal(err)
			}
			d := &pipeline.Dataset{ID: "ds_1", Owner: "alice", Version: 1}
			for _, call := range []struct {
				op  string
				err error
			}{
				{"UpdateDataset", s.UpdateDataset(context.Background(), d)},
				{"GetDataset", func() error { _, err := s.GetDataset(context.Background(), "alice", "ds_1"); return err }()},
			} {
				if call.op == "GetDataset" && tt.code == pipeline.ETooLarge {
					continue // only writes can be too large
				}
				if got := pipeline.ErrorCode(call.err); got != tt.code {
					t.Errorf("%s error = %v (code %q), want %q", call.op, call.err, got, tt.code)
				}
			}
		})
	}
}

// A cursor of a list read from the table itself holds the table's key
// only, and its sort key must lie in the list's range.
func TestTableCursorPositionMustLieInTheList(t *testing.T) {
	c := cursorSigner{key: []byte("0123456789abcdef0123456789abcdef")}
	q := listQuery{hashAttr: attrPK, hash: "JOBLOG#alice#job_1", rangeAttr: attrSK, prefix: "EVENT#", scope: "events:job_1", owner: "alice"}
	tests := []struct {
		name string
		key  map[string]string
		ok   bool
	}{
		{"the list's own position", map[string]string{attrPK: "JOBLOG#alice#job_1", attrSK: "EVENT#T#ev"}, true},
		{"a position outside the list's range", map[string]string{attrPK: "JOBLOG#alice#job_1", attrSK: "METRIC#1#1"}, false},
		{"another job's partition", map[string]string{attrPK: "JOBLOG#alice#job_2", attrSK: "EVENT#T#ev"}, false},
		{"an index attribute too", map[string]string{attrPK: "JOBLOG#alice#job_1", attrSK: "EVENT#T#ev", attrListSK: "x"}, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cur, err := c.encode(q, tt.key)
			if err != nil {
				t.Fatal(err)
			}
			if _, err = c.decode(cur, q); (err == nil) != tt.ok {
				t.Errorf("decode = %v, want ok %v", err, tt.ok)
			}
		})
	}
}

// fnClient answers the calls the job log makes with its function fields,
// and every other call with err.
type fnClient struct {
	fakeClient
	batchWrite func(*dynamodb.BatchWriteItemInput) (*dynamodb.BatchWriteItemOutput, error)
	transact   func(*dynamodb.TransactWriteItemsInput) (*dynamodb.TransactWriteItemsOutput, error)
}

func (f fnClient) BatchWriteItem(_ context.Context, in *dynamodb.BatchWriteItemInput, _ ...func(*dynamodb.Options)) (*dynamodb.BatchWriteItemOutput, error) {
	return f.batchWrite(in)
}
func (f fnClient) TransactWriteItems(_ context.Context, in *dynamodb.TransactWriteItemsInput, _ ...func(*dynamodb.Options)) (*dynamodb.TransactWriteItemsOutput, error) {
	return f.transact(in)
}

func newFakeStore(t *testing.T, c Client) *Store {
	t.Helper()
	s, err := New(c, Options{Table: "t", CursorKey: make([]byte, 32)})
	if err != nil {
		t.Fatal(err)
	}
	s.retryDelay = 0
	return s
}

func TestPutMetricsRetriesUnprocessedItems(t *testing.T) {
	tests := []struct {
		name      string
		leave     int // calls that leave the batch's last item unprocessed
		err       error
		wantCalls int
		code      string
	}{
		{"unprocessed items are written on a retry", 2, nil, 2 + 2, ""},
		{"items left unprocessed every time give up as busy", 100, nil, batchTries, pipeline.EUnavailable},
		{"a throttled batch is busy", 0, &types.ProvisionedThroughputExceededException{Message: new(string)}, 1, pipeline.EUnavailable},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			calls, written := 0, 0
			s := newFakeStore(t, fnClient{batchWrite: func(in *dynamodb.BatchWriteItemInput) (*dynamodb.BatchWriteItemOutput, error) {
				calls++
				reqs := in.RequestItems["t"]
				if len(reqs) > batchSize {
					t.Fatalf("a batch of %d puts, over %d", len(reqs), batchSize)
				}
				if tt.err != nil {
					return nil, tt.err
				}
				if tt.leave > 0 {
					tt.leave--
					written += len(reqs) - 1
					return &dynamodb.BatchWriteItemOutput{UnprocessedItems: map[string][]types.WriteRequest{"t": reqs[len(reqs)-1:]}}, nil
				}
				written += len(reqs)
				return &dynamodb.BatchWriteItemOutput{}, nil
			}})
			var pts []pipeline.MetricPoint
			for i := 0; i < 30; i++ { // a batch of 25 and one of 5
				pts = append(pts, pipeline.MetricPoint{Attempt: 1, Step: i})
			}
			err := s.PutMetrics(context.Background(), "alice", "job_1", pts)
			if got := pipeline.ErrorCode(err); (err == nil) != (tt.code == "") || (err != nil && got != tt.code) {
				t.Fatalf("PutMetrics = %v (code %q), want code %q", err, got, tt.code)
			}
			if calls != tt.wantCalls {
				t.Errorf("BatchWriteItem calls = %d, want %d", calls, tt.wantCalls)
			}
			if tt.code == "" && written != 30 {
				t.Errorf("points written = %d, want 30", written)
			}
		})
	}
}

func TestAppendEventReadsTheCancellation(t *testing.T) {
	reason := func(code string) types.CancellationReason { return types.CancellationReason{Code: aws.String(code)} }
	tests := []struct {
		name    string
		err     error
		created bool
		code    string
	}{
		{"written", nil, true, ""},
		{"the id is stored", &types.TransactionCanceledException{CancellationReasons: []types.CancellationReason{reason("ConditionalCheckFailed"), reason("None")}}, false, ""},
		{"a concurrent write of the id", &types.TransactionCanceledException{CancellationReasons: []types.CancellationReason{reason("TransactionConflict"), reason("None")}}, false, pipeline.EUnavailable},
		{"another failure", errors.New("connection reset"), false, pipeline.EInternal},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s := newFakeStore(t, fnClient{transact: func(in *dynamodb.TransactWriteItemsInput) (*dynamodb.TransactWriteItemsOutput, error) {
				if len(in.TransactItems) != 2 {
					t.Errorf("transaction of %d items, want the guard and the event", len(in.TransactItems))
				}
				return &dynamodb.TransactWriteItemsOutput{}, tt.err
			}})
			created, err := s.AppendEvent(context.Background(), &pipeline.Event{ID: "ev", Owner: "alice", JobID: "job_1", Type: "t"})
			if got := pipeline.ErrorCode(err); created != tt.created || (err == nil) != (tt.code == "") || (err != nil && got != tt.code) {
				t.Errorf("AppendEvent = %v, %v (code %q), want %v, code %q", created, err, got, tt.created, tt.code)
			}
		})
	}
}
