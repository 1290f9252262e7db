package dynamo_test

import (
	"testing"

	"github.com/brightrun/brightrun/shared/dynamo"
	"github.com/brightrun/brightrun/shared/dynamo/dynamotest"
	"github.com/brightrun/brightrun/shared/pipeline"
	"github.com/brightrun/brightrun/shared/storetest"
)

// MustNewMemoryStore returns a store over a fresh in-memory table built
// from the table's schema, and the table.
func MustNewMemoryStore(tb testing.TB) (*dynamo.Store, *dynamotest.DB) {
	tb.Helper()
	db, err := dynamotest.New(dynamo.Schema("brightrun"))
	if err != nil {
		tb.Fatal(err)
	}
	s, err := dynamo.New(db, dynamo.Options{Table: "brightrun", CursorKey: cursorKey})
	if err != nil {
		tb.Fatal(err)
	}
	return s, db
}

// The in-memory table is only a measuring instrument if the real store
// behaves on it as on DynamoDB: it passes the suite the emulator passes.
func TestTheStorePassesItsConformanceSuiteOnTheInMemoryTable(t *testing.T) {
	storetest.Run(t, func(t *testing.T) pipeline.Store { s, _ := MustNewMemoryStore(t); return s })
}

func TestTheJobLogPassesItsConformanceSuiteOnTheInMemoryTable(t *testing.T) {
	storetest.RunJobLog(t, func(t *testing.T) storetest.FullStore { s, _ := MustNewMemoryStore(t); return s })
}
