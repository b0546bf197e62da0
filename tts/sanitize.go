package tts

import (
	"strings"
	"unicode"
	"unicode/utf8"
)

// TTS sanitizer: the display segment stays as written (protocol.md §13 item 6);
// only the text handed to the synthesizer is cleaned, and only of what a
// voice cannot or should not say:
//
//   - markdown syntax: **, __, ~~, *emphasis*, _emphasis_, backticks and code
//     fences with their info string ("```json" says nothing), leading "#"
//     headings, "> " quotes, "- ", "* ", "+ ", "• " bullets and "[ ]" task
//     boxes, horizontal rules and table separator rows (table cells are read
//     as a comma-separated list). Ordered-list numbers ("1. ") are kept: a
//     listener counts items by them. A "*" or "_" with spaces on both sides
//     or letters on both sides is not markup ("2 * 3", "snake_case").
//   - links: [text](url) and ![alt](url) → text; bare and <angle> URLs →
//     their host without "www." ("https://www.example.com/a?b" →
//     "example.com"), because a spoken URL path is noise.
//   - emoji and pictographs, including ZWJ sequences, variation selectors,
//     skin tones, flags and tag sequences; a keycap digit ("1️⃣") keeps its
//     digit. A base with emoji presentation (U+FE0F) goes with it.
//   - invisible format characters (zero-width space, BOM, soft hyphen, bidi
//     controls), other control characters, private-use and U+FFFD.
//
// Everything else stays: letters of every script, digits, currency (£5, 6€),
// °, %, &, # inside words (C#), curly quotes and apostrophes (don’t), dashes,
// arrows, ©, ™. Whitespace and line breaks collapse to single spaces and a
// space left before closing punctuation by a removed emoji is dropped.

// maxSpeakPasses bounds the passes; one pass almost always reaches the fixed point.
const maxSpeakPasses = 8

// Speakable turns a display segment into TTS input; "" means there is nothing
// to say (no letters or digits), and the caller still sends the text.
func Speakable(segment string) string {
	s := strings.ToValidUTF8(segment, "")
	// Removing markup can expose more (a link text holding **bold**), so the
	// pass repeats until nothing changes: the result is a fixed point and
	// Speakable(Speakable(x)) == Speakable(x).
	for range maxSpeakPasses {
		t := speakPass(s)
		if t == s {
			break
		}
		s = t
	}
	if !hasLetterOrNumber(s) {
		return ""
	}
	return s
}

// speakPass applies every cleaning step once.
func speakPass(s string) string {
	s = dropPictographs(s)
	s = stripLineMarkup(s)
	s = stripInlineMarkup(s)
	return collapseSpaces(s)
}

func hasLetterOrNumber(s string) bool {
	for _, r := range s {
		if unicode.IsLetter(r) || unicode.IsNumber(r) {
			return true
		}
	}
	return false
}

const (
	vs15      = '\uFE0E' // text presentation selector
	vs16      = '\uFE0F' // emoji presentation selector
	keycapMrk = '\u20E3' // combining enclosing keycap
)

// dropPictographs replaces emoji with a space (words on both sides stay
// apart) and removes their joiners and modifiers and invisible characters.
func dropPictographs(s string) string {
	var b strings.Builder
	b.Grow(len(s))
	inEmoji := false // the previous visible rune was an emoji
	for i := 0; i < len(s); {
		r, n := utf8.DecodeRuneInString(s[i:])
		next, nn := utf8.DecodeRuneInString(s[i+n:])
		switch {
		case isKeycapBase(r) && (next == keycapMrk || next == vs16 && nextIs(s[i+n+nn:], keycapMrk)):
			if r >= '0' && r <= '9' {
				b.WriteRune(r)
			} else {
				b.WriteByte(' ')
			}
			inEmoji = false
		case r == vs15 || r == vs16 || r == keycapMrk || isInvisible(r):
			// dropped
		case r == zwj:
			if !inEmoji && !isPictograph(next) {
				b.WriteRune(r) // joins letters in Indic and Arabic scripts
			}
		case isPictograph(r) || next == vs16 && !unicode.IsLetter(r) && !unicode.IsNumber(r) && !unicode.IsSpace(r):
			b.WriteByte(' ')
			inEmoji = true
		default:
			b.WriteRune(r)
			inEmoji = false
		}
		i += n
	}
	return b.String()
}

func nextIs(s string, want rune) bool {
	r, _ := utf8.DecodeRuneInString(s)
	return r == want
}

func isKeycapBase(r rune) bool { return r >= '0' && r <= '9' || r == '#' || r == '*' }

// isPictograph reports emoji and pictographic symbols (Unicode emoji blocks,
// dingbats, geometric shapes, box drawing). Numbers in those blocks (❶) stay.
func isPictograph(r rune) bool {
	switch {
	case r < 0x231A:
		return false
	case r >= 0x1F000 && r <= 0x1FAFF, r >= 0x2600 && r <= 0x27BF:
		return !unicode.IsNumber(r)
	case r >= 0x2B00 && r <= 0x2BFF, r >= 0x2500 && r <= 0x25FF:
		return true
	case r == 0x231A, r == 0x231B, r == 0x2328, r == 0x23CF, r >= 0x23E9 && r <= 0x23F3, r >= 0x23F8 && r <= 0x23FA:
		return true
	case r == 0x3030, r == 0x303D, r == 0x3297, r == 0x3299:
		return true
	}
	return false
}

// isInvisible reports characters a voice cannot say and that carry no text:
// format controls, other control characters, tags, private use, U+FFFD.
func isInvisible(r rune) bool {
	switch {
	case unicode.IsSpace(r):
		return false
	case r == 0xAD, r == 0x200B, r == 0x2060, r == 0xFEFF, r == 0x180E, r == 0x061C, r == utf8.RuneError:
		return true
	case r >= 0x200E && r <= 0x200F, r >= 0x202A && r <= 0x202E, r >= 0x2066 && r <= 0x2069:
		return true
	case r >= 0xE0000 && r <= 0xE007F, r >= 0xFFF9 && r <= 0xFFFC:
		return true
	}
	return unicode.Is(unicode.Cc, r) || unicode.Is(unicode.Co, r) || unicode.Is(unicode.Noncharacter_Code_Point, r)
}

// stripLineMarkup removes markdown that only means something at a line start.
func stripLineMarkup(s string) string {
	var b strings.Builder
	b.Grow(len(s))
	for len(s) > 0 {
		end := strings.IndexFunc(s, isLineBreak)
		line, rest := s, ""
		if end >= 0 {
			_, n := utf8.DecodeRuneInString(s[end:])
			line, rest = s[:end], s[end+n:]
		}
		b.WriteString(cleanLine(line))
		if end >= 0 {
			b.WriteByte('\n')
		}
		s = rest
	}
	return b.String()
}

// cleanLine strips a line's block markers: fence, rule, heading, quote, bullet, table.
func cleanLine(line string) string {
	line = strings.TrimLeftFunc(line, unicode.IsSpace)
	if isRuleLine(line) {
		return ""
	}
	if t, ok := strings.CutPrefix(line, "```"); ok {
		return dropFenceInfo(strings.TrimLeft(t, "`"))
	}
	if t, ok := strings.CutPrefix(line, "~~~"); ok {
		return dropFenceInfo(strings.TrimLeft(t, "~"))
	}
	for {
		t := stripBlockMarker(line)
		if t == line {
			break
		}
		line = strings.TrimLeftFunc(t, unicode.IsSpace)
	}
	if strings.HasPrefix(line, "|") {
		return tableRow(line)
	}
	return line
}

// dropFenceInfo removes a code fence's info string ("json", "c++") when it is
// all the line holds.
func dropFenceInfo(rest string) string {
	t := strings.TrimSpace(rest)
	if t != "" && len(t) <= 32 && !strings.ContainsFunc(t, unicode.IsSpace) {
		return ""
	}
	return rest
}

// stripBlockMarker removes one leading heading, quote, bullet or task box.
func stripBlockMarker(line string) string {
	if h := strings.TrimLeft(line, "#"); len(line)-len(h) >= 1 && len(line)-len(h) <= 6 && startsWithSpaceOrEnd(h) {
		return h
	}
	if t, ok := strings.CutPrefix(line, ">"); ok && (startsWithSpaceOrEnd(t) || strings.HasPrefix(t, ">")) {
		return t
	}
	for _, m := range []string{"-", "*", "+", "•", "‣", "◦", "·"} {
		if t, ok := strings.CutPrefix(line, m); ok && startsWithSpaceOrEnd(t) && t != "" {
			return t
		}
	}
	for _, box := range []string{"[ ]", "[x]", "[X]"} {
		if t, ok := strings.CutPrefix(line, box); ok && startsWithSpaceOrEnd(t) {
			return t
		}
	}
	return line
}

func startsWithSpaceOrEnd(s string) bool {
	r, _ := utf8.DecodeRuneInString(s)
	return s == "" || unicode.IsSpace(r)
}

// isRuleLine reports a thematic break ("---", "* * *", "===") or a table
// separator row ("|---|:--:|").
func isRuleLine(line string) bool {
	line = strings.TrimRightFunc(line, unicode.IsSpace)
	if len(line) < 3 {
		return false
	}
	if strings.Trim(line, "|-: ") == "" {
		return strings.Contains(line, "-") && (strings.Contains(line, "|") || strings.Count(line, "-") >= 3)
	}
	for _, c := range "*_=" {
		if strings.Trim(line, string(c)+" ") == "" && strings.Count(line, string(c)) >= 3 {
			return true
		}
	}
	return false
}

// tableRow reads a markdown table row as its cells separated by commas.
func tableRow(line string) string {
	var cells []string
	for c := range strings.SplitSeq(line, "|") {
		if c = strings.TrimSpace(c); c != "" {
			cells = append(cells, c)
		}
	}
	return strings.Join(cells, ", ")
}

// stripInlineMarkup removes links, URLs, emphasis, strike-through and code marks.
func stripInlineMarkup(s string) string {
	var b strings.Builder
	b.Grow(len(s))
	prev := ' ' // rune before i in s
	for i := 0; i < len(s); {
		if n, text, ok := inlineToken(s, i, prev); ok {
			b.WriteString(text)
			r, _ := utf8.DecodeLastRuneInString(s[:i+n])
			prev = r
			i += n
			continue
		}
		r, n := utf8.DecodeRuneInString(s[i:])
		b.WriteString(s[i : i+n])
		prev = r
		i += n
	}
	return b.String()
}

// inlineToken recognizes markup at s[i:] and returns its length and the
// text to say instead.
func inlineToken(s string, i int, prev rune) (int, string, bool) {
	switch c := s[i]; c {
	case '!':
		if strings.HasPrefix(s[i+1:], "[") {
			if n, text, ok := mdLink(s[i+1:]); ok {
				return n + 1, text, true
			}
		}
	case '[':
		return mdLink(s[i:])
	case '<':
		if n, host, ok := bareURL(s[i+1:]); ok && strings.HasPrefix(s[i+1+n:], ">") {
			return n + 2, host, true
		}
	case '`':
		n := len(s[i:]) - len(strings.TrimLeft(s[i:], "`"))
		if n >= 3 {
			n += fenceInfoLen(s[i+n:])
		}
		return n, "", true
	case '*', '_', '~':
		return emphasis(s, i, prev)
	case 'h', 'H', 'w', 'W':
		if !isWordRune(prev) && prev != '.' && prev != '/' && prev != '@' {
			return bareURL(s[i:])
		}
	}
	return 0, "", false
}

// fenceInfoLen returns the length of an info string after a mid-line fence
// when it runs to the line's end.
func fenceInfoLen(s string) int {
	n := strings.IndexFunc(s, func(r rune) bool { return !isWordRune(r) && !strings.ContainsRune("+#.-", r) })
	if n < 0 {
		n = len(s)
	}
	r, _ := utf8.DecodeRuneInString(s[n:])
	if n > 0 && (n == len(s) || isLineBreak(r)) {
		return n
	}
	return 0
}

// emphasis handles a run of '*', '_' or '~' at s[i:]: a double (or longer)
// run is markup; a single '*' or '_' is markup unless it has spaces on both
// sides or letters on both sides; a single '~' (approximately) stays.
func emphasis(s string, i int, prev rune) (int, string, bool) {
	c := s[i]
	n := 1
	for i+n < len(s) && s[i+n] == c {
		n++
	}
	if n >= 2 {
		return n, "", true
	}
	if c == '~' {
		return 0, "", false
	}
	next, _ := utf8.DecodeRuneInString(s[i+1:])
	if i+1 >= len(s) {
		next = ' '
	}
	if unicode.IsSpace(prev) && unicode.IsSpace(next) || isWordRune(prev) && isWordRune(next) {
		return 0, "", false
	}
	return 1, "", true
}

func isWordRune(r rune) bool { return unicode.IsLetter(r) || unicode.IsNumber(r) }

// Longest link text and URL that mdLink recognizes.
const (
	maxLinkText = 512
	maxLinkURL  = 2048
)

// mdLink parses "[text](url)" at s and returns its length and text (or the
// URL's host when the text is empty).
func mdLink(s string) (int, string, bool) {
	// Bounded look-ahead keeps unclosed "[a](" runs linear.
	s = s[:min(len(s), maxLinkText+maxLinkURL)]
	close := strings.IndexAny(s[1:min(len(s), maxLinkText)], "[]\n\r")
	if close < 0 || s[1+close] != ']' || !strings.HasPrefix(s[close+2:], "(") {
		return 0, "", false
	}
	text := s[1 : 1+close]
	start := close + 3 // first byte of the URL
	depth := 0
	for j := start; j < len(s) && j < start+maxLinkURL; j++ {
		switch s[j] {
		case '(':
			depth++
		case ')':
			if depth == 0 {
				if strings.TrimSpace(text) == "" {
					return j + 1, urlHost(strings.TrimSpace(s[start:j])), true
				}
				return j + 1, text, true
			}
			depth--
		case '\n', '\r':
			return 0, "", false
		}
	}
	return 0, "", false
}

// bareURL recognizes "http://", "https://" or "www." at s and returns the
// URL's length (trailing sentence punctuation excluded) and its host.
func bareURL(s string) (int, string, bool) {
	low := strings.ToLower(s[:min(len(s), 8)])
	if !strings.HasPrefix(low, "http://") && !strings.HasPrefix(low, "https://") && !strings.HasPrefix(low, "www.") {
		return 0, "", false
	}
	n := strings.IndexFunc(s, func(r rune) bool { return unicode.IsSpace(r) || strings.ContainsRune("<>\"`", r) })
	if n < 0 {
		n = len(s)
	}
	u := trimURLTail(s[:n])
	host := urlHost(u)
	if host == "" && !strings.Contains(u, "://") {
		return 0, "", false // "www." alone is a word
	}
	return len(u), host, true
}

// trimURLTail drops punctuation that ends the sentence rather than the URL,
// keeping a ")" that closes a "(" inside the URL.
func trimURLTail(u string) string {
	for u != "" {
		r, n := utf8.DecodeLastRuneInString(u)
		switch {
		case strings.ContainsRune(".,;:!?'\"’”»…]}", r):
		case r == ')' && strings.Count(u, "(") < strings.Count(u, ")"):
		default:
			return u
		}
		u = u[:len(u)-n]
	}
	return u
}

// urlHost returns a URL's host without user info, port and leading "www.".
func urlHost(u string) string {
	if i := strings.Index(u, "://"); i >= 0 {
		u = u[i+3:]
	}
	if i := strings.IndexAny(u, "/?#\\"); i >= 0 {
		u = u[:i]
	}
	if i := strings.LastIndexByte(u, '@'); i >= 0 {
		u = u[i+1:]
	}
	if i := strings.LastIndexByte(u, ':'); i >= 0 && !strings.Contains(u, "]") {
		u = u[:i]
	}
	for len(u) >= 4 && strings.EqualFold(u[:4], "www.") {
		u = u[4:]
	}
	return strings.Trim(u, ".")
}

// collapseSpaces turns every whitespace run into one space, trims the ends
// and drops a space before closing punctuation that ends a word.
func collapseSpaces(s string) string {
	var b strings.Builder
	b.Grow(len(s))
	pendingSpace := false
	for i := 0; i < len(s); {
		r, n := utf8.DecodeRuneInString(s[i:])
		i += n
		if unicode.IsSpace(r) {
			pendingSpace = b.Len() > 0
			continue
		}
		if pendingSpace && !(isClosingPunct(r) && endsWord(s[i:])) {
			b.WriteByte(' ')
		}
		pendingSpace = false
		b.WriteRune(r)
	}
	return b.String()
}

func isClosingPunct(r rune) bool { return strings.ContainsRune(".,!?;:", r) }

// endsWord reports whether s starts at a word end (whitespace or the end).
func endsWord(s string) bool {
	r, _ := utf8.DecodeRuneInString(s)
	return s == "" || unicode.IsSpace(r)
}
