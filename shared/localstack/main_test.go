package localstack_test

import (
	"testing"

	"github.com/brightrun/brightrun/shared/awstest"
)

func TestMain(m *testing.M) { awstest.Main(m) }
