package dynamo_test

import (
	"context"
	"fmt"
	"slices"
	"sort"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb/types"

	"github.com/brightrun/brightrun/shared/awstest"
	"github.com/brightrun/brightrun/shared/dynamo"
	"github.com/brightrun/brightrun/shared/dynamo/capacity"
	"github.com/brightrun/brightrun/shared/dynamo/dynamotest"
)

// TestTheModelsItemsAreTheEmulatorsItems runs a short slice of the
// workload (capacity.Life: a dataset, a job trained through every
// callback type with a checkpoint pruned, a failed job, reconciliation)
// on the DynamoDB emulator and on the in-memory table, with the same
// seed and clock, and compares what each stored: the capacity model's
// bills rest on the item sizes of the in-memory table, which must be the
// sizes of the items DynamoDB holds. moto reports a fixed
// ConsumedCapacity whatever the item, so the sizes are computed from the
// items read back (a Scan of the table, and a Query of every index
// partition for the sparse indexes and their projections).
//
// Events and notifications carry random ids (pipeline.NewID) of a fixed
// length: they are compared by size, every other item by value.
func TestTheModelsItemsAreTheEmulatorsItems(t *testing.T) {
	ctx := context.Background()
	emu := awstest.Moto(t)
	client := dynamodb.NewFromConfig(emu.Config)
	table := awstest.UniqueName("brightrun")
	if err := dynamo.CreateTable(ctx, client, table); err != nil {
		t.Fatal(err)
	}
	start := time.Date(2026, 12, 1, 9, 0, 0, 0, time.UTC)
	onEmulator, err := capacity.NewEnvOn(client, table, start)
	if err != nil {
		t.Fatal(err)
	}
	if err := capacity.Life(ctx, onEmulator, 3); err != nil {
		t.Fatalf("the slice on the emulator: %v", err)
	}
	db, err := dynamotest.New(dynamo.Schema(table))
	if err != nil {
		t.Fatal(err)
	}
	inMemory, err := capacity.NewEnvOn(db, table, start)
	if err != nil {
		t.Fatal(err)
	}
	if err := capacity.Life(ctx, inMemory, 3); err != nil {
		t.Fatalf("the slice in memory: %v", err)
	}

	var stored []map[string]types.AttributeValue
	var start0 map[string]types.AttributeValue
	for {
		out, err := client.Scan(ctx, &dynamodb.ScanInput{TableName: aws.String(table), ExclusiveStartKey: start0})
		if err != nil {
			t.Fatal(err)
		}
		stored = append(stored, out.Items...)
		if len(out.LastEvaluatedKey) == 0 {
			break
		}
		start0 = out.LastEvaluatedKey
	}
	compareItems(t, "table", stored, db.Items())

	// Every index: the same entries, projected alike.
	for _, ix := range db.Indexes() {
		var got, want []map[string]types.AttributeValue
		for _, pk := range indexPartitions(t, dynamo.Schema(table), ix, db.Items()) {
			got = append(got, queryAll(t, ctx, client, table, ix, pk)...)
			want = append(want, queryAll(t, ctx, db, table, ix, pk)...)
		}
		compareItems(t, "index "+ix, got, want)
	}
}

// indexPartitions lists the hash key values of index ix among items.
func indexPartitions(t *testing.T, def *dynamodb.CreateTableInput, ix string, items []map[string]types.AttributeValue) []string {
	t.Helper()
	var hash string
	for _, g := range def.GlobalSecondaryIndexes {
		if aws.ToString(g.IndexName) == ix {
			hash = aws.ToString(g.KeySchema[0].AttributeName)
		}
	}
	seen := map[string]bool{}
	var out []string
	for _, it := range items {
		if v, ok := it[hash].(*types.AttributeValueMemberS); ok && !seen[v.Value] {
			seen[v.Value] = true
			out = append(out, v.Value)
		}
	}
	sort.Strings(out)
	return out
}

func queryAll(t *testing.T, ctx context.Context, c dynamo.Client, table, ix, pk string) []map[string]types.AttributeValue {
	t.Helper()
	def := dynamo.Schema(table)
	var hash string
	for _, g := range def.GlobalSecondaryIndexes {
		if aws.ToString(g.IndexName) == ix {
			hash = aws.ToString(g.KeySchema[0].AttributeName)
		}
	}
	var items []map[string]types.AttributeValue
	var start map[string]types.AttributeValue
	for {
		out, err := c.Query(ctx, &dynamodb.QueryInput{
			TableName: aws.String(table), IndexName: aws.String(ix),
			KeyConditionExpression:    aws.String("#h = :h"),
			ExpressionAttributeNames:  map[string]string{"#h": hash},
			ExpressionAttributeValues: map[string]types.AttributeValue{":h": &types.AttributeValueMemberS{Value: pk}},
			ExclusiveStartKey:         start,
		})
		if err != nil {
			t.Fatalf("query %s %s: %v", ix, pk, err)
		}
		items = append(items, out.Items...)
		if len(out.LastEvaluatedKey) == 0 {
			return items
		}
		start = out.LastEvaluatedKey
	}
}

// compareItems checks that got (the emulator's) and want (the in-memory
// table's) hold the same items: equal by value where their keys match,
// and the same sizes for the rest (random ids of a fixed length).
func compareItems(t *testing.T, what string, got, want []map[string]types.AttributeValue) {
	t.Helper()
	if len(got) != len(want) {
		t.Errorf("%s: the emulator holds %d items, the in-memory table %d", what, len(got), len(want))
	}
	byKey := map[string]map[string]types.AttributeValue{}
	for _, it := range want {
		byKey[keyOf(it)] = it
	}
	var gotSizes, wantSizes []int
	matched := 0
	for _, it := range got {
		gotSizes = append(gotSizes, dynamotest.ItemSize(it))
		if m, ok := byKey[keyOf(it)]; ok {
			matched++
			if g, w := dynamotest.ItemSize(it), dynamotest.ItemSize(m); g != w {
				t.Errorf("%s: item %s is %d bytes on the emulator, %d in memory", what, keyOf(it), g, w)
			}
			for name, v := range it {
				if fmt.Sprint(v) != fmt.Sprint(m[name]) {
					t.Errorf("%s: item %s attribute %s = %v on the emulator, %v in memory", what, keyOf(it), name, v, m[name])
				}
			}
			if len(it) != len(m) {
				t.Errorf("%s: item %s has %d attributes on the emulator, %d in memory", what, keyOf(it), len(it), len(m))
			}
		}
	}
	for _, it := range want {
		wantSizes = append(wantSizes, dynamotest.ItemSize(it))
	}
	slices.Sort(gotSizes)
	slices.Sort(wantSizes)
	if !slices.Equal(gotSizes, wantSizes) {
		t.Errorf("%s: item sizes on the emulator %v, in memory %v", what, gotSizes, wantSizes)
	}
	if matched < len(got)/2 {
		t.Errorf("%s: only %d of %d items have the same key in both", what, matched, len(got))
	}
	t.Logf("%s: %d items, %d compared by value, sizes %d to %d bytes", what, len(got), matched, first(gotSizes), last(gotSizes))
}

func keyOf(it map[string]types.AttributeValue) string {
	pk, _ := it["pk"].(*types.AttributeValueMemberS)
	sk, _ := it["sk"].(*types.AttributeValueMemberS)
	if pk == nil || sk == nil {
		return "?"
	}
	return pk.Value + " " + sk.Value
}

func first(s []int) int {
	if len(s) == 0 {
		return 0
	}
	return s[0]
}

func last(s []int) int {
	if len(s) == 0 {
		return 0
	}
	return s[len(s)-1]
}
