// Package local holds the embedded adapters of the local stack: a store and a
// durable queue in one bbolt file, and blobs on disk behind HMAC-signed URLs.
// Everything survives a restart of the process.
package local

import (
	"fmt"
	"os"
	"path/filepath"
	"time"

	bolt "go.etcd.io/bbolt"
)

// DB is the local stack's state file. Writes that may run concurrently
// use bbolt's Batch, so their functions must be safe to run again (Batch
// re-runs them one by one when one of a batch fails).
type DB struct {
	bolt *bolt.DB
}

// OpenDB opens (creating if needed) the state file under dir.
func OpenDB(dir string) (*DB, error) {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, fmt.Errorf("create data folder: %w", err)
	}
	path := filepath.Join(dir, "state.db")
	b, err := bolt.Open(path, 0o600, &bolt.Options{Timeout: 2 * time.Second})
	if err != nil {
		return nil, fmt.Errorf("open %s (is another local stack running on this data folder?): %w", path, err)
	}
	// Concurrent writes (callbacks of many jobs, say) share one commit and
	// its two fsyncs: Batch waits at most this long for companions.
	b.MaxBatchDelay = 2 * time.Millisecond
	return &DB{bolt: b}, nil
}

// Close flushes and closes the state file.
func (db *DB) Close() error { return db.bolt.Close() }
