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
