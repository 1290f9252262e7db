package dynamo

import (
	"context"
	"errors"
	"testing"

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
