package tts

import (
	"fmt"
	"unicode"
	"unicode/utf8"
)

// Streaming sentence splitter: turns the answer text, as the model streams it,
// into segments that are each sent as one text_chunk and synthesized as one TTS
// call. Rules (SPEC §3 step 6; fixes protocol.md §13 items 1, 5, 6):
//
//   - Segments are the display text exactly as written. Only the whitespace
//     between segments is dropped; nothing inside a segment is re-joined,
//     cleaned or normalized. Concatenating all segments gives the input minus
//     that whitespace.
//   - A sentence ends after any run of . ! ? … ‼ (so "...", "?!", "!!" end
//     sentences) followed by whitespace, or after 。！？｡؟۔।॥։። with nothing
//     required after them, or at a line break that follows text ("\n\n" and
//     a single "\n" alike, so list items and headings are their own
//     sentences). Closing quotes, brackets and markdown emphasis right after
//     the ender belong to the sentence (He said "hi."), and a lower-case word
//     after them continues it («Good bye!» and smiled). Emoji right after the
//     ender belong to the sentence too ("Great job! 🎉"), so no segment is
//     emoji only.
//   - A boundary is committed only when the next rune (for ". " the next
//     non-space rune) has been seen, so "5." + "30" or "e." + "g." never split
//     and the result does not depend on how the text is cut into deltas, down
//     to single bytes. A dot followed directly by a letter or digit never
//     splits: "Hi.There" (decided: LLMs write "Hi. There"; the rule protects
//     "main.py", "v1.2.3", "192.168.1.1", "example.com", "Node.js").
//   - Abbreviation guard for a lone "." (see abbrevKind): titles (Mr., Dr.,
//     St., ул., г. …) never end a sentence; e.g./etc./a.m./т.е./и т.д. end one
//     only before an upper-case word; No./стр. not before a digit; single
//     letters ("J. K. Rowling") not before a letter; "1. Item" at the start of
//     a line is a list marker, not a sentence.
//   - A sentence is emitted once the pending text has at least MinWords words
//     (FirstMinWords for the first segment) or MinChars runes; shorter
//     sentences are held and merged with the next one. Flush emits whatever is
//     left, however short ("Ok." is spoken). A word is a whitespace-delimited
//     token holding a letter or digit ("I'm", "5:30", "v1.2.3" count one);
//     in Chinese and Japanese every two Han/kana characters count one word.
//   - Pending text longer than MaxChars runes is cut at the last clause mark
//     (, ; : dash ! ? and CJK 、，；：) in its last two thirds, else at the last
//     space, else hard (never inside a grapheme's extending runes), so a long
//     unpunctuated answer starts speaking early and the buffer stays bounded.
//
// Each byte is scanned once; a cut rescans at most MaxChars runes, so a whole
// answer costs O(len(answer)).

// SplitterConfig tunes segment sizes. Zero fields take the defaults.
type SplitterConfig struct {
	FirstMinWords int // min words of the first segment (default 2)
	MinWords      int // min words of later segments (default 3)
	MinChars      int // a segment this many runes long is emitted regardless of words (default 15)
	MaxChars      int // pending text longer than this many runes is cut at a clause boundary (default 250)
}

const (
	defaultFirstMinWords = 2
	defaultMinWords      = 3
	defaultMinChars      = 15
	defaultMaxChars      = 250
	// minMaxChars keeps cuts meaningful: a third of it is the shortest clause cut.
	minMaxChars = 40
	// runSlack bounds how far a cut may wait for an ender run to resolve.
	runSlack = 32
)

// DefaultSplitterConfig returns the defaults: 2 / 3 words, 15 runes, cut at 250 runes.
func DefaultSplitterConfig() SplitterConfig {
	return SplitterConfig{
		FirstMinWords: defaultFirstMinWords,
		MinWords:      defaultMinWords,
		MinChars:      defaultMinChars,
		MaxChars:      defaultMaxChars,
	}
}

// Validate reports a configuration error with the field name; zero means default.
func (c SplitterConfig) Validate() error {
	if c.FirstMinWords < 0 {
		return fmt.Errorf("tts splitter: FirstMinWords must be >= 0 (0 = default %d), got %d", defaultFirstMinWords, c.FirstMinWords)
	}
	if c.MinWords < 0 {
		return fmt.Errorf("tts splitter: MinWords must be >= 0 (0 = default %d), got %d", defaultMinWords, c.MinWords)
	}
	if c.MinChars < 0 {
		return fmt.Errorf("tts splitter: MinChars must be >= 0 (0 = default %d), got %d", defaultMinChars, c.MinChars)
	}
	if c.MaxChars != 0 && c.MaxChars < minMaxChars {
		return fmt.Errorf("tts splitter: MaxChars must be 0 (default %d) or >= %d, got %d", defaultMaxChars, minMaxChars, c.MaxChars)
	}
	maxChars := c.MaxChars
	if maxChars == 0 {
		maxChars = defaultMaxChars
	}
	if c.MinChars > maxChars {
		return fmt.Errorf("tts splitter: MinChars (%d) must not exceed MaxChars (%d)", c.MinChars, maxChars)
	}
	return nil
}

// withDefaults fills zero or negative fields with defaults and clamps MaxChars.
func (c SplitterConfig) withDefaults() SplitterConfig {
	d := DefaultSplitterConfig()
	if c.FirstMinWords <= 0 {
		c.FirstMinWords = d.FirstMinWords
	}
	if c.MinWords <= 0 {
		c.MinWords = d.MinWords
	}
	if c.MinChars <= 0 {
		c.MinChars = d.MinChars
	}
	if c.MaxChars <= 0 {
		c.MaxChars = d.MaxChars
	}
	c.MaxChars = max(c.MaxChars, minMaxChars, c.MinChars)
	return c
}

// scanState is where the scanner is relative to a possible sentence end.
type scanState uint8

const (
	stText   scanState = iota // ordinary text
	stEnder                   // inside a run of sentence enders
	stCloser                  // inside closing quotes/brackets after the run
	stAwait                   // ". " seen: waiting for the next non-space rune
	stEmoji                   // emoji right after the run, before the next word
)

// Splitter cuts a streamed answer into speakable segments. Not safe for
// concurrent use; one per answer (it may be reused after Flush).
type Splitter struct {
	cfg     SplitterConfig
	buf     []byte   // unconsumed text; offsets below index into it
	pos     int      // next byte to scan
	emitted bool     // a segment was emitted (first-segment threshold done)
	out     []string // segments completed during this Push/Flush

	// The pending segment: buf[segStart:lastEnd]; segStart < 0 means none yet.
	segStart  int
	words     int // words since segStart
	runes     int // runes since segStart, whitespace included
	lastEnd   int // byte offset just after the last non-space rune
	lastWords int // words up to lastEnd
	lastRunes int // runes up to lastEnd
	committed int // last boundary already judged (held or emitted)

	// The current whitespace-delimited token.
	inTok        bool
	tokCounted   bool // a non-CJK word was counted for this token
	cjkRun       int  // consecutive CJK runes (two count as one word)
	tokStart     int
	tokLineStart bool // the token is the first on its line
	lineStart    bool // no token yet on the current line

	// The ender run that may end a sentence.
	st        scanState
	endStart  int  // offset of the run's first rune
	endLen    int  // runes in the run
	endDots   int  // '.' runes in the run
	endStrong bool // the run holds an ender that needs no space after it
	closers   bool // closers follow the run
	spaced    bool // whitespace seen after the run
	cand      boundary
	// The token holding the run, for the abbreviation guard.
	candTok     int
	candTokLine bool
}

// boundary is a possible segment end with the counts up to it.
type boundary struct{ end, words, runes int }

// NewSplitter returns a splitter. It never fails: zero or negative fields take
// the defaults and MaxChars is raised to at least 40 and MinChars; use
// Validate to reject such values when loading configuration.
func NewSplitter(cfg SplitterConfig) *Splitter {
	s := &Splitter{cfg: cfg.withDefaults()}
	s.reset()
	return s
}

// Push adds text exactly as the model streamed it (any chunking, even inside a
// word or a UTF-8 sequence) and returns the segments that became complete.
func (s *Splitter) Push(text string) []string {
	s.buf = append(s.buf, text...)
	s.scan(false)
	s.compact()
	out := s.out
	s.out = nil
	return out
}

// Flush ends the answer and returns everything left, however short; the
// splitter is then empty and may be reused for a new answer.
func (s *Splitter) Flush() []string {
	s.scan(true)
	if s.segStart >= 0 {
		s.emit(boundary{s.lastEnd, s.lastWords, s.lastRunes})
	}
	out := s.out
	s.out = nil
	s.buf = s.buf[:0]
	s.emitted = false
	s.reset()
	return out
}

// reset clears the scan state for a new answer (buf and emitted are kept).
func (s *Splitter) reset() {
	s.pos = 0
	s.committed = 0
	s.st = stText
	s.lineStart = true
	s.clearSegment()
}

// clearSegment starts a new, still empty, pending segment.
func (s *Splitter) clearSegment() {
	s.segStart = -1
	s.words, s.runes = 0, 0
	s.lastEnd, s.lastWords, s.lastRunes = 0, 0, 0
	s.inTok, s.tokCounted, s.cjkRun = false, false, 0
}

// scan consumes complete runes; at the end of the answer (final) a truncated
// UTF-8 sequence is taken as it is (one error rune per byte).
func (s *Splitter) scan(final bool) {
	for s.pos < len(s.buf) {
		rest := s.buf[s.pos:]
		if !final && !utf8.FullRune(rest) {
			return
		}
		r, n := utf8.DecodeRune(rest)
		s.step(r, s.pos, n)
		s.pos += n
	}
}

// step handles one rune at offset at: boundaries it resolves, cuts, counting.
func (s *Splitter) step(r rune, at, size int) {
	inRun := s.advance(r, at)
	if isLineBreak(r) {
		// A line break after text ends the sentence, abbreviation or not.
		s.st = stText
		s.commit(boundary{s.lastEnd, s.lastWords, s.lastRunes})
	}
	if s.segStart >= 0 && s.runes >= s.cfg.MaxChars && (s.st == stText || s.runes >= s.cfg.MaxChars+runSlack) {
		// Inside an ender run or before the rune that resolves it, wait a
		// little: the sentence end is a better cut than any clause mark.
		s.cut(at)
		inRun = false
	}
	s.count(r, at, size)
	if !inRun && isEnder(r) {
		s.startRun(r, at)
	}
}

// startRun begins a run of sentence enders at offset at.
func (s *Splitter) startRun(r rune, at int) {
	s.st = stEnder
	s.endStart = at
	s.endLen, s.endDots = 0, 0
	s.endStrong, s.closers = false, false
	s.noteEnder(r)
}

func (s *Splitter) noteEnder(r rune) {
	s.endLen++
	if r == '.' {
		s.endDots++
	}
	if isStrongEnder(r) {
		s.endStrong = true
	}
}

// advance feeds r (not yet counted) to the ender state machine and reports
// whether r continues the current ender/closer/emoji run.
func (s *Splitter) advance(r rune, at int) bool {
	switch s.st {
	case stText:
		return false
	case stEnder:
		if isEnder(r) {
			s.noteEnder(r)
			return true
		}
		if isCloser(r) {
			s.st, s.closers = stCloser, true
			return true
		}
		return s.runEnded(r, at)
	case stCloser:
		if isCloser(r) {
			return true
		}
		if isEnder(r) {
			s.startRun(r, at)
			return true
		}
		return s.runEnded(r, at)
	case stAwait:
		if unicode.IsSpace(r) {
			return false
		}
		if isEmojiStart(r) {
			s.st = stEmoji
			return true
		}
		s.st = stText
		s.resolve(r)
		return false
	case stEmoji:
		if isEmojiStart(r) || isEmojiPart(r) {
			return true
		}
		// Emoji right after a sentence belong to it ("Great job! 🎉").
		s.cand.end, s.cand.words, s.cand.runes = at, s.words, s.runes
		if unicode.IsSpace(r) {
			s.st, s.spaced = stAwait, true
			return false
		}
		s.st = stText
		if s.spaced || s.endStrong {
			s.resolve(r)
		}
	}
	return false
}

// runEnded handles r, the first rune after an ender run and its closers.
func (s *Splitter) runEnded(r rune, at int) bool {
	s.cand = boundary{at, s.words, s.runes}
	s.candTok, s.candTokLine, s.spaced = s.tokStart, s.tokLineStart, false
	switch {
	case isEmojiStart(r):
		s.st = stEmoji
		return true
	case unicode.IsSpace(r):
		s.st, s.spaced = stAwait, true
	case s.endStrong:
		s.st = stText
		s.resolve(r)
	default:
		s.st = stText // "Hi.There", "5.3": a dot inside a word
	}
	return false
}

// resolve commits the candidate boundary unless next shows it is not one.
func (s *Splitter) resolve(next rune) {
	if !s.guarded(next) {
		s.commit(s.cand)
	}
}

// commit judges a sentence boundary: emit the pending text up to b, or hold it
// to merge with the next sentence when it is still too short.
func (s *Splitter) commit(b boundary) {
	if s.segStart < 0 || b.end <= s.committed || b.end <= s.segStart {
		return
	}
	s.committed = b.end
	minWords := s.cfg.MinWords
	if !s.emitted {
		minWords = s.cfg.FirstMinWords
	}
	if b.words < minWords && b.runes < s.cfg.MinChars {
		return
	}
	s.emit(b)
}

// emit outputs buf[segStart:b.end]; only whitespace may follow b.end up to
// the scan position, so the next segment starts fresh.
func (s *Splitter) emit(b boundary) {
	s.out = append(s.out, string(s.buf[s.segStart:b.end]))
	s.emitted = true
	s.committed = max(s.committed, b.end)
	s.clearSegment()
}

// count updates the word, rune and token counters with r at offset at.
func (s *Splitter) count(r rune, at, size int) {
	if unicode.IsSpace(r) {
		if s.segStart >= 0 {
			s.runes++
		}
		s.inTok, s.tokCounted, s.cjkRun = false, false, 0
		if isLineBreak(r) {
			s.lineStart = true
		}
		return
	}
	if s.segStart < 0 {
		s.segStart = at
	}
	if !s.inTok {
		s.inTok, s.tokCounted = true, false
		s.tokStart, s.tokLineStart = at, s.lineStart
		s.lineStart = false
	}
	s.runes++
	switch {
	case isCJK(r):
		// Chinese/Japanese words average about two characters.
		if s.cjkRun%2 == 0 {
			s.words++
		}
		s.cjkRun++
		s.tokCounted = false
	case unicode.IsLetter(r) || unicode.IsNumber(r):
		s.cjkRun = 0
		if !s.tokCounted {
			s.words++
			s.tokCounted = true
		}
	default:
		s.cjkRun = 0
	}
	s.lastEnd, s.lastWords, s.lastRunes = at+size, s.words, s.runes
}

// cut emits the pending text (which reached MaxChars runes before offset at)
// up to its best break and rescans the rest.
func (s *Splitter) cut(at int) {
	end := s.bestCut(at)
	s.st = stText
	s.out = append(s.out, string(s.buf[s.segStart:end]))
	s.emitted = true
	s.committed = end
	s.clearSegment()
	s.lineStart = false
	for i := end; i < at; {
		r, n := utf8.DecodeRune(s.buf[i:at])
		s.count(r, i, n)
		i += n
	}
}

// bestCut picks where to cut buf[segStart:at]: the last clause mark at or
// after a third of MaxChars, else the last space, else a hard cut.
func (s *Splitter) bestCut(at int) int {
	minIdx := s.cfg.MaxChars / 3
	clause, space := -1, -1
	var prev, prev2 rune = ' ', ' '
	idx := 0 // runes before offset i
	for i := s.segStart; i < at; {
		r, n := utf8.DecodeRune(s.buf[i:at])
		if unicode.IsSpace(r) && !unicode.IsSpace(prev) {
			space = i
			if idx >= minIdx && isClauseMark(prev, prev2) {
				clause = i
			}
		}
		if idx+1 >= minIdx && isCJKClauseMark(r) {
			clause = i + n
		}
		prev2, prev = prev, r
		idx++
		i += n
	}
	switch {
	case clause > s.segStart:
		return clause
	case space > s.segStart:
		return space
	}
	return s.hardCut(at)
}

// hardCut backs off from at so no combining mark, variation selector, skin
// tone or ZWJ-joined rune is separated from its base.
func (s *Splitter) hardCut(at int) int {
	for end := at; end > s.segStart; {
		r, _ := utf8.DecodeRune(s.buf[end:])
		p, n := utf8.DecodeLastRune(s.buf[s.segStart:end])
		if !isExtender(r) && p != zwj {
			return end
		}
		end -= n
	}
	return at
}

// prevTokenIsNumber reports whether the token before the candidate's is all digits.
func (s *Splitter) prevTokenIsNumber() bool {
	lo := max(s.segStart, 0)
	i := s.candTok
	for i > lo && (s.buf[i-1] == ' ' || s.buf[i-1] == '\t') {
		i--
	}
	j := i
	for j > lo && s.buf[j-1] >= '0' && s.buf[j-1] <= '9' {
		j--
	}
	return j < i && (j == lo || s.buf[j-1] == ' ' || s.buf[j-1] == '\t' || s.buf[j-1] == '(')
}

// guarded reports whether the candidate boundary is not a sentence end,
// given the next non-space rune.
func (s *Splitter) guarded(next rune) bool {
	if s.closers {
		// «Good bye!» and smiled. / “你好。”他说。
		return unicode.IsLower(next) || s.endStrong && isCJK(next)
	}
	if s.endStrong || s.endLen != 1 || s.endDots != 1 {
		return false // "...", "?", "!" always end a sentence
	}
	tok := trimOpeners(s.buf[s.candTok:s.endStart])
	if len(tok) == 0 {
		return false
	}
	if s.candTokLine && len(tok) <= 3 && allASCIIDigits(tok) {
		return true // "1. Item": an ordered-list marker
	}
	word := trailingWord(tok)
	switch abbrevKind(word) {
	case abbrTitle:
		// "г." after a number is "год" (year), which ends sentences: "в 2010 г. Мне";
		// elsewhere it is "город" (city), a title: "г. Москва".
		if string(word) == "г" && s.prevTokenIsNumber() {
			return unicode.IsLower(next) || unicode.IsDigit(next)
		}
		return true
	case abbrNumber:
		return unicode.IsDigit(next)
	case abbrMid:
		return unicode.IsLower(next) || unicode.IsDigit(next)
	case abbrInitial:
		// Only a letter standing alone is an initial ("J. K. Rowling"), not
		// the end of a longer token ("-9°C. Wear a coat").
		return unicode.IsLetter(next) && len(word) == len(tok)
	}
	return false
}

// compact drops consumed bytes once they are at least half the buffer, so
// copying stays amortized O(1) per input byte.
func (s *Splitter) compact() {
	base := s.pos
	if s.segStart >= 0 {
		base = s.segStart
	}
	if base == 0 || base < len(s.buf)-base {
		return
	}
	n := copy(s.buf, s.buf[base:])
	s.buf = s.buf[:n]
	s.pos -= base
	s.committed -= base
	if s.segStart >= 0 {
		s.segStart -= base
		s.lastEnd -= base
		s.tokStart -= base
		s.endStart -= base
		s.candTok -= base
		s.cand.end -= base
	}
}

const zwj = '\u200d'

// isEnder reports sentence-ending punctuation.
func isEnder(r rune) bool {
	switch r {
	case '.', '!', '?', '…', '‼', '⁇', '⁈', '⁉':
		return true
	}
	return isStrongEnder(r)
}

// isStrongEnder reports enders of scripts that need no space after them.
func isStrongEnder(r rune) bool {
	switch r {
	case '。', '！', '？', '｡', '؟', '۔', '।', '॥', '։', '።':
		return true
	}
	return false
}

// isCloser reports closing quotes, brackets and emphasis that belong to the
// sentence they follow.
func isCloser(r rune) bool {
	switch r {
	case '"', '\'', '”', '’', '»', '›', ')', ']', '}', '*', '_',
		'」', '』', '）', '］', '｝', '】', '〉', '》', '〕', '〗', '〙', '〛', '〞', '＂', '＇':
		return true
	}
	return false
}

// isLineBreak reports runes that end a line.
func isLineBreak(r rune) bool {
	switch r {
	case '\n', '\r', '\v', '\f', 0x85, 0x2028, 0x2029:
		return true
	}
	return false
}

// isClauseMark reports a rune (prev, preceded by prev2) after which a long
// sentence may be cut when whitespace follows.
func isClauseMark(prev, prev2 rune) bool {
	switch prev {
	case ',', ';', ':', '—', '–', '!', '?', '…', '‼', '⁇', '⁈', '⁉', '،', '؛':
		return true
	case '-':
		return unicode.IsSpace(prev2) // " - " used as a dash
	}
	return false
}

// isCJKClauseMark reports CJK clause marks, which need no space after them.
func isCJKClauseMark(r rune) bool {
	switch r {
	case '，', '、', '；', '：', '､':
		return true
	}
	return false
}

// isCJK reports Han, Hiragana and Katakana, written without spaces.
func isCJK(r rune) bool {
	return r >= 0x3040 && (unicode.Is(unicode.Han, r) || unicode.Is(unicode.Hiragana, r) || unicode.Is(unicode.Katakana, r))
}

// isEmojiStart reports emoji that may stand after a sentence (not box
// drawing or geometric shapes, which start list items).
func isEmojiStart(r rune) bool {
	return isPictograph(r) && (r < 0x2500 || r > 0x25FF)
}

// isEmojiPart reports runes that continue an emoji sequence.
func isEmojiPart(r rune) bool {
	return r == zwj || r == vs15 || r == vs16 || r == keycapMrk || (r >= 0xE0020 && r <= 0xE007F)
}

// isExtender reports runes that extend the previous grapheme.
func isExtender(r rune) bool {
	return r == zwj || unicode.Is(unicode.Mn, r) || unicode.Is(unicode.Me, r) || unicode.Is(unicode.Mc, r) ||
		(r >= 0xFE00 && r <= 0xFE0F) || (r >= 0x1F3FB && r <= 0x1F3FF) || (r >= 0xE0020 && r <= 0xE007F)
}

// abbr classifies a word that may precede a non-final ". ".
type abbr uint8

const (
	abbrNone    abbr = iota
	abbrTitle        // never ends a sentence: "Dr. Smith", "ул. Ленина"
	abbrMid          // ends one only before an upper-case word: "etc. and", "p.m. today"
	abbrNumber       // not before a digit: "No. 5", "стр. 12"
	abbrInitial      // a single letter, not before a letter: "J. K. Rowling"
)

// abbreviations maps lower-case words (without the final dot) to their kind.
var abbreviations = map[string]abbr{
	// English titles and name prefixes.
	"mr": abbrTitle, "mrs": abbrTitle, "ms": abbrTitle, "dr": abbrTitle, "prof": abbrTitle,
	"st": abbrTitle, "vs": abbrTitle, "mt": abbrTitle, "rev": abbrTitle, "gen": abbrTitle,
	"col": abbrTitle, "capt": abbrTitle, "lt": abbrTitle, "sgt": abbrTitle, "sen": abbrTitle,
	"rep": abbrTitle, "gov": abbrTitle, "hon": abbrTitle, "pres": abbrTitle, "messrs": abbrTitle,
	"cf": abbrTitle, "viz": abbrTitle,
	// English words that usually sit mid-sentence.
	"etc": abbrMid, "e.g": abbrMid, "i.e": abbrMid, "a.m": abbrMid, "p.m": abbrMid,
	"inc": abbrMid, "ltd": abbrMid, "co": abbrMid, "corp": abbrMid, "llc": abbrMid,
	"jr": abbrMid, "sr": abbrMid, "al": abbrMid, "approx": abbrMid, "dept": abbrMid,
	"est": abbrMid, "misc": abbrMid, "ft": abbrMid, "min": abbrMid, "hrs": abbrMid,
	"mins": abbrMid, "oz": abbrMid, "lb": abbrMid, "lbs": abbrMid,
	// English words before numbers.
	"no": abbrNumber, "nos": abbrNumber, "nr": abbrNumber, "vol": abbrNumber, "pp": abbrNumber,
	"ch": abbrNumber, "art": abbrNumber, "sec": abbrNumber, "fig": abbrNumber, "ed": abbrNumber,
	// Russian.
	"ул": abbrTitle, "им": abbrTitle, "г": abbrTitle, "см": abbrTitle, "рис": abbrTitle,
	"проф": abbrTitle, "акад": abbrTitle, "доц": abbrTitle, "ср": abbrTitle, "напр": abbrTitle,
	"пос": abbrTitle, "обл": abbrTitle, "ст": abbrTitle, "пер": abbrTitle, "просп": abbrTitle,
	"т.е": abbrMid, "т.д": abbrMid, "т.п": abbrMid, "т.к": abbrMid, "др": abbrMid,
	"пр": abbrMid, "гг": abbrMid, "тыс": abbrMid, "млн": abbrMid, "млрд": abbrMid,
	"руб": abbrMid, "коп": abbrMid, "мин": abbrMid, "сек": abbrMid, "мес": abbrMid,
	"стр": abbrNumber, "тел": abbrNumber, "кв": abbrNumber, "гл": abbrNumber, "вып": abbrNumber,
}

// maxAbbrevBytes bounds the lower-casing buffer; longer words are never listed.
const maxAbbrevBytes = 16

// abbrevKind classifies word (letters, digits and dots before the final dot).
func abbrevKind(word []byte) abbr {
	if len(word) == 0 || len(word) > maxAbbrevBytes {
		return abbrNone
	}
	var low [maxAbbrevBytes + 8]byte
	n, letters := 0, 0
	for i := 0; i < len(word); {
		r, size := utf8.DecodeRune(word[i:])
		i += size
		if unicode.IsLetter(r) {
			letters++
		}
		n += utf8.EncodeRune(low[n:], unicode.ToLower(r))
		if n > maxAbbrevBytes {
			return abbrNone
		}
	}
	if k, ok := abbreviations[string(low[:n])]; ok {
		return k
	}
	if letters == 1 && utf8.RuneCount(word) == 1 {
		return abbrInitial
	}
	if isDottedLetters(low[:n]) {
		return abbrMid // "u.s", "т.е", "a.k.a": single letters joined by dots
	}
	return abbrNone
}

// isDottedLetters reports words like "e.g" or "a.k.a": single letters
// separated by single dots, at least two of them.
func isDottedLetters(w []byte) bool {
	letters, wantLetter := 0, true
	for i := 0; i < len(w); {
		r, n := utf8.DecodeRune(w[i:])
		i += n
		if wantLetter != unicode.IsLetter(r) || (!wantLetter && r != '.') {
			return false
		}
		if wantLetter {
			letters++
		}
		wantLetter = !wantLetter
	}
	return letters >= 2 && !wantLetter
}

// trimOpeners drops opening quotes, brackets and emphasis from a token's start.
func trimOpeners(tok []byte) []byte {
	for len(tok) > 0 {
		r, n := utf8.DecodeRune(tok)
		switch r {
		case '"', '\'', '“', '‘', '„', '«', '‹', '(', '[', '{', '*', '_', '¿', '¡',
			'「', '『', '（', '［', '【', '〈', '《':
			tok = tok[n:]
			continue
		}
		return tok
	}
	return tok
}

// trailingWord returns the longest suffix of tok made of letters, marks,
// digits and inner dots: "(Dr" → "Dr", "5:30 p.m" → "p.m".
func trailingWord(tok []byte) []byte {
	i := len(tok)
	for i > 0 {
		r, n := utf8.DecodeLastRune(tok[:i])
		if !(unicode.IsLetter(r) || unicode.IsDigit(r) || unicode.IsMark(r) || r == '.') {
			break
		}
		i -= n
	}
	for i < len(tok) && tok[i] == '.' {
		i++
	}
	return tok[i:]
}

// allASCIIDigits reports a non-empty run of 0-9.
func allASCIIDigits(b []byte) bool {
	for _, c := range b {
		if c < '0' || c > '9' {
			return false
		}
	}
	return len(b) > 0
}
