package dynamo_test

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/service/dynamodb"

	"github.com/brightrun/brightrun/shared/awstest"
	"github.com/brightrun/brightrun/shared/dynamo"
	"github.com/brightrun/brightrun/shared/pipeline"
	"github.com/brightrun/brightrun/shared/storetest"
)

var cursorKey = []byte("0123456789abcdef0123456789abcdef")

// MustNewStore returns a store over a fresh table on the emulator.
func MustNewStore(tb testing.TB) *dynamo.Store {
	tb.Helper()
	s, _ := mustNewStoreClient(tb)
	return s
}

func mustNewStoreClient(tb testing.TB) (*dynamo.Store, *dynamodb.Client) {
	tb.Helper()
	emu := awstest.Moto(tb)
	client := dynamodb.NewFromConfig(emu.Config)
	table := awstest.UniqueName("brightrun")
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	if err := dynamo.CreateTable(ctx, client, table); err != nil {
		tb.Fatal(err)
	}
	s, err := dynamo.New(client, dynamo.Options{Table: table, CursorKey: cursorKey})
	if err != nil {
		tb.Fatal(err)
	}
	return s, client
}

func TestStoreConformance(t *testing.T) {
	awstest.Moto(t) // skip (or fail) once, here, when the emulator cannot start
	storetest.Run(t, func(t *testing.T) pipeline.Store { return MustNewStore(t) })
}

func TestJobLogConformance(t *testing.T) {
	awstest.Moto(t)
	storetest.RunJobLog(t, func(t *testing.T) storetest.FullStore { return MustNewStore(t) })
}

func wantCode(t *testing.T, what string, err error, code string) {
	t.Helper()
	if got := pipeline.ErrorCode(err); got != code {
		t.Errorf("%s: error %v (code %q), want code %q", what, err, got, code)
	}
}

func must(t *testing.T, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}

var base = time.Date(2026, 11, 25, 12, 0, 0, 0, time.UTC)

func newDataset(owner string, i int) *pipeline.Dataset {
	at := base.Add(time.Duration(i) * time.Second)
	return &pipeline.Dataset{ID: fmt.Sprintf("ds_%04d", i), Owner: owner, Name: fmt.Sprintf("set %d", i),
		Status: pipeline.DatasetAwaitingUpload, ObjectKey: "k", CreatedAt: at, UpdatedAt: at}
}

func newJob(owner string, i int, st pipeline.JobStatus) *pipeline.Job {
	at := base.Add(time.Duration(i) * time.Second)
	return &pipeline.Job{ID: fmt.Sprintf("job_%04d", i), Owner: owner, DatasetID: "ds_0001", BaseModel: "m",
		GPUType: "g", Preset: "balanced", Status: st, CreatedAt: at, UpdatedAt: at}
}
