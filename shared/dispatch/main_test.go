package dispatch_test

import (
	"testing"

	"github.com/brightrun/brightrun/shared/awstest"
)

// TestMain stops the emulators the tests started.
func TestMain(m *testing.M) { awstest.Main(m) }
