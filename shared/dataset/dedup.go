package dataset

import (
	"encoding/binary"
	"hash/maphash"
	"math"

	"github.com/brightrun/brightrun/shared/chat"
)

// dedupSet finds conversations seen before. It keeps a 128-bit hash of
// each conversation's canonical form (roles, weights and contents; unknown
// keys and JSON spelling do not count) with the line it first appeared on:
// 30 to 50 bytes per distinct example in a Go map, depending on how full
// its tables are since they last grew. It stops remembering new
// conversations at limit.
//
// The hash is two maphash sums with independent random seeds: two distinct
// conversations collide with probability 2^-128 per pair, so even 10^9
// examples are safe, and nobody can craft collisions without the seeds.
type dedupSet struct {
	seeds [2]maphash.Seed
	seen  map[[16]byte]uint32
	limit int
	full  bool
	canon []byte
}

func newDedupSet(limit int) *dedupSet {
	return &dedupSet{
		seeds: [2]maphash.Seed{maphash.MakeSeed(), maphash.MakeSeed()},
		seen:  make(map[[16]byte]uint32),
		limit: limit,
	}
}

// check records msgs, found on line, and returns the line an identical
// conversation appeared on before, or 0.
func (d *dedupSet) check(msgs []chat.Message, line int64) (first int64) {
	if d.limit <= 0 {
		return 0
	}
	return d.checkKey(d.key(msgs), line)
}

// key is the 128-bit hash of msgs' canonical form. It uses only the
// seeds and d.canon, so the parts of a parallel validation compute keys
// with copies of one set that share its seeds.
func (d *dedupSet) key(msgs []chat.Message) [16]byte {
	c := d.canon[:0]
	for _, m := range msgs {
		w := byte(2) // no weight
		if m.Weight != nil {
			w = byte(*m.Weight)
		} else if m.Role == roleAssistant {
			w = 1 // an assistant message trains by default
		}
		c = append(c, m.Role[0], w)
		c = binary.AppendUvarint(c, uint64(len(m.Content)))
		c = append(c, m.Content...)
	}
	d.canon = c
	var key [16]byte
	binary.LittleEndian.PutUint64(key[:8], maphash.Bytes(d.seeds[0], c))
	binary.LittleEndian.PutUint64(key[8:], maphash.Bytes(d.seeds[1], c))
	return key
}

// checkKey is check for the conversation whose key is key.
func (d *dedupSet) checkKey(key [16]byte, line int64) (first int64) {
	if l, ok := d.seen[key]; ok {
		return int64(l)
	}
	if len(d.seen) >= d.limit {
		d.full = true
		return 0
	}
	d.seen[key] = uint32(min(line, math.MaxUint32))
	return 0
}
