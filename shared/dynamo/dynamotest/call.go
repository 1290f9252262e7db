package dynamotest

import (
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb/types"
)

// WriteKind is what one write did.
type WriteKind string

// The kinds of write: of the base item, and of an index's projection.
const (
	Put         WriteKind = "put"    // the base item written (created or replaced)
	Delete      WriteKind = "delete" // the base item deleted
	Check       WriteKind = "check"  // a transaction's condition check
	IndexInsert WriteKind = "index insert"
	IndexDelete WriteKind = "index delete"
	IndexUpdate WriteKind = "index update" // projected attributes changed, keys did not
)

// Write is one item written: of the table (Index "") or of an index.
type Write struct {
	Index     string
	Partition string // the partition key's value, in the table or the index
	Kind      WriteKind
	Bytes     int     // the item's size (the larger of old and new for a replace)
	Units     float64 // write units billed
}

// Read is what one GetItem or Query read.
type Read struct {
	Index      string
	Partition  string
	Bytes      int // the items' sizes, summed
	Items      int
	Consistent bool
	Units      float64 // read units billed
}

// Call is one request and its bill.
type Call struct {
	API    string
	At     time.Time
	Writes []Write
	Reads  []Read
	// Factor multiplies the writes' units: 2 in a transaction.
	Factor float64
	// ConditionFailed is set when a condition failed: nothing was written,
	// the base item's write is billed.
	ConditionFailed bool
}

// WCU sums the call's write units.
func (c Call) WCU() float64 {
	u := 0.0
	for _, w := range c.Writes {
		u += w.Units
	}
	return u
}

// RCU sums the call's read units.
func (c Call) RCU() float64 {
	u := 0.0
	for _, r := range c.Reads {
		u += r.Units
	}
	return u
}

// bill sets the units of every write and read.
func (c *Call) bill() {
	f := c.Factor
	if f == 0 {
		f = 1
	}
	for i := range c.Writes {
		w := &c.Writes[i]
		switch {
		case w.Kind == Check:
			// A transaction's condition check is billed as a read-write
			// of the item: one unit per KB, like a write.
			w.Units = writeUnits(w.Bytes) * f
		case w.Index == "":
			w.Units = writeUnits(w.Bytes) * f
		default:
			// Index writes propagate asynchronously and are billed as
			// standard writes, also those of a transaction.
			w.Units = writeUnits(w.Bytes)
		}
	}
	for i := range c.Reads {
		r := &c.Reads[i]
		r.Units = readUnits(r.Bytes, r.Consistent)
	}
}

// consumed is the call's bill as DynamoDB's ConsumedCapacity (INDEXES
// detail).
func (c Call) consumed(table string) *types.ConsumedCapacity {
	cc := &types.ConsumedCapacity{TableName: aws.String(table), GlobalSecondaryIndexes: map[string]types.Capacity{}}
	var total, tw, tr float64
	add := func(index string, wcu, rcu float64) {
		total += wcu + rcu
		if index == "" {
			tw += wcu
			tr += rcu
			return
		}
		ic := cc.GlobalSecondaryIndexes[index]
		ic.CapacityUnits = aws.Float64(aws.ToFloat64(ic.CapacityUnits) + wcu + rcu)
		if wcu > 0 {
			ic.WriteCapacityUnits = aws.Float64(aws.ToFloat64(ic.WriteCapacityUnits) + wcu)
		}
		if rcu > 0 {
			ic.ReadCapacityUnits = aws.Float64(aws.ToFloat64(ic.ReadCapacityUnits) + rcu)
		}
		cc.GlobalSecondaryIndexes[index] = ic
	}
	for _, w := range c.Writes {
		add(w.Index, w.Units, 0)
	}
	for _, r := range c.Reads {
		add(r.Index, 0, r.Units)
	}
	cc.CapacityUnits = aws.Float64(total)
	cc.Table = &types.Capacity{CapacityUnits: aws.Float64(tw + tr)}
	if tw > 0 {
		cc.WriteCapacityUnits, cc.Table.WriteCapacityUnits = aws.Float64(tw), aws.Float64(tw)
	}
	if tr > 0 {
		cc.ReadCapacityUnits, cc.Table.ReadCapacityUnits = aws.Float64(tr), aws.Float64(tr)
	}
	return cc
}

// sumCapacity adds up the capacity of several writes of one table.
func sumCapacity(table string, ccs []types.ConsumedCapacity) types.ConsumedCapacity {
	out := types.ConsumedCapacity{TableName: aws.String(table)}
	var total float64
	for _, c := range ccs {
		total += aws.ToFloat64(c.CapacityUnits)
	}
	out.CapacityUnits = aws.Float64(total)
	return out
}
