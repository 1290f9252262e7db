// Package dynamotest is an in-memory DynamoDB table that meters what every
// request costs, as DynamoDB bills an on-demand table: the store's
// dynamo.Client, for tests and simulations that need no AWS.
//
// The table and its global secondary indexes are built from a
// CreateTableInput (dynamo.Schema): keys, sparse indexes (an item without
// an index's key attributes is not in it), KEYS_ONLY, INCLUDE and ALL
// projections. A change of the schema is measured without a change here.
//
// What it bills (Call): a write of the base item ceil(size/1 KB), the
// larger of the old and the new item for a replace, at least 1; for each
// index, an insert, a delete or an update of the projected item when its
// keys or projected attributes change (a key change is a delete and an
// insert), nothing when neither does; a transactional write twice that.
// A read ceil(size/4 KB), a Query summing the items it read before
// rounding, at least 1; eventually consistent reads half. A failed
// condition still bills the write of the base item.
//
// What it refuses: anything of the API it does not implement (an
// expression function, a filter, UpdateItem) fails with an error that
// names it, so that a store change it cannot model is seen at once.
package dynamotest

import (
	"context"
	"errors"
	"fmt"
	"math"
	"reflect"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb/types"
	"github.com/aws/smithy-go"
)

// MaxItemBytes is DynamoDB's item size limit.
const MaxItemBytes = 400 * 1024

// maxQueryBytes is how much a Query reads before it stops with a
// LastEvaluatedKey.
const maxQueryBytes = 1 << 20

// DB is one table in memory. Its methods are the store's dynamo.Client.
type DB struct {
	// Now is the clock a Call is stamped with (default time.Now): a
	// simulation sets its own to count writes per simulated second.
	Now func() time.Time
	// Record, when set, receives every request's bill.
	Record func(Call)

	mu      sync.Mutex
	name    string
	table   index // the base table: hash pk, range sk, projection ALL
	indexes []*index
	types   map[string]types.ScalarAttributeType
}

// index is the base table or one of its GSIs: partitions of entries in
// key order.
type index struct {
	name            string // "" for the table
	hash, rng       string // key attribute names (rng "" for none)
	keysOnly, all   bool
	include         map[string]bool
	parts           map[string]*partition
	tableHash, tRng string // the table's key, part of every index entry
}

type partition struct {
	entries []*entry // by range key, then the table's key
}

type entry struct {
	rng, tkey string // range key value ("" without one), table key
	item      map[string]types.AttributeValue
}

// New returns an empty table defined by def (dynamo.Schema's output).
func New(def *dynamodb.CreateTableInput) (*DB, error) {
	if def == nil || def.TableName == nil {
		return nil, errors.New("dynamotest: no table definition")
	}
	db := &DB{name: *def.TableName, types: map[string]types.ScalarAttributeType{}}
	for _, a := range def.AttributeDefinitions {
		db.types[aws.ToString(a.AttributeName)] = a.AttributeType
	}
	hash, rng, err := keyOf(def.KeySchema)
	if err != nil {
		return nil, err
	}
	db.table = index{hash: hash, rng: rng, all: true, parts: map[string]*partition{}, tableHash: hash, tRng: rng}
	if len(def.LocalSecondaryIndexes) > 0 {
		return nil, errors.New("dynamotest: local secondary indexes are not supported")
	}
	for _, g := range def.GlobalSecondaryIndexes {
		h, r, err := keyOf(g.KeySchema)
		if err != nil {
			return nil, fmt.Errorf("index %s: %w", aws.ToString(g.IndexName), err)
		}
		ix := &index{name: aws.ToString(g.IndexName), hash: h, rng: r, parts: map[string]*partition{}, tableHash: hash, tRng: rng}
		if g.Projection == nil {
			return nil, fmt.Errorf("dynamotest: index %s has no projection", ix.name)
		}
		switch g.Projection.ProjectionType {
		case types.ProjectionTypeAll:
			ix.all = true
		case types.ProjectionTypeKeysOnly:
			ix.keysOnly = true
		case types.ProjectionTypeInclude:
			ix.include = map[string]bool{}
			for _, a := range g.Projection.NonKeyAttributes {
				ix.include[a] = true
			}
		default:
			return nil, fmt.Errorf("dynamotest: index %s: projection %q is not supported", ix.name, g.Projection.ProjectionType)
		}
		db.indexes = append(db.indexes, ix)
	}
	return db, nil
}

func keyOf(ks []types.KeySchemaElement) (hash, rng string, err error) {
	for _, k := range ks {
		switch k.KeyType {
		case types.KeyTypeHash:
			hash = aws.ToString(k.AttributeName)
		case types.KeyTypeRange:
			rng = aws.ToString(k.AttributeName)
		}
	}
	if hash == "" {
		return "", "", errors.New("dynamotest: key schema without a hash key")
	}
	return hash, rng, nil
}

// Indexes names the table's global secondary indexes, in definition order.
func (db *DB) Indexes() []string {
	var out []string
	for _, ix := range db.indexes {
		out = append(out, ix.name)
	}
	return out
}

// Items returns a copy of every item of the table, in key order.
func (db *DB) Items() []map[string]types.AttributeValue {
	db.mu.Lock()
	defer db.mu.Unlock()
	var pks []string
	for pk := range db.table.parts {
		pks = append(pks, pk)
	}
	sort.Strings(pks)
	var out []map[string]types.AttributeValue
	for _, pk := range pks {
		for _, e := range db.table.parts[pk].entries {
			out = append(out, copyItem(e.item))
		}
	}
	return out
}

// Stored is what one index ("" for the table) holds: its entries and
// their bytes.
type Stored struct {
	Index        string
	Items, Bytes int
}

// Stored returns what the table and each index hold.
func (db *DB) Stored() []Stored {
	db.mu.Lock()
	defer db.mu.Unlock()
	var out []Stored
	for _, ix := range append([]*index{&db.table}, db.indexes...) {
		s := Stored{Index: ix.name}
		for _, p := range ix.parts {
			for _, e := range p.entries {
				s.Items++
				s.Bytes += ItemSize(e.item)
			}
		}
		out = append(out, s)
	}
	return out
}

// PartitionSize is the number of entries of index ("" for the table) in
// the partition with hash key value pk.
func (db *DB) PartitionSize(indexName, pk string) int {
	db.mu.Lock()
	defer db.mu.Unlock()
	ix := db.index(indexName)
	if ix == nil || ix.parts[pk] == nil {
		return 0
	}
	return len(ix.parts[pk].entries)
}

func (db *DB) index(name string) *index {
	if name == "" {
		return &db.table
	}
	for _, ix := range db.indexes {
		if ix.name == name {
			return ix
		}
	}
	return nil
}

func copyItem(item map[string]types.AttributeValue) map[string]types.AttributeValue {
	if item == nil {
		return nil
	}
	out := make(map[string]types.AttributeValue, len(item))
	for k, v := range item {
		out[k] = v
	}
	return out
}

// keyString is an S, N or B key value as a string that orders as
// DynamoDB orders it (numbers: only non-negative integers of up to 20
// digits, which is all this package is asked to order; others are
// refused).
func keyString(v types.AttributeValue) (string, error) {
	switch v := v.(type) {
	case *types.AttributeValueMemberS:
		return v.Value, nil
	case *types.AttributeValueMemberB:
		return string(v.Value), nil
	case *types.AttributeValueMemberN:
		if len(v.Value) > 20 || strings.Trim(v.Value, "0123456789") != "" {
			return "", fmt.Errorf("dynamotest: number key %q is not supported (only non-negative integers)", v.Value)
		}
		return fmt.Sprintf("%020s", v.Value), nil
	}
	return "", fmt.Errorf("dynamotest: a key attribute must be S, N or B, got %T", v)
}

// tableKey is the item's key in the base table.
func (db *DB) tableKey(item map[string]types.AttributeValue) (pk, rng, tkey string, err error) {
	hv, ok := item[db.table.hash]
	if !ok {
		return "", "", "", validation("One of the required keys was not given a value: %s", db.table.hash)
	}
	if pk, err = keyString(hv); err != nil {
		return
	}
	if db.table.rng != "" {
		rv, ok := item[db.table.rng]
		if !ok {
			return "", "", "", validation("One of the required keys was not given a value: %s", db.table.rng)
		}
		if rng, err = keyString(rv); err != nil {
			return
		}
	}
	return pk, rng, pk + "\x00" + rng, nil
}

// checkKeyOnly refuses a key holding attributes beside the table's key.
func (db *DB) checkKeyOnly(key map[string]types.AttributeValue) error {
	for name := range key {
		if name != db.table.hash && name != db.table.rng {
			return validation("The provided key element does not match the schema: %s", name)
		}
	}
	if len(key) != 1+btoi(db.table.rng != "") {
		return validation("The provided key element does not match the schema")
	}
	return nil
}

func btoi(b bool) int {
	if b {
		return 1
	}
	return 0
}

func validation(format string, args ...any) error {
	return &smithy.GenericAPIError{Code: "ValidationException", Message: fmt.Sprintf(format, args...), Fault: smithy.FaultClient}
}

func unsupported(format string, args ...any) error {
	return fmt.Errorf("dynamotest: not supported: "+format, args...)
}

// checkTable refuses a request for another table.
func (db *DB) checkTable(name *string) error {
	if aws.ToString(name) != db.name {
		return &types.ResourceNotFoundException{Message: aws.String("Requested resource not found: table " + aws.ToString(name))}
	}
	return nil
}

// checkItem refuses an item DynamoDB would refuse: too large, a key
// attribute of the table or of an index of another type than defined.
func (db *DB) checkItem(item map[string]types.AttributeValue) error {
	if n := ItemSize(item); n > MaxItemBytes {
		return validation("Item size has exceeded the maximum allowed size (%d bytes)", n)
	}
	for name, t := range db.types {
		v, ok := item[name]
		if !ok {
			continue
		}
		var got types.ScalarAttributeType
		switch v.(type) {
		case *types.AttributeValueMemberS:
			got = types.ScalarAttributeTypeS
		case *types.AttributeValueMemberN:
			got = types.ScalarAttributeTypeN
		case *types.AttributeValueMemberB:
			got = types.ScalarAttributeTypeB
		}
		if got != t {
			return validation("One or more parameter values were invalid: Type mismatch for Index Key %s Expected: %s", name, t)
		}
		if s, ok := v.(*types.AttributeValueMemberS); ok && s.Value == "" {
			return validation("One or more parameter values are not valid. A value specified for a secondary index key is not supported. The AttributeValue for a key attribute cannot contain an empty string value. Key: %s", name)
		}
	}
	return nil
}

// projected is item as index ix holds it (nil when ix does not hold it:
// a sparse index and an item without its keys).
func (ix *index) projected(item map[string]types.AttributeValue) map[string]types.AttributeValue {
	if item == nil {
		return nil
	}
	if _, ok := item[ix.hash]; !ok {
		return nil
	}
	if ix.rng != "" {
		if _, ok := item[ix.rng]; !ok {
			return nil
		}
	}
	if ix.all {
		return item
	}
	out := map[string]types.AttributeValue{}
	for name, v := range item {
		if name == ix.hash || name == ix.rng || name == ix.tableHash || name == ix.tRng || ix.include[name] {
			out[name] = v
		}
	}
	return out
}

func (ix *index) entryOf(item map[string]types.AttributeValue, tkey string) (pk string, e *entry) {
	pk, _ = keyString(item[ix.hash])
	rng := ""
	if ix.rng != "" {
		rng, _ = keyString(item[ix.rng])
	}
	return pk, &entry{rng: rng, tkey: tkey, item: item}
}

func less(a, b *entry) bool {
	if a.rng != b.rng {
		return a.rng < b.rng
	}
	return a.tkey < b.tkey
}

func (ix *index) find(pk string, e *entry) (p *partition, i int, found bool) {
	p = ix.parts[pk]
	if p == nil {
		return nil, 0, false
	}
	i = sort.Search(len(p.entries), func(i int) bool { return !less(p.entries[i], e) })
	return p, i, i < len(p.entries) && p.entries[i].rng == e.rng && p.entries[i].tkey == e.tkey
}

func (ix *index) insert(pk string, e *entry) {
	p := ix.parts[pk]
	if p == nil {
		p = &partition{}
		ix.parts[pk] = p
	}
	_, i, found := ix.find(pk, e)
	if found {
		p.entries[i] = e
		return
	}
	p.entries = append(p.entries, nil)
	copy(p.entries[i+1:], p.entries[i:])
	p.entries[i] = e
}

func (ix *index) remove(pk string, e *entry) {
	p, i, found := ix.find(pk, e)
	if !found {
		return
	}
	p.entries = append(p.entries[:i], p.entries[i+1:]...)
	if len(p.entries) == 0 {
		delete(ix.parts, pk)
	}
}

// get returns the stored item with tkey in partition pk, or nil.
func (db *DB) get(pk, rng, tkey string) map[string]types.AttributeValue {
	_, i, found := db.table.find(pk, &entry{rng: rng, tkey: tkey})
	if !found {
		return nil
	}
	return db.table.parts[pk].entries[i].item
}

// write replaces (or, with next nil, deletes) the item at the key of old
// or next, maintaining every index, and returns the index writes it cost.
func (db *DB) write(old, next map[string]types.AttributeValue, pk, rng, tkey string) []Write {
	if old != nil {
		db.table.remove(pk, &entry{rng: rng, tkey: tkey})
	}
	if next != nil {
		db.table.insert(pk, &entry{rng: rng, tkey: tkey, item: next})
	}
	var ws []Write
	for _, ix := range db.indexes {
		po, pn := ix.projected(old), ix.projected(next)
		var opk, npk string
		var oe, ne *entry
		if po != nil {
			opk, oe = ix.entryOf(po, tkey)
		}
		if pn != nil {
			npk, ne = ix.entryOf(pn, tkey)
		}
		switch {
		case po == nil && pn == nil:
			continue
		case po != nil && pn != nil && opk == npk && oe.rng == ne.rng:
			ix.insert(npk, ne)
			if !reflect.DeepEqual(po, pn) {
				ws = append(ws, Write{Index: ix.name, Partition: npk, Kind: IndexUpdate, Bytes: ItemSize(pn)})
			}
			continue
		}
		if po != nil {
			ix.remove(opk, oe)
			ws = append(ws, Write{Index: ix.name, Partition: opk, Kind: IndexDelete, Bytes: ItemSize(po)})
		}
		if pn != nil {
			ix.insert(npk, ne)
			ws = append(ws, Write{Index: ix.name, Partition: npk, Kind: IndexInsert, Bytes: ItemSize(pn)})
		}
	}
	return ws
}

// condition evaluates a request's condition on the stored item (nil: none
// stored), with its placeholders.
func condition(expr *string, names map[string]string, values map[string]types.AttributeValue, item map[string]types.AttributeValue) (bool, error) {
	if expr == nil {
		if len(values) > 0 {
			return false, validation("ExpressionAttributeValues can only be specified when using expressions")
		}
		return true, nil
	}
	n, used, err := parseCondition(*expr, names, values)
	if err != nil {
		return false, err
	}
	if err := allUsed(names, values, used); err != nil {
		return false, err
	}
	return eval(n, item)
}

// allUsed refuses placeholders that no expression of the request used, as
// DynamoDB does.
func allUsed(names map[string]string, values map[string]types.AttributeValue, used map[string]bool) error {
	for k := range names {
		if !used[k] {
			return validation("Value provided in ExpressionAttributeNames unused in expressions: keys: {%s}", k)
		}
	}
	for k := range values {
		if !used[k] {
			return validation("Value provided in ExpressionAttributeValues unused in expressions: keys: {%s}", k)
		}
	}
	return nil
}

func (db *DB) now() time.Time {
	if db.Now != nil {
		return db.Now()
	}
	return time.Now()
}

func (db *DB) record(c Call) *types.ConsumedCapacity {
	c.At = db.now()
	c.bill()
	if db.Record != nil {
		db.Record(c)
	}
	return c.consumed(db.name)
}

// GetItem reads one item.
func (db *DB) GetItem(ctx context.Context, in *dynamodb.GetItemInput, _ ...func(*dynamodb.Options)) (*dynamodb.GetItemOutput, error) {
	if err := db.checkTable(in.TableName); err != nil {
		return nil, err
	}
	if in.ProjectionExpression != nil || in.AttributesToGet != nil {
		return nil, unsupported("GetItem with a projection")
	}
	if err := db.checkKeyOnly(in.Key); err != nil {
		return nil, err
	}
	db.mu.Lock()
	defer db.mu.Unlock()
	pk, rng, tkey, err := db.tableKey(in.Key)
	if err != nil {
		return nil, err
	}
	item := db.get(pk, rng, tkey)
	cc := db.record(Call{API: "GetItem", Reads: []Read{{Partition: pk, Bytes: ItemSize(item), Consistent: aws.ToBool(in.ConsistentRead), Items: 1}}})
	out := &dynamodb.GetItemOutput{Item: copyItem(item)}
	if in.ReturnConsumedCapacity != "" && in.ReturnConsumedCapacity != types.ReturnConsumedCapacityNone {
		out.ConsumedCapacity = cc
	}
	return out, nil
}

// BatchGetItem reads up to 100 items of the table, each billed on its
// own (rounded up per item, as DynamoDB bills a batch).
func (db *DB) BatchGetItem(ctx context.Context, in *dynamodb.BatchGetItemInput, _ ...func(*dynamodb.Options)) (*dynamodb.BatchGetItemOutput, error) {
	out := &dynamodb.BatchGetItemOutput{Responses: map[string][]map[string]types.AttributeValue{}}
	n := 0
	for table, ka := range in.RequestItems {
		if err := db.checkTable(aws.String(table)); err != nil {
			return nil, err
		}
		if ka.ProjectionExpression != nil || ka.AttributesToGet != nil {
			return nil, unsupported("BatchGetItem with a projection")
		}
		n += len(ka.Keys)
	}
	if n == 0 || n > 100 {
		return nil, validation("BatchGetItem takes 1 to 100 keys, got %d", n)
	}
	db.mu.Lock()
	defer db.mu.Unlock()
	call := Call{API: "BatchGetItem"}
	for table, ka := range in.RequestItems {
		for _, k := range ka.Keys {
			if err := db.checkKeyOnly(k); err != nil {
				return nil, err
			}
			pk, rng, tkey, err := db.tableKey(k)
			if err != nil {
				return nil, err
			}
			item := db.get(pk, rng, tkey)
			call.Reads = append(call.Reads, Read{Partition: pk, Bytes: ItemSize(item), Consistent: aws.ToBool(ka.ConsistentRead), Items: 1})
			if item != nil {
				out.Responses[table] = append(out.Responses[table], copyItem(item))
			}
		}
	}
	db.record(call)
	return out, nil
}

// PutItem writes one item, under its condition.
func (db *DB) PutItem(ctx context.Context, in *dynamodb.PutItemInput, _ ...func(*dynamodb.Options)) (*dynamodb.PutItemOutput, error) {
	if err := db.checkTable(in.TableName); err != nil {
		return nil, err
	}
	if in.Expected != nil || in.ConditionalOperator != "" {
		return nil, unsupported("PutItem with the legacy Expected parameter")
	}
	if in.ReturnValues != "" && in.ReturnValues != types.ReturnValueNone {
		return nil, unsupported("PutItem with ReturnValues %s", in.ReturnValues)
	}
	db.mu.Lock()
	defer db.mu.Unlock()
	old, cc, err := db.put("PutItem", in.Item, in.ConditionExpression, in.ExpressionAttributeNames, in.ExpressionAttributeValues, 1)
	var ccf *types.ConditionalCheckFailedException
	if errors.As(err, &ccf) && in.ReturnValuesOnConditionCheckFailure == types.ReturnValuesOnConditionCheckFailureAllOld {
		ccf.Item = copyItem(old)
	}
	if err != nil {
		return nil, err
	}
	out := &dynamodb.PutItemOutput{}
	if in.ReturnConsumedCapacity != "" && in.ReturnConsumedCapacity != types.ReturnConsumedCapacityNone {
		out.ConsumedCapacity = cc
	}
	return out, nil
}

// put writes item under cond and records the bill (factor 2 in a
// transaction); it returns the item it replaced.
func (db *DB) put(api string, item map[string]types.AttributeValue, cond *string, names map[string]string, values map[string]types.AttributeValue, factor float64) (map[string]types.AttributeValue, *types.ConsumedCapacity, error) {
	if err := db.checkItem(item); err != nil {
		return nil, nil, err
	}
	pk, rng, tkey, err := db.tableKey(item)
	if err != nil {
		return nil, nil, err
	}
	old := db.get(pk, rng, tkey)
	ok, err := condition(cond, names, values, old)
	if err != nil {
		return nil, nil, err
	}
	base := Write{Partition: pk, Kind: Put, Bytes: max(ItemSize(old), ItemSize(item))}
	if !ok {
		cc := db.record(Call{API: api, Writes: []Write{base}, Factor: factor, ConditionFailed: true})
		return old, cc, &types.ConditionalCheckFailedException{Message: aws.String("The conditional request failed")}
	}
	ws := append([]Write{base}, db.write(old, copyItem(item), pk, rng, tkey)...)
	cc := db.record(Call{API: api, Writes: ws, Factor: factor})
	return old, cc, nil
}

// del deletes the item at key under cond and records the bill.
func (db *DB) del(api string, key map[string]types.AttributeValue, cond *string, names map[string]string, values map[string]types.AttributeValue, factor float64) (map[string]types.AttributeValue, *types.ConsumedCapacity, error) {
	if err := db.checkKeyOnly(key); err != nil {
		return nil, nil, err
	}
	pk, rng, tkey, err := db.tableKey(key)
	if err != nil {
		return nil, nil, err
	}
	old := db.get(pk, rng, tkey)
	ok, err := condition(cond, names, values, old)
	if err != nil {
		return nil, nil, err
	}
	base := Write{Partition: pk, Kind: Delete, Bytes: ItemSize(old)}
	if !ok {
		cc := db.record(Call{API: api, Writes: []Write{base}, Factor: factor, ConditionFailed: true})
		return old, cc, &types.ConditionalCheckFailedException{Message: aws.String("The conditional request failed")}
	}
	var ws []Write
	if old != nil {
		ws = db.write(old, nil, pk, rng, tkey)
	}
	cc := db.record(Call{API: api, Writes: append([]Write{base}, ws...), Factor: factor})
	return old, cc, nil
}

// DeleteItem deletes one item, under its condition.
func (db *DB) DeleteItem(ctx context.Context, in *dynamodb.DeleteItemInput, _ ...func(*dynamodb.Options)) (*dynamodb.DeleteItemOutput, error) {
	if err := db.checkTable(in.TableName); err != nil {
		return nil, err
	}
	if in.Expected != nil || in.ConditionalOperator != "" {
		return nil, unsupported("DeleteItem with the legacy Expected parameter")
	}
	if in.ReturnValues != "" && in.ReturnValues != types.ReturnValueNone {
		return nil, unsupported("DeleteItem with ReturnValues %s", in.ReturnValues)
	}
	db.mu.Lock()
	defer db.mu.Unlock()
	old, cc, err := db.del("DeleteItem", in.Key, in.ConditionExpression, in.ExpressionAttributeNames, in.ExpressionAttributeValues, 1)
	var ccf *types.ConditionalCheckFailedException
	if errors.As(err, &ccf) && in.ReturnValuesOnConditionCheckFailure == types.ReturnValuesOnConditionCheckFailureAllOld {
		ccf.Item = copyItem(old)
	}
	if err != nil {
		return nil, err
	}
	out := &dynamodb.DeleteItemOutput{}
	if in.ReturnConsumedCapacity != "" && in.ReturnConsumedCapacity != types.ReturnConsumedCapacityNone {
		out.ConsumedCapacity = cc
	}
	return out, nil
}

// BatchWriteItem writes up to 25 puts and deletes, unconditionally; it
// leaves nothing unprocessed.
func (db *DB) BatchWriteItem(ctx context.Context, in *dynamodb.BatchWriteItemInput, _ ...func(*dynamodb.Options)) (*dynamodb.BatchWriteItemOutput, error) {
	n := 0
	for table, reqs := range in.RequestItems {
		if err := db.checkTable(&table); err != nil {
			return nil, err
		}
		n += len(reqs)
	}
	if n == 0 || n > 25 {
		return nil, validation("BatchWriteItem takes 1 to 25 requests, got %d", n)
	}
	db.mu.Lock()
	defer db.mu.Unlock()
	seen := map[string]bool{}
	for _, reqs := range in.RequestItems {
		for _, r := range reqs {
			k := r.DeleteRequest
			var item map[string]types.AttributeValue
			if r.PutRequest != nil {
				item = r.PutRequest.Item
				if err := db.checkItem(item); err != nil {
					return nil, err
				}
			} else if k != nil {
				item = k.Key
			}
			_, _, tkey, err := db.tableKey(item)
			if err != nil {
				return nil, err
			}
			if seen[tkey] {
				return nil, validation("Provided list of item keys contains duplicates")
			}
			seen[tkey] = true
		}
	}
	var ccs []types.ConsumedCapacity
	for _, reqs := range in.RequestItems {
		for _, r := range reqs {
			var cc *types.ConsumedCapacity
			var err error
			switch {
			case r.PutRequest != nil:
				_, cc, err = db.put("BatchWriteItem", r.PutRequest.Item, nil, nil, nil, 1)
			case r.DeleteRequest != nil:
				_, cc, err = db.del("BatchWriteItem", r.DeleteRequest.Key, nil, nil, nil, 1)
			default:
				err = validation("a WriteRequest needs a PutRequest or a DeleteRequest")
			}
			if err != nil {
				return nil, err
			}
			ccs = append(ccs, *cc)
		}
	}
	out := &dynamodb.BatchWriteItemOutput{UnprocessedItems: map[string][]types.WriteRequest{}}
	if in.ReturnConsumedCapacity != "" && in.ReturnConsumedCapacity != types.ReturnConsumedCapacityNone {
		out.ConsumedCapacity = []types.ConsumedCapacity{sumCapacity(db.name, ccs)}
	}
	return out, nil
}

// TransactWriteItems writes its puts and deletes all or none: when a
// condition fails, nothing is written and the cancellation reasons say
// which (ConditionalCheckFailed, or None).
func (db *DB) TransactWriteItems(ctx context.Context, in *dynamodb.TransactWriteItemsInput, _ ...func(*dynamodb.Options)) (*dynamodb.TransactWriteItemsOutput, error) {
	if len(in.TransactItems) == 0 || len(in.TransactItems) > 100 {
		return nil, validation("TransactWriteItems takes 1 to 100 items, got %d", len(in.TransactItems))
	}
	if in.ClientRequestToken != nil {
		return nil, unsupported("TransactWriteItems with a ClientRequestToken")
	}
	db.mu.Lock()
	defer db.mu.Unlock()
	// Check every condition first, against the table as it is.
	reasons := make([]types.CancellationReason, len(in.TransactItems))
	failed := false
	seen := map[string]bool{}
	for i, t := range in.TransactItems {
		var table *string
		var key map[string]types.AttributeValue
		var cond *string
		var names map[string]string
		var values map[string]types.AttributeValue
		switch {
		case t.Put != nil:
			table, key, cond, names, values = t.Put.TableName, t.Put.Item, t.Put.ConditionExpression, t.Put.ExpressionAttributeNames, t.Put.ExpressionAttributeValues
			if err := db.checkItem(key); err != nil {
				return nil, err
			}
		case t.Delete != nil:
			table, key, cond, names, values = t.Delete.TableName, t.Delete.Key, t.Delete.ConditionExpression, t.Delete.ExpressionAttributeNames, t.Delete.ExpressionAttributeValues
		case t.ConditionCheck != nil:
			table, key, cond, names, values = t.ConditionCheck.TableName, t.ConditionCheck.Key, t.ConditionCheck.ConditionExpression, t.ConditionCheck.ExpressionAttributeNames, t.ConditionCheck.ExpressionAttributeValues
		default:
			return nil, unsupported("TransactWriteItems with an Update")
		}
		if err := db.checkTable(table); err != nil {
			return nil, err
		}
		pk, rng, tkey, err := db.tableKey(key)
		if err != nil {
			return nil, err
		}
		if seen[tkey] {
			return nil, validation("Transaction request cannot include multiple operations on one item")
		}
		seen[tkey] = true
		ok, err := condition(cond, names, values, db.get(pk, rng, tkey))
		if err != nil {
			return nil, err
		}
		reasons[i].Code = aws.String("None")
		if !ok {
			reasons[i] = types.CancellationReason{Code: aws.String("ConditionalCheckFailed"), Message: aws.String("The conditional request failed")}
			failed = true
		}
	}
	if failed {
		var ws []Write
		for _, t := range in.TransactItems {
			if t.Put != nil {
				pk, rng, tkey, _ := db.tableKey(t.Put.Item)
				ws = append(ws, Write{Partition: pk, Kind: Put, Bytes: max(ItemSize(db.get(pk, rng, tkey)), ItemSize(t.Put.Item))})
			}
		}
		db.record(Call{API: "TransactWriteItems", Writes: ws, Factor: 2, ConditionFailed: true})
		return nil, &types.TransactionCanceledException{Message: aws.String("Transaction cancelled, please refer cancellation reasons for specific reasons"), CancellationReasons: reasons}
	}
	var ws []Write
	for _, t := range in.TransactItems {
		switch {
		case t.Put != nil:
			pk, rng, tkey, _ := db.tableKey(t.Put.Item)
			old := db.get(pk, rng, tkey)
			ws = append(ws, Write{Partition: pk, Kind: Put, Bytes: max(ItemSize(old), ItemSize(t.Put.Item))})
			ws = append(ws, db.write(old, copyItem(t.Put.Item), pk, rng, tkey)...)
		case t.Delete != nil:
			pk, rng, tkey, _ := db.tableKey(t.Delete.Key)
			old := db.get(pk, rng, tkey)
			ws = append(ws, Write{Partition: pk, Kind: Delete, Bytes: ItemSize(old)})
			if old != nil {
				ws = append(ws, db.write(old, nil, pk, rng, tkey)...)
			}
		case t.ConditionCheck != nil:
			pk, rng, tkey, _ := db.tableKey(t.ConditionCheck.Key)
			ws = append(ws, Write{Partition: pk, Kind: Check, Bytes: ItemSize(db.get(pk, rng, tkey))})
		}
	}
	cc := db.record(Call{API: "TransactWriteItems", Writes: ws, Factor: 2})
	out := &dynamodb.TransactWriteItemsOutput{}
	if in.ReturnConsumedCapacity != "" && in.ReturnConsumedCapacity != types.ReturnConsumedCapacityNone {
		out.ConsumedCapacity = []types.ConsumedCapacity{*cc}
	}
	return out, nil
}

// Query reads one partition of the table or of an index, in key order.
func (db *DB) Query(ctx context.Context, in *dynamodb.QueryInput, _ ...func(*dynamodb.Options)) (*dynamodb.QueryOutput, error) {
	if err := db.checkTable(in.TableName); err != nil {
		return nil, err
	}
	switch {
	case in.FilterExpression != nil, in.QueryFilter != nil:
		return nil, unsupported("Query with a filter")
	case in.KeyConditions != nil:
		return nil, unsupported("Query with the legacy KeyConditions")
	case in.KeyConditionExpression == nil:
		return nil, validation("Query needs a KeyConditionExpression")
	case in.Select != "" && in.Select != types.SelectAllAttributes && in.Select != types.SelectAllProjectedAttributes:
		return nil, unsupported("Query with Select %s", in.Select)
	case in.AttributesToGet != nil:
		return nil, unsupported("Query with AttributesToGet")
	}
	ix := &db.table
	if in.IndexName != nil {
		if ix = db.index(*in.IndexName); ix == nil || *in.IndexName == "" {
			return nil, validation("The table does not have the specified index: %s", aws.ToString(in.IndexName))
		}
		if aws.ToBool(in.ConsistentRead) {
			return nil, validation("Consistent reads are not supported on global secondary indexes")
		}
	}
	n, used, err := parseCondition(*in.KeyConditionExpression, in.ExpressionAttributeNames, in.ExpressionAttributeValues)
	if err != nil {
		return nil, err
	}
	var proj []string
	if in.ProjectionExpression != nil {
		for _, p := range strings.Split(*in.ProjectionExpression, ",") {
			p = strings.TrimSpace(p)
			if strings.HasPrefix(p, "#") {
				name, ok := in.ExpressionAttributeNames[p]
				if !ok {
					return nil, validation("name placeholder %s is not defined", p)
				}
				used[p] = true
				p = name
			}
			if p == "" || strings.ContainsAny(p, ".[") {
				return nil, unsupported("projection %q", *in.ProjectionExpression)
			}
			proj = append(proj, p)
		}
	}
	if err := allUsed(in.ExpressionAttributeNames, in.ExpressionAttributeValues, used); err != nil {
		return nil, err
	}
	kc, err := splitKeyCondition(n, ix.hash, ix.rng)
	if err != nil {
		return nil, err
	}
	pk, err := keyString(kc.hash)
	if err != nil {
		return nil, err
	}
	limit := int(aws.ToInt32(in.Limit))
	if in.Limit != nil && limit <= 0 {
		return nil, validation("Limit must be at least 1")
	}
	forward := in.ScanIndexForward == nil || *in.ScanIndexForward

	db.mu.Lock()
	defer db.mu.Unlock()
	var entries []*entry
	if p := ix.parts[pk]; p != nil {
		entries = p.entries
	}
	// Where to start: after ExclusiveStartKey, in the direction read.
	start, end, step := 0, len(entries), 1
	if !forward {
		start, end, step = len(entries)-1, -1, -1
	}
	if in.ExclusiveStartKey != nil {
		e, err := db.startEntry(ix, pk, in.ExclusiveStartKey)
		if err != nil {
			return nil, err
		}
		i := sort.Search(len(entries), func(i int) bool { return !less(entries[i], e) })
		if forward {
			start = i
			if i < len(entries) && entries[i].rng == e.rng && entries[i].tkey == e.tkey {
				start = i + 1
			}
		} else {
			start = i - 1
		}
	}
	out := &dynamodb.QueryOutput{}
	bytes, read := 0, 0
	for i := start; i != end; i += step {
		e := entries[i]
		if kc.rangeCond != nil {
			ok, err := eval(kc.rangeCond, e.item)
			if err != nil {
				return nil, err
			}
			if !ok {
				// A range condition selects one contiguous run of keys.
				if len(out.Items) > 0 {
					break
				}
				continue
			}
		}
		bytes += ItemSize(e.item)
		read++
		out.Items = append(out.Items, project(e.item, proj))
		if limit > 0 && len(out.Items) == limit || bytes >= maxQueryBytes {
			out.LastEvaluatedKey = db.lastKey(ix, e.item)
			break
		}
	}
	out.Count = int32(len(out.Items))
	out.ScannedCount = out.Count
	cc := db.record(Call{API: "Query", Reads: []Read{{Index: ix.name, Partition: pk, Bytes: bytes, Consistent: aws.ToBool(in.ConsistentRead), Items: read}}})
	if in.ReturnConsumedCapacity != "" && in.ReturnConsumedCapacity != types.ReturnConsumedCapacityNone {
		out.ConsumedCapacity = cc
	}
	return out, nil
}

// startEntry is the position ExclusiveStartKey names: the table's key
// and, on an index, the index's key.
func (db *DB) startEntry(ix *index, pk string, k map[string]types.AttributeValue) (*entry, error) {
	want := map[string]bool{db.table.hash: true, ix.hash: true}
	if db.table.rng != "" {
		want[db.table.rng] = true
	}
	if ix.rng != "" {
		want[ix.rng] = true
	}
	if len(k) != len(want) {
		return nil, validation("The provided starting key is invalid: it must hold exactly the key attributes %v", keys(want))
	}
	for name := range want {
		if _, ok := k[name]; !ok {
			return nil, validation("The provided starting key is invalid: %s is missing", name)
		}
	}
	if h, _ := keyString(k[ix.hash]); h != pk {
		return nil, validation("The provided starting key does not match the range key predicate")
	}
	_, _, tkey, err := db.tableKey(map[string]types.AttributeValue{db.table.hash: k[db.table.hash], db.table.rng: k[db.table.rng]})
	if err != nil {
		return nil, err
	}
	rng := ""
	if ix.rng != "" {
		if rng, err = keyString(k[ix.rng]); err != nil {
			return nil, err
		}
	}
	return &entry{rng: rng, tkey: tkey}, nil
}

func keys(m map[string]bool) []string {
	var out []string
	for k := range m {
		out = append(out, k)
	}
	sort.Strings(out)
	return out
}

// lastKey is LastEvaluatedKey after item: the table's and the index's key.
func (db *DB) lastKey(ix *index, item map[string]types.AttributeValue) map[string]types.AttributeValue {
	k := map[string]types.AttributeValue{}
	for _, a := range []string{db.table.hash, db.table.rng, ix.hash, ix.rng} {
		if a != "" {
			k[a] = item[a]
		}
	}
	return k
}

func project(item map[string]types.AttributeValue, attrs []string) map[string]types.AttributeValue {
	if attrs == nil {
		return copyItem(item)
	}
	out := map[string]types.AttributeValue{}
	for _, a := range attrs {
		if v, ok := item[a]; ok {
			out[a] = v
		}
	}
	return out
}

// Units of capacity.
const (
	writeUnitBytes = 1024
	readUnitBytes  = 4096
)

func writeUnits(bytes int) float64 { return math.Max(1, math.Ceil(float64(bytes)/writeUnitBytes)) }
func readUnits(bytes int, consistent bool) float64 {
	u := math.Max(1, math.Ceil(float64(bytes)/readUnitBytes))
	if !consistent {
		u /= 2
	}
	return u
}
