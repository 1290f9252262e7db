package dynamo_test

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/service/dynamodb"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb/types"
	"github.com/aws/smithy-go"

	"github.com/brightrun/brightrun/shared/awstest"
	"github.com/brightrun/brightrun/shared/dynamo"
	"github.com/brightrun/brightrun/shared/pipeline"
)

// realKeyLimits is the emulator's client with the key checks DynamoDB
// makes and moto leaves out: DynamoDB refuses a GetItem or DeleteItem
// whose key is over its limits (2,048 bytes for a partition key, 1,024
// for a sort key) with a ValidationException, before reading anything.
type realKeyLimits struct{ *dynamodb.Client }

func checkKeySizes(key map[string]types.AttributeValue) error {
	for name, v := range key {
		s, ok := v.(*types.AttributeValueMemberS)
		if !ok {
			continue
		}
		limit := 2048
		if name == "sk" {
			limit = 1024
		}
		if len(s.Value) > limit {
			return &smithy.GenericAPIError{Code: "ValidationException",
				Message: fmt.Sprintf("One or more parameter values were invalid: Size of key %s has exceeded the maximum size limit of %d bytes", name, limit)}
		}
	}
	return nil
}

func (c realKeyLimits) GetItem(ctx context.Context, in *dynamodb.GetItemInput, opts ...func(*dynamodb.Options)) (*dynamodb.GetItemOutput, error) {
	if err := checkKeySizes(in.Key); err != nil {
		return nil, err
	}
	return c.Client.GetItem(ctx, in, opts...)
}

func (c realKeyLimits) DeleteItem(ctx context.Context, in *dynamodb.DeleteItemInput, opts ...func(*dynamodb.Options)) (*dynamodb.DeleteItemOutput, error) {
	if err := checkKeySizes(in.Key); err != nil {
		return nil, err
	}
	return c.Client.DeleteItem(ctx, in, opts...)
}

// An id longer than DynamoDB's keys allow names no record: reading,
// changing or deleting it is not found (404 through the API), never an
// internal error (500).
func TestOverLongIDsAreNotFoundUnderDynamoDBsKeyLimits(t *testing.T) {
	emu := awstest.Moto(t)
	client := dynamodb.NewFromConfig(emu.Config)
	table := awstest.UniqueName("brightrun")
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	if err := dynamo.CreateTable(ctx, client, table); err != nil {
		t.Fatal(err)
	}
	s, err := dynamo.New(realKeyLimits{client}, dynamo.Options{Table: table, CursorKey: cursorKey})
	if err != nil {
		t.Fatal(err)
	}
	longDataset, longJob := "ds_"+strings.Repeat("x", 2000), "job_"+strings.Repeat("y", 2000)
	now := time.Now().UTC()
	tests := []struct {
		name string
		op   func() error
	}{
		{"reading a dataset", func() error { _, err := s.GetDataset(ctx, "alice", longDataset); return err }},
		{"reading a job", func() error { _, err := s.GetJob(ctx, "alice", longJob); return err }},
		{"reading with an over-long owner", func() error { _, err := s.GetDataset(ctx, strings.Repeat("o", 3000), "ds_1"); return err }},
		{"deleting a dataset", func() error { return s.DeleteDataset(ctx, "alice", longDataset) }},
		{"updating a dataset", func() error {
			return s.UpdateDataset(ctx, &pipeline.Dataset{ID: longDataset, Owner: "alice", Name: "d", CreatedAt: now, Version: 1})
		}},
		{"updating a job", func() error {
			return s.UpdateJob(ctx, &pipeline.Job{ID: longJob, Owner: "alice", Status: pipeline.JobQueued, CreatedAt: now, Version: 1})
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if err := tt.op(); pipeline.ErrorCode(err) != pipeline.ENotFound {
				t.Errorf("%s with a 2,000-byte id: %v (code %q), want %q", tt.name, err, pipeline.ErrorCode(err), pipeline.ENotFound)
			}
		})
	}
}
