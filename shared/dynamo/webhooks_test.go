package dynamo_test

import (
	"testing"

	"github.com/brightrun/brightrun/shared/awstest"
	"github.com/brightrun/brightrun/shared/pipeline"
	"github.com/brightrun/brightrun/shared/storetest"
)

func TestTheWebhookStorePassesItsConformanceSuiteOnTheInMemoryTable(t *testing.T) {
	storetest.RunWebhooks(t, func(t *testing.T) pipeline.WebhookStore { s, _ := MustNewMemoryStore(t); return s })
}

func TestWebhookStoreConformance(t *testing.T) {
	awstest.Moto(t)
	storetest.RunWebhooks(t, func(t *testing.T) pipeline.WebhookStore { return MustNewStore(t) })
}
