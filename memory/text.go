package memory

import (
	"strings"
	"unicode"
	"unicode/utf8"
)

// oneLine makes s safe as one line of memory: invalid UTF-8 is replaced,
// control and format characters go, and every run of white space (new lines
// and the Unicode line separators included) becomes one space. Stored lines
// are rendered into the prompt; a new line inside one could forge a line of
// its own.
func oneLine(s string) string {
	if plainLine(s) {
		return s // the common case, unchanged by the rules below: no copies
	}
	return normalizeLine(s)
}

// plainLine reports whether s is already one clean line: printable ASCII,
// no leading, trailing or double spaces.
func plainLine(s string) bool {
	for i := 0; i < len(s); i++ {
		c := s[i]
		if c < ' ' || c > '~' || c == ' ' && (i == 0 || i == len(s)-1 || s[i-1] == ' ') {
			return false
		}
	}
	return true
}

func normalizeLine(s string) string {
	s = strings.ToValidUTF8(s, "\uFFFD")
	s = strings.Map(func(r rune) rune {
		switch {
		case unicode.IsSpace(r) || unicode.IsControl(r):
			return ' '
		case unicode.Is(unicode.Cf, r):
			return -1
		}
		return r
	}, s)
	return strings.Join(strings.Fields(s), " ")
}

// cutRunes caps s at n runes; a cut string ends with "…" (counted in n) so a
// reader can tell it was shortened.
func cutRunes(s string, n int) string {
	if utf8.RuneCountInString(s) <= n {
		return s
	}
	if n < 1 {
		return ""
	}
	i, count := 0, 0
	for i < len(s) && count < n-1 {
		_, size := utf8.DecodeRuneInString(s[i:])
		i += size
		count++
	}
	return strings.TrimRightFunc(s[:i], unicode.IsSpace) + "…"
}

// isWordRune reports whether r belongs to a word (letters, digits, '_').
func isWordRune(r rune) bool {
	return r == '_' || unicode.IsLetter(r) || unicode.IsDigit(r)
}

// containsWord reports whether term occurs in text as whole words,
// case-insensitively: "art" is not in "Martha". Both are compared lower-cased.
func containsWord(text, term string) bool {
	text, term = strings.ToLower(text), strings.ToLower(strings.TrimSpace(term))
	if term == "" {
		return false
	}
	for from := 0; from <= len(text); {
		i := strings.Index(text[from:], term)
		if i < 0 {
			return false
		}
		start, end := from+i, from+i+len(term)
		if wordEdge(text, start, end) {
			return true
		}
		_, size := utf8.DecodeRuneInString(text[start:])
		from = start + size
	}
	return false
}

// wordEdge reports whether text[start:end] is not glued to a word rune on
// either side (only checked where the term itself starts/ends with one).
func wordEdge(text string, start, end int) bool {
	first, _ := utf8.DecodeRuneInString(text[start:])
	last, _ := utf8.DecodeLastRuneInString(text[:end])
	if before, _ := utf8.DecodeLastRuneInString(text[:start]); start > 0 && isWordRune(first) && isWordRune(before) {
		return false
	}
	if after, _ := utf8.DecodeRuneInString(text[end:]); end < len(text) && isWordRune(last) && isWordRune(after) {
		return false
	}
	return true
}

// trimValue strips what models and speech wrap around a value: quotes,
// brackets and trailing sentence punctuation.
func trimValue(s string) string {
	s = strings.TrimSpace(s)
	for {
		t := strings.TrimRight(s, ".,;!? ")
		t = strings.TrimSpace(t)
		if len(t) >= 2 && isQuotePair(t) {
			t = strings.TrimSpace(t[quoteLen(t, true) : len(t)-quoteLen(t, false)])
		}
		if t == s {
			return s
		}
		s = t
	}
}

var quotePairs = [][2]string{{`"`, `"`}, {`'`, `'`}, {"«", "»"}, {"“", "”"}, {"`", "`"}, {"„", "“"}}

func isQuotePair(s string) bool {
	for _, p := range quotePairs {
		if len(s) >= len(p[0])+len(p[1]) && strings.HasPrefix(s, p[0]) && strings.HasSuffix(s, p[1]) {
			return true
		}
	}
	return false
}

// quoteLen returns the byte length of the opening (or closing) quote of a
// string isQuotePair accepted.
func quoteLen(s string, open bool) int {
	for _, p := range quotePairs {
		if len(s) >= len(p[0])+len(p[1]) && strings.HasPrefix(s, p[0]) && strings.HasSuffix(s, p[1]) {
			if open {
				return len(p[0])
			}
			return len(p[1])
		}
	}
	return 0
}

// emptyValues are what models write for "nothing" (upstream 5.3 step 3).
var emptyValues = map[string]bool{
	"": true, "-": true, "none": true, "empty": true, "n/a": true, "na": true, "null": true,
	"nil": true, "no information": true, "unknown": true, "nothing": true, "нет": true,
}

func isEmptyValue(s string) bool { return emptyValues[strings.ToLower(strings.TrimSpace(s))] }

// containsFold reports whether list holds s, case-insensitively.
func containsFold(list []string, s string) bool {
	for _, x := range list {
		if strings.EqualFold(x, s) {
			return true
		}
	}
	return false
}

// cmpID orders ids ascending (older facts have lower ids).
func cmpID(a, b int64) int {
	switch {
	case a < b:
		return -1
	case a > b:
		return 1
	}
	return 0
}
