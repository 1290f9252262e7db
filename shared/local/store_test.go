package local_test

import (
	"testing"

	"github.com/brightrun/brightrun/shared/local"
	"github.com/brightrun/brightrun/shared/pipeline"
	"github.com/brightrun/brightrun/shared/storetest"
)

// MustOpenDB opens a state file in a fresh temporary folder, closed at the end of the test.
func MustOpenDB(tb testing.TB) *local.DB {
	tb.Helper()
	db, err := local.OpenDB(tb.TempDir())
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() { db.Close() })
	return db
}

func TestStoreConformance(t *testing.T) {
	storetest.Run(t, func(t *testing.T) pipeline.Store {
		s, err := local.NewStore(MustOpenDB(t))
		if err != nil {
			t.Fatal(err)
		}
		return s
	})
}

func TestJobLogConformance(t *testing.T) {
	storetest.RunJobLog(t, func(t *testing.T) storetest.FullStore {
		s, err := local.NewStore(MustOpenDB(t))
		if err != nil {
			t.Fatal(err)
		}
		return s
	})
}

func TestWebhookStoreConformance(t *testing.T) {
	storetest.RunWebhooks(t, func(t *testing.T) pipeline.WebhookStore {
		s, err := local.NewStore(MustOpenDB(t))
		if err != nil {
			t.Fatal(err)
		}
		return s
	})
}
