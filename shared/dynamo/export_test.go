package dynamo

import (
	"github.com/aws/aws-sdk-go-v2/service/dynamodb/types"

	"github.com/brightrun/brightrun/shared/pipeline"
)

// LegacyJobItem is j's item as the layout before 2026-12-06 wrote it: an
// unfinished job in active_by_created's unsharded partition, with the
// dropped active index's key.
func LegacyJobItem(j *pipeline.Job) (map[string]types.AttributeValue, error) {
	item, err := jobItem(j)
	if err != nil {
		return nil, err
	}
	if !j.Status.Terminal() {
		item[attrActivePK] = &types.AttributeValueMemberS{Value: jobKind.prefix + "#" + string(j.Status)}
		item["active_sk"] = &types.AttributeValueMemberS{Value: timeKey(j.UpdatedAt) + "#" + j.Owner + "#" + j.ID}
	}
	return item, nil
}
