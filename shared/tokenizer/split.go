package tokenizer

import (
	"unicode"
	"unicode/utf8"
)

// The Qwen2 pre-tokenizer splits a segment with this pattern (Oniguruma
// semantics: \s is Unicode White_Space, \p{L} letters without marks):
//
//	(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+
//
// nextPiece implements its leftmost-first matching by hand, without
// backtracking, since Go's regexp has neither the lookahead nor a Unicode \s.
// "End of text" for the lookahead is the end of the segment.

// Character classes of the pattern.
const (
	clOther  uint8 = iota // [^\s\p{L}\p{N}]
	clLetter              // \p{L}
	clNumber              // \p{N}
	clSpace               // \s other than \r and \n
	clNL                  // \r or \n
)

var asciiClass = func() (c [utf8.RuneSelf]uint8) {
	for b := range c {
		switch {
		case b == '\r' || b == '\n':
			c[b] = clNL
		case b == ' ' || (b >= '\t' && b <= '\r'):
			c[b] = clSpace
		case (b >= 'a' && b <= 'z') || (b >= 'A' && b <= 'Z'):
			c[b] = clLetter
		case b >= '0' && b <= '9':
			c[b] = clNumber
		default:
			c[b] = clOther
		}
	}
	return c
}()

// classAt returns the class of the character at s[i] and its size. A byte
// that is not valid UTF-8 counts as one "other" character.
func classAt(s string, i int) (uint8, int) {
	b := s[i]
	if b < utf8.RuneSelf {
		return asciiClass[b], 1
	}
	r, n := utf8.DecodeRuneInString(s[i:])
	switch {
	case unicode.IsLetter(r):
		return clLetter, n
	case unicode.IsNumber(r):
		return clNumber, n
	case unicode.IsSpace(r): // U+0085, U+00A0, U+1680, U+2000..U+200A, ...
		return clSpace, n
	}
	return clOther, n // includes U+FFFD from invalid bytes
}

// runOf returns the end of the run of characters of class cl starting at i.
func runOf(s string, i int, cl uint8) int {
	for i < len(s) {
		if b := s[i]; b < utf8.RuneSelf {
			if asciiClass[b] != cl {
				return i
			}
			i++
			continue
		}
		c, n := classAt(s, i)
		if c != cl {
			return i
		}
		i += n
	}
	return i
}

// contraction returns the length of a contraction ('s 't 're 've 'm 'll
// 'd, any case) at s[i], which holds '\”, or 0. Like Oniguruma's
// case-insensitive match, 'ſ (U+017F, which folds to s) counts as 's.
func contraction(s string, i int) int {
	if i+1 >= len(s) {
		return 0
	}
	switch s[i+1] | 0x20 { // ASCII lower case; no other byte maps onto these letters
	case 's', 't', 'm', 'd':
		return 2
	case 'r', 'v':
		if i+2 < len(s) && s[i+2]|0x20 == 'e' {
			return 3
		}
	case 'l':
		if i+2 < len(s) && s[i+2]|0x20 == 'l' {
			return 3
		}
	}
	if s[i+1] == 0xC5 && i+2 < len(s) && s[i+2] == 0xBF { // ſ
		return 3
	}
	return 0
}

// nextPiece returns the end of the piece of s starting at i < len(s).
func nextPiece(s string, i int) int {
	c, n := classAt(s, i)
	if s[i] == '\'' {
		if k := contraction(s, i); k > 0 {
			return i + k
		}
	}
	switch c {
	case clLetter: // \p{L}+
		return runOf(s, i+n, clLetter)
	case clNumber: // \p{N}
		return i + n
	}
	// [^\r\n\p{L}\p{N}]?\p{L}+: c is other or a non-newline space.
	j := i + n
	var next uint8 = 255
	if j < len(s) {
		next, _ = classAt(s, j)
	}
	if c != clNL && next == clLetter {
		return runOf(s, j, clLetter)
	}
	// ' '?[^\s\p{L}\p{N}]+[\r\n]*
	if c == clOther || (s[i] == ' ' && next == clOther) {
		if c != clOther {
			i = j
		}
		j = runOf(s, i, clOther)
		for j < len(s) && (s[j] == '\r' || s[j] == '\n') {
			j++
		}
		return j
	}
	// c is whitespace: find the run [i, end) and its last newline.
	end, lastNL, lastStart := i, -1, i
	for end < len(s) {
		cl, m := classAt(s, end)
		if cl != clSpace && cl != clNL {
			break
		}
		if cl == clNL {
			lastNL = end
		}
		lastStart = end
		end += m
	}
	switch {
	case lastNL >= 0: // \s*[\r\n]+
		return lastNL + 1
	case end == len(s) || lastStart == i: // \s+(?!\S) at the end, or \s+
		return end
	default: // \s+(?!\S): all but the last space, which joins what follows
		return lastStart
	}
}
