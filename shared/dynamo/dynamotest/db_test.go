package dynamotest_test

import (
	"context"
	"errors"
	"strings"
	"testing"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb/types"

	"github.com/brightrun/brightrun/shared/dynamo/dynamotest"
)

func s(v string) types.AttributeValue { return &types.AttributeValueMemberS{Value: v} }
func n(v string) types.AttributeValue { return &types.AttributeValueMemberN{Value: v} }

func TestItemSizeFollowsDynamoDBsRules(t *testing.T) {
	tests := []struct {
		name string
		item map[string]types.AttributeValue
		want int
	}{
		{"a string counts its name and its UTF-8 bytes", map[string]types.AttributeValue{"pk": s("héllo")}, 2 + 6},
		{"a binary counts its bytes", map[string]types.AttributeValue{"b": &types.AttributeValueMemberB{Value: make([]byte, 100)}}, 1 + 100},
		{"a number is 1 byte per two significant digits plus 1", map[string]types.AttributeValue{"v": n("12345")}, 1 + 4},
		{"leading and trailing zeroes do not count", map[string]types.AttributeValue{"v": n("1000"), "w": n("0.50")}, 1 + 2 + 1 + 2},
		{"a boolean and a null are 1 byte", map[string]types.AttributeValue{"t": &types.AttributeValueMemberBOOL{Value: true}, "z": &types.AttributeValueMemberNULL{Value: true}}, 1 + 1 + 1 + 1},
		{"a map is 3 bytes plus 1 per element plus its elements", map[string]types.AttributeValue{"m": &types.AttributeValueMemberM{Value: map[string]types.AttributeValue{"ab": s("xyz")}}}, 1 + 3 + 1 + 2 + 3},
		{"a list is 3 bytes plus 1 per element plus its elements", map[string]types.AttributeValue{"l": &types.AttributeValueMemberL{Value: []types.AttributeValue{s("a"), s("bc")}}}, 1 + 3 + 2 + 3},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := dynamotest.ItemSize(tt.item); got != tt.want {
				t.Errorf("ItemSize(%v) = %d, want %d", tt.item, got, tt.want)
			}
		})
	}
}

// table has a KEYS_ONLY and an ALL index, both sparse.
func table(t *testing.T) (*dynamotest.DB, *[]dynamotest.Call) {
	t.Helper()
	str := func(name string) types.AttributeDefinition {
		return types.AttributeDefinition{AttributeName: aws.String(name), AttributeType: types.ScalarAttributeTypeS}
	}
	key := func(h, r string) []types.KeySchemaElement {
		k := []types.KeySchemaElement{{AttributeName: aws.String(h), KeyType: types.KeyTypeHash}}
		if r != "" {
			k = append(k, types.KeySchemaElement{AttributeName: aws.String(r), KeyType: types.KeyTypeRange})
		}
		return k
	}
	db, err := dynamotest.New(&dynamodb.CreateTableInput{
		TableName:            aws.String("t"),
		AttributeDefinitions: []types.AttributeDefinition{str("pk"), str("sk"), str("gk"), str("gs")},
		KeySchema:            key("pk", "sk"),
		GlobalSecondaryIndexes: []types.GlobalSecondaryIndex{
			{IndexName: aws.String("all"), KeySchema: key("gk", "gs"), Projection: &types.Projection{ProjectionType: types.ProjectionTypeAll}},
			{IndexName: aws.String("keys"), KeySchema: key("gk", ""), Projection: &types.Projection{ProjectionType: types.ProjectionTypeKeysOnly}},
		},
	})
	if err != nil {
		t.Fatal(err)
	}
	var calls []dynamotest.Call
	db.Record = func(c dynamotest.Call) { calls = append(calls, c) }
	return db, &calls
}

func item(sk, gk, gs string, docBytes int) map[string]types.AttributeValue {
	it := map[string]types.AttributeValue{"pk": s("P"), "sk": s(sk), "doc": s(strings.Repeat("x", docBytes))}
	if gk != "" {
		it["gk"], it["gs"] = s(gk), s(gs)
	}
	return it
}

func TestWritesAreBilledAsDynamoDBBillsThem(t *testing.T) {
	ctx := context.Background()
	type write struct {
		index string
		kind  dynamotest.WriteKind
		units float64
	}
	tests := []struct {
		name   string
		before map[string]types.AttributeValue
		put    map[string]types.AttributeValue
		want   []write
	}{
		{"a new item outside the indexes writes the table only", nil, item("a", "", "", 1500),
			[]write{{"", dynamotest.Put, 2}}},
		{"a new item in the indexes inserts into each", nil, item("a", "G", "1", 1500),
			[]write{{"", dynamotest.Put, 2}, {"all", dynamotest.IndexInsert, 2}, {"keys", dynamotest.IndexInsert, 1}}},
		{"a replace is billed the larger item, and updates an index whose projection changed", item("a", "G", "1", 3000), item("a", "G", "1", 100),
			[]write{{"", dynamotest.Put, 3}, {"all", dynamotest.IndexUpdate, 1}}},
		{"an index key change is a delete and an insert", item("a", "G", "1", 100), item("a", "G", "2", 100),
			[]write{{"", dynamotest.Put, 1}, {"all", dynamotest.IndexDelete, 1}, {"all", dynamotest.IndexInsert, 1}}},
		{"leaving a sparse index deletes from it", item("a", "G", "1", 100), item("a", "", "", 100),
			[]write{{"", dynamotest.Put, 1}, {"all", dynamotest.IndexDelete, 1}, {"keys", dynamotest.IndexDelete, 1}}},
		{"an unchanged projection writes no index", item("a", "G", "1", 100), item("a", "G", "1", 100),
			[]write{{"", dynamotest.Put, 1}}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			db, calls := table(t)
			if tt.before != nil {
				if _, err := db.PutItem(ctx, &dynamodb.PutItemInput{TableName: aws.String("t"), Item: tt.before}); err != nil {
					t.Fatal(err)
				}
			}
			*calls = nil
			if _, err := db.PutItem(ctx, &dynamodb.PutItemInput{TableName: aws.String("t"), Item: tt.put}); err != nil {
				t.Fatal(err)
			}
			var got []write
			for _, w := range (*calls)[0].Writes {
				got = append(got, write{w.Index, w.Kind, w.Units})
			}
			if len(got) != len(tt.want) {
				t.Fatalf("writes = %v, want %v", got, tt.want)
			}
			for i := range got {
				if got[i] != tt.want[i] {
					t.Errorf("writes = %v, want %v", got, tt.want)
				}
			}
		})
	}
}

func TestConditionsTransactionsAndReadsAreBilled(t *testing.T) {
	ctx := context.Background()
	db, calls := table(t)
	put := func(it map[string]types.AttributeValue, cond string) error {
		in := &dynamodb.PutItemInput{TableName: aws.String("t"), Item: it}
		if cond != "" {
			in.ConditionExpression, in.ExpressionAttributeNames = aws.String(cond), map[string]string{"#p": "pk"}
		}
		_, err := db.PutItem(ctx, in)
		return err
	}
	if err := put(item("a", "G", "1", 5000), "attribute_not_exists (#p)"); err != nil {
		t.Fatal(err)
	}
	*calls = nil
	err := put(item("a", "G", "1", 10), "attribute_not_exists (#p)")
	var ccf *types.ConditionalCheckFailedException
	if !errors.As(err, &ccf) {
		t.Fatalf("a failed condition = %v, want ConditionalCheckFailedException", err)
	}
	if c := (*calls)[0]; !c.ConditionFailed || c.WCU() != 5 || len(c.Writes) != 1 {
		t.Errorf("a failed condition billed %+v, want the 5 KB base write only", c)
	}

	*calls = nil
	_, err = db.TransactWriteItems(ctx, &dynamodb.TransactWriteItemsInput{TransactItems: []types.TransactWriteItem{
		{Put: &types.Put{TableName: aws.String("t"), Item: item("b", "", "", 1500)}},
		{Put: &types.Put{TableName: aws.String("t"), Item: item("c", "", "", 10)}},
	}})
	if err != nil {
		t.Fatal(err)
	}
	if got := (*calls)[0].WCU(); got != 2*(2+1) {
		t.Errorf("a transaction of a 1.5 KB and a small item = %v WCU, want %v (twice)", got, 2*(2+1))
	}

	*calls = nil
	key := map[string]types.AttributeValue{"pk": s("P"), "sk": s("a")}
	if _, err := db.GetItem(ctx, &dynamodb.GetItemInput{TableName: aws.String("t"), Key: key, ConsistentRead: aws.Bool(true)}); err != nil {
		t.Fatal(err)
	}
	if _, err := db.GetItem(ctx, &dynamodb.GetItemInput{TableName: aws.String("t"), Key: key}); err != nil {
		t.Fatal(err)
	}
	out, err := db.Query(ctx, &dynamodb.QueryInput{TableName: aws.String("t"), KeyConditionExpression: aws.String("#p = :p"),
		ExpressionAttributeNames: map[string]string{"#p": "pk"}, ExpressionAttributeValues: map[string]types.AttributeValue{":p": s("P")},
		ConsistentRead: aws.Bool(true)})
	if err != nil || len(out.Items) != 3 {
		t.Fatalf("Query = %d items, %v; want 3", len(out.Items), err)
	}
	// 5 KB: 2 units strongly consistent, 1 eventually; the query sums
	// the three items (about 6.6 KB) before rounding: 2 units.
	for i, want := range []float64{2, 1, 2} {
		if got := (*calls)[i].RCU(); got != want {
			t.Errorf("read %d (%s) = %v RCU, want %v", i, (*calls)[i].API, got, want)
		}
	}
}

func TestQueriesPageThroughIndexesInOrder(t *testing.T) {
	ctx := context.Background()
	db, _ := table(t)
	for _, sk := range []string{"a", "b", "c", "d", "e"} {
		it := item(sk, "G", "2026-"+sk, 10)
		if _, err := db.PutItem(ctx, &dynamodb.PutItemInput{TableName: aws.String("t"), Item: it}); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := db.PutItem(ctx, &dynamodb.PutItemInput{TableName: aws.String("t"), Item: item("z", "", "", 10)}); err != nil {
		t.Fatal(err)
	}
	var got []string
	var start map[string]types.AttributeValue
	for {
		out, err := db.Query(ctx, &dynamodb.QueryInput{TableName: aws.String("t"), IndexName: aws.String("all"),
			KeyConditionExpression:    aws.String("(#g = :g) AND (#s < :s)"),
			ExpressionAttributeNames:  map[string]string{"#g": "gk", "#s": "gs"},
			ExpressionAttributeValues: map[string]types.AttributeValue{":g": s("G"), ":s": s("2026-e")},
			ScanIndexForward:          aws.Bool(false), Limit: aws.Int32(2), ExclusiveStartKey: start})
		if err != nil {
			t.Fatal(err)
		}
		for _, it := range out.Items {
			got = append(got, it["sk"].(*types.AttributeValueMemberS).Value)
		}
		if len(out.LastEvaluatedKey) == 0 {
			break
		}
		start = out.LastEvaluatedKey
	}
	if strings.Join(got, "") != "dcba" {
		t.Errorf("pages of the index, descending, below 2026-e = %q, want dcba (the sparse index holds no z)", got)
	}
}

func TestWhatItDoesNotImplementIsRefused(t *testing.T) {
	ctx := context.Background()
	db, _ := table(t)
	_, err := db.Query(ctx, &dynamodb.QueryInput{TableName: aws.String("t"), KeyConditionExpression: aws.String("pk = :p"),
		FilterExpression: aws.String("x = :p"), ExpressionAttributeValues: map[string]types.AttributeValue{":p": s("P")}})
	if err == nil || !strings.Contains(err.Error(), "not supported") {
		t.Errorf("Query with a filter = %v, want a refusal", err)
	}
	_, err = db.PutItem(ctx, &dynamodb.PutItemInput{TableName: aws.String("t"), Item: item("a", "", "", 1),
		ConditionExpression: aws.String("contains(doc, :x)"), ExpressionAttributeValues: map[string]types.AttributeValue{":x": s("x")}})
	if err == nil || !strings.Contains(err.Error(), "not supported") {
		t.Errorf("PutItem with contains() = %v, want a refusal", err)
	}
	_, err = db.Query(ctx, &dynamodb.QueryInput{TableName: aws.String("t"), IndexName: aws.String("all"), ConsistentRead: aws.Bool(true),
		KeyConditionExpression: aws.String("gk = :g"), ExpressionAttributeValues: map[string]types.AttributeValue{":g": s("G")}})
	if err == nil {
		t.Error("a consistent read of a global secondary index = nil error, want DynamoDB's refusal")
	}
}
