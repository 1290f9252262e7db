package tokenizer

import (
	"hash/maphash"
	"slices"
	"strings"
	"sync/atomic"
)

// noMerge ranks a pair that has no merge: above every merged id.
const noMerge = ^uint32(0)

// maxScan is the longest piece merged by rescanning an array; longer pieces
// (unpunctuated CJK, long letter runs) use a heap so they stay O(n log n).
const maxScan = 64

// merge returns the id merging a and b creates (ids grow with the merge's
// rank, so a lower id merges first), or noMerge.
func (t *Tokenizer) merge(a, b uint32) uint32 {
	if id, ok := t.pairs.get(pairKey(a, b)); ok {
		return id
	}
	return noMerge
}

// token returns the id of the BPE token whose bytes are p.
func (t *Tokenizer) token(p string) (uint32, bool) {
	if len(p) <= maxShort {
		return t.short.get(shortKey(p))
	}
	id, ok := t.long[p]
	return id, ok
}

// appendPiece appends the ids of one pre-tokenized piece.
func (t *Tokenizer) appendPiece(dst []uint32, p string) []uint32 {
	// A piece that is a whole token encodes to that token: BPE over this
	// vocabulary always reaches it (TestEveryTokenEncodesToItself).
	if id, ok := t.token(p); ok {
		return append(dst, id)
	}
	h := t.cache.hash(p)
	if e := t.cache.get(h, p); e != nil {
		return append(dst, e.ids...)
	}
	start := len(dst)
	dst = t.bpe(dst, p)
	t.cache.put(h, p, dst[start:])
	return dst
}

// countPiece returns the number of tokens of one pre-tokenized piece.
func (t *Tokenizer) countPiece(p string) int {
	if _, ok := t.token(p); ok {
		return 1
	}
	h := t.cache.hash(p)
	if e := t.cache.get(h, p); e != nil {
		return len(e.ids)
	}
	var buf [maxScan]uint32
	ids := t.bpe(buf[:0], p)
	t.cache.put(h, p, ids)
	return len(ids)
}

// bpe appends the byte-level BPE encoding of p: starting from single
// bytes, repeatedly merge the adjacent pair with the lowest rank, the
// leftmost one among equals (as Hugging Face's BPE does).
func (t *Tokenizer) bpe(dst []uint32, p string) []uint32 {
	n := len(p)
	if n > maxScan {
		return t.bpeHeap(dst, p)
	}
	var ids, ranks [maxScan]uint32 // ranks[k]: the merge of ids[k] and ids[k+1]
	for k := 0; k < n; k++ {
		ids[k] = t.byteID[p[k]]
	}
	for k := 0; k+1 < n; k++ {
		ranks[k] = t.merge(ids[k], ids[k+1])
	}
	for n > 1 {
		best, at := noMerge, -1
		for k := 0; k+1 < n; k++ {
			if ranks[k] < best {
				best, at = ranks[k], k
			}
		}
		if at < 0 {
			break
		}
		ids[at] = best
		copy(ids[at+1:], ids[at+2:n])
		if at+2 < n {
			copy(ranks[at+1:], ranks[at+2:n-1])
		}
		n--
		if at > 0 {
			ranks[at-1] = t.merge(ids[at-1], ids[at])
		}
		if at+1 < n {
			ranks[at] = t.merge(ids[at], ids[at+1])
		}
	}
	return append(dst, ids[:n]...)
}

// candidate is a possible merge of the symbol at pos with the next one.
type candidate struct {
	id  uint32 // the merged id, which is also its rank
	pos int32
}

func (a candidate) less(b candidate) bool {
	return a.id < b.id || (a.id == b.id && a.pos < b.pos)
}

// bpeHeap is bpe for long pieces: symbols in a linked list, candidate
// merges in a min-heap ordered by (rank, position), stale ones skipped.
func (t *Tokenizer) bpeHeap(dst []uint32, p string) []uint32 {
	n := len(p)
	const dead = noMerge
	ids := make([]uint32, n)
	next := make([]int32, n)
	prev := make([]int32, n)
	heap := make([]candidate, 0, n)
	push := func(c candidate) {
		heap = append(heap, c)
		for i := len(heap) - 1; i > 0; {
			parent := (i - 1) / 2
			if !heap[i].less(heap[parent]) {
				break
			}
			heap[i], heap[parent] = heap[parent], heap[i]
			i = parent
		}
	}
	pop := func() candidate {
		top := heap[0]
		last := len(heap) - 1
		heap[0] = heap[last]
		heap = heap[:last]
		for i := 0; ; {
			l, r, m := 2*i+1, 2*i+2, i
			if l < last && heap[l].less(heap[m]) {
				m = l
			}
			if r < last && heap[r].less(heap[m]) {
				m = r
			}
			if m == i {
				break
			}
			heap[i], heap[m] = heap[m], heap[i]
			i = m
		}
		return top
	}
	for k := 0; k < n; k++ {
		ids[k] = t.byteID[p[k]]
		next[k], prev[k] = int32(k+1), int32(k-1)
	}
	next[n-1] = -1
	for k := 0; k+1 < n; k++ {
		if id := t.merge(ids[k], ids[k+1]); id != noMerge {
			push(candidate{id, int32(k)})
		}
	}
	for len(heap) > 0 {
		c := pop()
		l := c.pos
		r := next[l]
		r0 := c.id - 256
		if r < 0 || ids[l] != t.mergeLeft[r0] || ids[r] != t.mergeRight[r0] {
			continue // stale: a neighbour merged since
		}
		ids[l], ids[r] = c.id, dead
		nr := next[r]
		next[l] = nr
		if nr >= 0 {
			prev[nr] = l
			if id := t.merge(ids[l], ids[nr]); id != noMerge {
				push(candidate{id, l})
			}
		}
		if pl := prev[l]; pl >= 0 {
			if id := t.merge(ids[pl], ids[l]); id != noMerge {
				push(candidate{id, pl})
			}
		}
	}
	for k := int32(0); k >= 0; k = next[k] {
		dst = append(dst, ids[k])
	}
	return dst
}

// pieceCache remembers the encoding of recent pieces that are not whole
// tokens: a fixed array of slots indexed by hash, each holding one entry
// that a newer piece with the same slot replaces. Lock-free and bounded:
// at most cacheSlots entries of at most maxCachedPiece bytes and as many
// ids, about 5 MB at worst.
type pieceCache struct {
	seed  maphash.Seed
	slots []atomic.Pointer[cacheEntry]
}

const (
	cacheSlots     = 1 << 14
	maxCachedPiece = 48
)

type cacheEntry struct {
	key string
	ids []uint32
}

func (c *pieceCache) init() {
	c.seed = maphash.MakeSeed()
	c.slots = make([]atomic.Pointer[cacheEntry], cacheSlots)
}

func (c *pieceCache) hash(p string) uint64 {
	if len(p) > maxCachedPiece {
		return 0
	}
	return maphash.String(c.seed, p)
}

func (c *pieceCache) get(h uint64, p string) *cacheEntry {
	if len(p) > maxCachedPiece {
		return nil
	}
	if e := c.slots[h&(cacheSlots-1)].Load(); e != nil && e.key == p {
		return e
	}
	return nil
}

func (c *pieceCache) put(h uint64, p string, ids []uint32) {
	if len(p) > maxCachedPiece {
		return
	}
	// Clone: p may point into a large text the cache must not keep alive.
	c.slots[h&(cacheSlots-1)].Store(&cacheEntry{key: strings.Clone(p), ids: slices.Clone(ids)})
}
