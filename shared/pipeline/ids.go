package pipeline

import (
	"crypto/rand"
	"strings"
	"time"

	"github.com/oklog/ulid/v2"
)

// NewID returns a new time-ordered id with the given prefix, e.g. "ds_01j…".
func NewID(prefix string, now time.Time) string {
	return prefix + "_" + strings.ToLower(ulid.MustNew(ulid.Timestamp(now), rand.Reader).String())
}

// Record keys. Every id this service makes is far shorter than MaxIDBytes
// (a prefix and 26 characters), and owners come from the authenticator.
// An id or owner longer than these names no record: a store answers a
// read, update or delete of one with ENotFound and refuses to create one
// (EInvalid), so that an adapter's key limits (DynamoDB's 1 KiB sort key)
// never turn a request for an unknown id into an internal error.
const (
	MaxIDBytes    = 200
	MaxOwnerBytes = 512
)

// KeyFits reports whether owner and id are within MaxOwnerBytes and
// MaxIDBytes.
func KeyFits(owner, id string) bool {
	return len(owner) <= MaxOwnerBytes && len(id) <= MaxIDBytes
}
