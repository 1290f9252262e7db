package tokenizer

import "math/bits"

// u64Table is a read-only open-addressing hash table from non-zero uint64
// keys to ids: one slot per probe, no pointers, so a lookup usually costs
// a single cache line. The Go map it replaces on the hot path costs two or
// three.
type u64Table struct {
	slots []u64Slot
	shift uint
}

type u64Slot struct {
	key uint64 // 0: empty
	id  uint32
}

// newU64Table returns a table sized for n keys at a load of at most 1/2.
func newU64Table(n int) *u64Table {
	b := bits.Len(uint(2*n - 1))
	return &u64Table{slots: make([]u64Slot, 1<<b), shift: uint(64 - b)}
}

func (t *u64Table) home(key uint64) uint64 {
	return (key * 0x9E3779B97F4A7C15) >> t.shift
}

// put adds key, which must not be there yet.
func (t *u64Table) put(key uint64, id uint32) {
	mask := uint64(len(t.slots) - 1)
	i := t.home(key)
	for t.slots[i].key != 0 {
		i = (i + 1) & mask
	}
	t.slots[i] = u64Slot{key, id}
}

func (t *u64Table) get(key uint64) (uint32, bool) {
	mask := uint64(len(t.slots) - 1)
	for i := t.home(key); ; i = (i + 1) & mask {
		s := &t.slots[i]
		if s.key == key {
			return s.id, true
		}
		if s.key == 0 {
			return 0, false
		}
	}
}

// maxShort is the longest token kept in the short-token table.
const maxShort = 7

// shortKey packs a string of 1 to maxShort bytes and its length into a
// non-zero key.
func shortKey(s string) uint64 {
	k := uint64(len(s)) << 56
	for i := 0; i < len(s); i++ {
		k |= uint64(s[i]) << (8 * i)
	}
	return k
}

// pairKey is the key of the merge of a and b (bit 63 keeps it non-zero).
func pairKey(a, b uint32) uint64 {
	return 1<<63 | uint64(a)<<32 | uint64(b)
}
