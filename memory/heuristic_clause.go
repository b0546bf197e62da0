package memory

import (
	"strings"
	"unicode"
	"unicode/utf8"
)

// maxClauseRunes bounds a value the heuristic takes from free text.
const maxClauseRunes = 150

// clause returns s up to the end of its sentence: '!', '?', ';', '…' or a
// '.' followed by a space or the end ("Dr. Smith" is cut, "10.30" is not).
// With commas, a ',' ends it too.
func clause(s string, commas bool) string {
	for i, r := range s {
		switch {
		case r == '!' || r == '?' || r == ';' || r == '…' || r == '\n':
		case commas && r == ',':
		case r == '.' && (i+1 == len(s) || s[i+1] == ' '):
		default:
			continue
		}
		return strings.TrimSpace(s[:i])
	}
	return strings.TrimSpace(s)
}

// requestWords may precede "remember"/"forget" in a clause that is still a
// request to Nexy ("please forget …", "Nexy, remember …", "и запомни …").
var requestWords = map[string]bool{
	"please": true, "nexy": true, "hey": true, "ok": true, "okay": true, "and": true, "also": true,
	"now": true, "just": true, "so": true, "пожалуйста": true, "некси": true, "и": true, "а": true,
	"ещё": true, "еще": true, "теперь": true, "просто": true, "так": true, "слушай": true, "ты": true,
	"вот": true,
}

// isRequest reports whether the keyword starting at text[at:] opens a
// request: the words before it in its clause are request words only. So
// "do you remember that …", "I remember that …" and "you forget my name"
// do not count.
func isRequest(text string, at int) bool {
	before := text[:at]
	if i := strings.LastIndexAny(before, ".!?;,:\n…"); i >= 0 {
		_, size := utf8.DecodeRuneInString(before[i:])
		before = before[i+size:]
	}
	for _, w := range strings.FieldsFunc(strings.ToLower(before), func(r rune) bool {
		return !unicode.IsLetter(r) && r != '\''
	}) {
		if !requestWords[w] {
			return false
		}
	}
	return true
}

// firstWord returns the first word of s, lower-cased.
func firstWord(s string) string {
	if w := leadingWords(s, 1); len(w) == 1 {
		return strings.ToLower(w[0])
	}
	return ""
}

// capRunes cuts s to n runes without a marker (for values, where "…" would
// look like part of the value).
func capRunes(s string, n int) string {
	if utf8.RuneCountInString(s) <= n {
		return s
	}
	i := 0
	for k := 0; k < n; k++ {
		_, size := utf8.DecodeRuneInString(s[i:])
		i += size
	}
	return strings.TrimSpace(s[:i])
}
