package llm

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"unicode/utf16"
	"unicode/utf8"
)

// The model is asked for one JSON object {"text": "...", "command": "...",
// "args": {...}}, but models wrap it in code fences, put prose in front of it,
// or answer in plain text. ReplyParser turns the raw deltas into spoken text as
// they arrive and decodes the command once the stream has ended.
//
// Decisions (documented because they are policy, not mechanics):
//
//   - Leading whitespace is never spoken. A run of three or more backticks is a
//     code fence and is never spoken, wherever it appears in plain text; nor is
//     its info string ("json", "JSON", ...) when that is followed by a newline or
//     by "{". A fence inside a JSON string is ordinary string content.
//   - Every "{" outside a JSON object starts an object *attempt*: the bytes are
//     tokenized and held, nothing is spoken yet. The attempt becomes the reply
//     (is "committed") as soon as a top-level key is one of text, command, args
//     or session_id. From then on the top-level "text" string streams out as it
//     is decoded. An attempt that hits a syntax error, closes without such a key,
//     grows past MaxReplyBytes or is cut by the end of stream was not a reply:
//     its bytes are spoken as plain text (fences still dropped) and plain-text
//     mode resumes. So "Sure! {"text":"Hi"}" speaks "Sure! " and then "Hi", and
//     "use {braces} here" is spoken as written.
//   - Only the first committed object is the reply. Everything after it (a
//     closing fence, chatter, a second object) is ignored.
//   - Only the first top-level "text" key counts; a null or non-string value is
//     empty text. A "text" key nested in args or anywhere deeper is never spoken.
//   - Text-string decoding is lenient so that speech never stops mid-answer: an
//     unknown escape "\x" yields "x", a bad \u escape and a lone surrogate yield
//     U+FFFD, raw control characters pass through, invalid UTF-8 becomes U+FFFD
//     (per byte, as encoding/json does). Valid JSON decodes exactly as
//     encoding/json decodes it. Command and args are decoded strictly, with
//     encoding/json, from the exact bytes of the object.
//   - If the object is syntactically broken (or truncated) and no top-level
//     "text" value was found, the raw object is spoken instead (minus fences),
//     rather than losing the answer. If text was found it is kept and the
//     failure is reported in Reply.Err.
//   - Each Feed result is valid UTF-8: an incomplete multi-byte sequence at the
//     end of a delta is held until the next delta (or Finish).

// MaxReplyBytes bounds the bytes of a JSON reply kept for decoding command and
// args. Past it the text still streams, but the command is not parsed.
const MaxReplyBytes = 256 << 10

// MaxSpokenBytes bounds Reply.Text; the speech itself (Feed results) is never cut.
const MaxSpokenBytes = 1 << 20

const (
	maxNesting  = 10000 // encoding/json's own limit, so valid JSON is never refused
	maxFenceTag = 32    // info string plus spaces held after a fence
	maxKeyLen   = 16    // longer top-level keys cannot be one of ours
)

// Reply is the outcome of one model answer.
type Reply struct {
	Text    string         // the whole spoken text (capped at MaxSpokenBytes)
	Command string         // command as the model wrote it; "" when none or when Err != nil
	Args    map[string]any // the command's args, numbers as json.Number; nil when none
	JSON    bool           // the reply was a JSON object (false for plain text and the raw fallback)
	Err     error          // why command/args could not be parsed, if they could not
}

type parseMode uint8

const (
	modePlain   parseMode = iota // plain text, fences dropped
	modeObject                   // inside a JSON object (attempt or committed reply)
	modeTrailer                  // after the reply object: ignored
)

type tokState uint8

const (
	tsKeyOrClose   tokState = iota // after '{'
	tsKey                          // after ',' in an object
	tsColon                        // after a key
	tsValue                        // after ':' or ',' in an array
	tsValueOrClose                 // after '['
	tsAfterValue                   // after a value
	tsString
	tsNumber
	tsLiteral
	tsDone
	tsError
)

type escState uint8

const (
	escNone          escState = iota
	escBackslash              // after '\'
	escHex                    // inside \uXXXX
	escHigh                   // a high surrogate is pending, expecting '\'
	escHighBackslash          // a high surrogate is pending, got '\', expecting 'u'
)

type sinkKind uint8

const (
	sinkNone sinkKind = iota
	sinkKey           // a top-level key: decoded into key
	sinkText          // the top-level "text" value: decoded into speech
)

// tokenizer is an incremental JSON object tokenizer that tracks nesting and
// decodes the strings that matter (top-level keys and the top-level text).
type tokenizer struct {
	state   tokState
	stack   []byte // '{' or '[' per open container
	isKey   bool   // the current string is an object key
	sink    sinkKind
	esc     escState
	hex     rune // \u accumulator
	hexN    int
	high    rune // pending high surrogate
	key     []byte
	keyLong bool
	curKey  string // last top-level key
	lit     string // literal being matched (true/false/null)
	litPos  int
	pos     int // bytes consumed, for error messages
	err     error
}

// ReplyParser incrementally turns a model's raw reply into spoken text and,
// at the end, one optional command. It is not safe for concurrent use.
type ReplyParser struct {
	mode parseMode

	// Output: pend holds decoded bytes not yet checked as UTF-8, ready the
	// sanitized bytes for the caller, spoken everything returned so far.
	pend, ready []byte
	spoken      strings.Builder
	started     bool // something was spoken: leading whitespace is no longer skipped

	// Plain-text state.
	ticks int    // held run of backticks
	inTag bool   // after a fence: collecting its info string
	tag   []byte // held info string (and horizontal space)

	// Object state.
	raw       []byte
	overflow  bool
	committed bool
	textSeen  bool
	tok       tokenizer

	finished bool
	reply    Reply
}

// NewReplyParser returns a parser for one reply.
func NewReplyParser() *ReplyParser {
	return &ReplyParser{}
}

// Feed consumes one raw delta exactly as the provider sent it and returns the
// newly available spoken characters (possibly "").
func (p *ReplyParser) Feed(delta string) string {
	if p.finished {
		return ""
	}
	for i := 0; i < len(delta); {
		i += p.consume(delta[i:])
	}
	p.flushPend(false)
	return p.takeReady()
}

// Finish ends the stream. rest is spoken text not returned by Feed yet; r
// describes the whole reply. Calling Finish again returns "" and the same r.
func (p *ReplyParser) Finish() (rest string, r Reply) {
	if p.finished {
		return "", p.reply
	}
	p.finished = true
	switch {
	case p.mode == modeObject && !p.committed:
		p.abort()
		p.finishPlain()
	case p.mode == modePlain:
		p.finishPlain()
	default:
		p.finishObject()
	}
	p.flushPend(true)
	rest = p.takeReady()
	p.reply.Text = p.spoken.String()
	return rest, p.reply
}

// consume handles a prefix of s and returns how many bytes it used (≥ 1).
// Long runs (plain text, string contents) are handled in one step.
func (p *ReplyParser) consume(s string) int {
	switch p.mode {
	case modeTrailer:
		return len(s)
	case modeObject:
		if p.committed && p.tok.state == tsString && p.tok.esc == escNone {
			n := strings.IndexAny(s, "\"\\")
			if n < 0 {
				n = len(s)
			}
			if !p.overflow {
				n = min(n, MaxReplyBytes-len(p.raw))
			}
			if n > 0 {
				if !p.overflow {
					p.raw = append(p.raw, s[:n]...)
				}
				p.tok.pos += n
				if p.tok.sink == sinkText {
					p.pend = append(p.pend, s[:n]...)
				} else if p.tok.sink == sinkKey {
					p.keyBytes(s[:n])
				}
				return n
			}
		}
		p.objectByte(s[0])
		return 1
	default:
		if p.started && p.ticks == 0 && !p.inTag {
			n := strings.IndexAny(s, "`{")
			if n < 0 {
				n = len(s)
			}
			if n > 0 {
				p.pend = append(p.pend, s[:n]...)
				return n
			}
		}
		p.plainByte(s[0], true)
		return 1
	}
}

// ---- plain text ----

func isJSONSpace(b byte) bool { return b == ' ' || b == '\t' || b == '\n' || b == '\r' }

func isTagByte(b byte) bool {
	return b >= 'a' && b <= 'z' || b >= 'A' && b <= 'Z' || b >= '0' && b <= '9' ||
		b == '_' || b == '-' || b == '+' || b == '.' || b == '#'
}

// plainByte handles one byte of plain text. detect says whether "{" may start
// an object attempt (false while re-speaking the bytes of a failed attempt).
func (p *ReplyParser) plainByte(b byte, detect bool) {
	if p.inTag && p.tagByte(b) {
		return
	}
	if b == '`' {
		p.ticks++
		return
	}
	if p.ticks > 0 {
		if p.ticks >= 3 {
			p.ticks, p.inTag, p.tag = 0, true, p.tag[:0]
			p.plainByte(b, detect)
			return
		}
		for ; p.ticks > 0; p.ticks-- {
			p.speak('`')
		}
	}
	if b == '{' && detect {
		p.startObject()
		return
	}
	p.speak(b)
}

// tagByte handles b while the info string after a fence is being collected.
// It reports whether b was used up.
func (p *ReplyParser) tagByte(b byte) bool {
	// A space may precede the tag ("``` json") but not split it.
	word := bytes.TrimLeft(p.tag, " \t")
	hasSpace := len(word) > 0 && (word[len(word)-1] == ' ' || word[len(word)-1] == '\t')
	switch {
	case len(p.tag) < maxFenceTag && isTagByte(b) && !hasSpace:
		p.tag = append(p.tag, b)
		return true
	case len(p.tag) < maxFenceTag && (b == ' ' || b == '\t'):
		p.tag = append(p.tag, b)
		return true
	case b == '\n' || b == '\r':
		p.inTag, p.tag = false, p.tag[:0] // fence line ends: drop the info string
		return true
	case b == '{':
		p.inTag, p.tag = false, p.tag[:0] // "```json{": the info string is a fence tag
		return false
	}
	// Something else follows: what we held was text after all ("```Hello world").
	p.inTag = false
	for _, c := range p.tag {
		p.speak(c)
	}
	p.tag = p.tag[:0]
	return false
}

// speak queues one byte of spoken text, skipping leading whitespace.
func (p *ReplyParser) speak(b byte) {
	if !p.started {
		if isJSONSpace(b) {
			return
		}
		p.started = true
	}
	p.pend = append(p.pend, b)
}

// finishPlain drops a held fence and its info string and speaks held backticks.
// An info string that started with a space was prose ("Use ``` inline"): spoken.
func (p *ReplyParser) finishPlain() {
	if p.ticks > 0 && p.ticks < 3 {
		for ; p.ticks > 0; p.ticks-- {
			p.speak('`')
		}
	}
	if p.inTag && len(p.tag) > 0 && (p.tag[0] == ' ' || p.tag[0] == '\t') {
		for _, c := range p.tag {
			p.speak(c)
		}
	}
	p.ticks, p.inTag, p.tag = 0, false, p.tag[:0]
}

// ---- JSON object ----

func (p *ReplyParser) startObject() {
	p.flushPend(true) // a split rune before "{" must not merge with the text value
	p.mode = modeObject
	p.raw = append(p.raw[:0], '{')
	p.overflow, p.committed, p.textSeen = false, false, false
	p.tok = tokenizer{state: tsKeyOrClose, stack: append(p.tok.stack[:0], '{'), key: p.tok.key[:0], pos: 1}
}

// abort gives up an uncommitted attempt: its bytes are spoken as plain text.
func (p *ReplyParser) abort() {
	raw := append([]byte(nil), p.raw...)
	p.mode = modePlain
	p.raw = p.raw[:0]
	p.speak('{')
	for _, c := range raw[1:] {
		p.plainByte(c, false)
	}
}

// abortObject handles a complete, valid object that is not a reply (a model
// that wrote {"answer": "Paris"}): its string values are spoken, in order,
// instead of its JSON syntax; an object without any is spoken raw.
func (p *ReplyParser) abortObject() {
	text := objectStrings(p.raw)
	if strings.TrimSpace(text) == "" {
		p.abort()
		return
	}
	p.mode = modePlain
	p.raw = p.raw[:0]
	for i := 0; i < len(text); i++ {
		p.plainByte(text[i], false)
	}
}

// objectStrings joins the string values (not keys) of a valid JSON document
// with spaces, in document order.
func objectStrings(raw []byte) string {
	type frame struct{ object, wantKey bool }
	var (
		stack []frame
		parts []string
	)
	dec := json.NewDecoder(bytes.NewReader(raw))
	for {
		tok, err := dec.Token()
		if err != nil {
			return strings.Join(parts, " ")
		}
		if n := len(stack); n > 0 && stack[n-1].object && stack[n-1].wantKey {
			if tok == json.Delim('}') {
				stack = stack[:n-1]
			} else {
				stack[n-1].wantKey = false // tok is the key
			}
			continue
		}
		if n := len(stack); n > 0 && stack[n-1].object {
			stack[n-1].wantKey = true // this token is the value
		}
		switch v := tok.(type) {
		case json.Delim:
			switch v {
			case '{':
				stack = append(stack, frame{object: true, wantKey: true})
			case '[':
				stack = append(stack, frame{})
			default: // ']' (an object's '}' is handled as a key position above)
				stack = stack[:len(stack)-1]
			}
		case string:
			if strings.TrimSpace(v) != "" {
				parts = append(parts, v)
			}
		}
	}
}

func (p *ReplyParser) objectByte(b byte) {
	if !p.committed && len(p.raw) >= MaxReplyBytes {
		p.abort()
		p.plainByte(b, true)
		return
	}
	if len(p.raw) < MaxReplyBytes {
		p.raw = append(p.raw, b)
	} else {
		p.overflow = true
	}
	if p.tok.state == tsError {
		return // committed but broken: keep the raw bytes for the fallback
	}
	p.step(b)
	p.tok.pos++
	switch {
	case p.tok.state == tsError && !p.committed:
		p.abort()
	case p.tok.state == tsDone && !p.committed:
		p.abortObject()
	case p.tok.state == tsDone:
		p.mode = modeTrailer
	}
}

func (p *ReplyParser) fail(b byte) {
	p.tok.state = tsError
	p.tok.err = fmt.Errorf("llm reply: JSON syntax error at byte %d: unexpected %q", p.tok.pos, b)
}

func (p *ReplyParser) step(b byte) {
	t := &p.tok
	switch t.state {
	case tsString:
		p.stringByte(b)
	case tsNumber:
		if b >= '0' && b <= '9' || b == '-' || b == '+' || b == '.' || b == 'e' || b == 'E' {
			return // lenient: encoding/json checks the grammar at the end
		}
		t.state = tsAfterValue
		p.step(b)
	case tsLiteral:
		if b != t.lit[t.litPos] {
			p.fail(b)
			return
		}
		if t.litPos++; t.litPos == len(t.lit) {
			t.state = tsAfterValue
		}
	case tsValue, tsValueOrClose:
		switch {
		case isJSONSpace(b):
		case b == ']' && (t.state == tsValueOrClose || t.stack[len(t.stack)-1] == '['):
			p.closeContainer() // also "[1,]": models write trailing commas (see withoutTrailingCommas)
		default:
			p.startValue(b)
		}
	case tsKeyOrClose, tsKey:
		switch {
		case isJSONSpace(b):
		case b == '"':
			p.startString(true)
		case b == '}':
			p.closeContainer() // "{}" or a trailing comma "{"a":1,}"
		default:
			p.fail(b)
		}
	case tsColon:
		switch {
		case isJSONSpace(b):
		case b == ':':
			t.state = tsValue
		default:
			p.fail(b)
		}
	case tsAfterValue:
		top := t.stack[len(t.stack)-1]
		switch {
		case isJSONSpace(b):
		case b == ',' && top == '{':
			t.state = tsKey
		case b == ',':
			t.state = tsValue
		case b == '}' && top == '{', b == ']' && top == '[':
			p.closeContainer()
		default:
			p.fail(b)
		}
	}
}

func (p *ReplyParser) startValue(b byte) {
	t := &p.tok
	if len(t.stack) == 1 && t.curKey == "text" && !p.textSeen {
		p.textSeen = true // null or a non-string value counts as empty text
		if b == '"' {
			p.startString(false)
			t.sink = sinkText
			return
		}
	}
	switch {
	case b == '"':
		p.startString(false)
	case b == '{' || b == '[':
		if len(t.stack) >= maxNesting {
			p.fail(b)
			t.err = fmt.Errorf("llm reply: JSON nested deeper than %d", maxNesting)
			return
		}
		t.stack = append(t.stack, b)
		t.state = tsKeyOrClose
		if b == '[' {
			t.state = tsValueOrClose
		}
	case b == 't':
		t.state, t.lit, t.litPos = tsLiteral, "true", 1
	case b == 'f':
		t.state, t.lit, t.litPos = tsLiteral, "false", 1
	case b == 'n':
		t.state, t.lit, t.litPos = tsLiteral, "null", 1
	case b == '-' || b >= '0' && b <= '9':
		t.state = tsNumber
	default:
		p.fail(b)
	}
}

func (p *ReplyParser) closeContainer() {
	t := &p.tok
	t.stack = t.stack[:len(t.stack)-1]
	t.state = tsAfterValue
	if len(t.stack) == 0 {
		t.state = tsDone
	}
}

func (p *ReplyParser) startString(isKey bool) {
	t := &p.tok
	t.state, t.isKey, t.esc, t.high, t.sink = tsString, isKey, escNone, 0, sinkNone
	if isKey && len(t.stack) == 1 {
		t.sink, t.key, t.keyLong = sinkKey, t.key[:0], false
	}
}

func (p *ReplyParser) endString() {
	t := &p.tok
	sink := t.sink
	t.sink = sinkNone
	if !t.isKey {
		t.state = tsAfterValue
		if sink == sinkText {
			p.flushPend(true) // the text value is complete: no rune spans its end
		}
		return
	}
	t.state = tsColon
	if sink != sinkKey {
		return
	}
	t.curKey = ""
	if !t.keyLong {
		t.curKey = string(t.key)
	}
	switch t.curKey {
	case "text", "command", "args", "session_id":
		p.committed = true
	}
}

func (p *ReplyParser) keyBytes(s string) {
	t := &p.tok
	if len(t.key)+len(s) > maxKeyLen {
		t.keyLong = true
		return
	}
	t.key = append(t.key, s...)
}

func (p *ReplyParser) sinkByte(b byte) {
	switch p.tok.sink {
	case sinkText:
		p.pend = append(p.pend, b)
	case sinkKey:
		p.keyBytes(string(b))
	}
}

func (p *ReplyParser) sinkRune(r rune) {
	switch p.tok.sink {
	case sinkText:
		p.pend = utf8.AppendRune(p.pend, r)
	case sinkKey:
		p.keyBytes(string(r))
	}
}

func hexVal(b byte) rune {
	switch {
	case b >= '0' && b <= '9':
		return rune(b - '0')
	case b >= 'a' && b <= 'f':
		return rune(b-'a') + 10
	case b >= 'A' && b <= 'F':
		return rune(b-'A') + 10
	}
	return -1
}

// stringByte decodes one byte inside a string, escapes split anywhere.
func (p *ReplyParser) stringByte(b byte) {
	t := &p.tok
	switch t.esc {
	case escNone:
		switch b {
		case '"':
			p.endString()
		case '\\':
			t.esc = escBackslash
		default:
			p.sinkByte(b)
		}
	case escBackslash:
		t.esc = escNone
		switch b {
		case 'b':
			p.sinkByte('\b')
		case 'f':
			p.sinkByte('\f')
		case 'n':
			p.sinkByte('\n')
		case 'r':
			p.sinkByte('\r')
		case 't':
			p.sinkByte('\t')
		case 'u':
			t.esc, t.hex, t.hexN = escHex, 0, 0
		default: // '"', '\\', '/', and (leniently) anything else: the byte itself
			p.sinkByte(b)
		}
	case escHex:
		h := hexVal(b)
		if h < 0 { // lenient: a broken \u escape is one U+FFFD
			t.esc = escNone
			if t.high != 0 {
				t.high = 0
				p.sinkRune(utf8.RuneError)
			}
			p.sinkRune(utf8.RuneError)
			p.stringByte(b)
			return
		}
		t.hex, t.hexN = t.hex<<4|h, t.hexN+1
		if t.hexN == 4 {
			t.esc = escNone
			p.codeUnit(t.hex)
		}
	case escHigh:
		if b == '\\' {
			t.esc = escHighBackslash
			return
		}
		t.high, t.esc = 0, escNone
		p.sinkRune(utf8.RuneError)
		p.stringByte(b)
	case escHighBackslash:
		if b == 'u' {
			t.esc, t.hex, t.hexN = escHex, 0, 0
			return
		}
		t.high, t.esc = 0, escBackslash
		p.sinkRune(utf8.RuneError)
		p.stringByte(b)
	}
}

// codeUnit handles one decoded \uXXXX, pairing surrogates like encoding/json.
func (p *ReplyParser) codeUnit(u rune) {
	t := &p.tok
	if t.high != 0 {
		h := t.high
		t.high = 0
		if r := utf16.DecodeRune(h, u); r != utf8.RuneError {
			p.sinkRune(r)
			return
		}
		p.sinkRune(utf8.RuneError) // lone high surrogate; u is handled on its own
	}
	switch {
	case u >= 0xD800 && u < 0xDC00:
		t.high, t.esc = u, escHigh
	case u >= 0xDC00 && u < 0xE000:
		p.sinkRune(utf8.RuneError)
	default:
		p.sinkRune(u)
	}
}

// finishObject decodes the committed reply's command and args.
func (p *ReplyParser) finishObject() {
	r := &p.reply
	r.JSON = true
	var err error
	broken := true
	switch {
	case p.overflow:
		err = fmt.Errorf("llm reply: JSON reply larger than %d bytes, command not parsed", MaxReplyBytes)
	case p.tok.state == tsError:
		err = p.tok.err
	case p.mode != modeTrailer:
		err = errors.New("llm reply: JSON reply ended before its object was closed")
	default:
		r.Command, r.Args, broken, err = decodeCommand(p.raw)
	}
	if err == nil {
		return
	}
	r.Err, r.Command, r.Args = err, "", nil
	if broken && !p.textSeen && !p.overflow {
		// No text to speak: the raw reply is better than silence.
		r.JSON = false
		raw := append([]byte(nil), p.raw...)
		p.mode = modePlain
		for _, c := range raw {
			p.plainByte(c, false)
		}
		p.finishPlain()
	}
}

// withoutTrailingCommas drops commas that directly precede a closing } or ]
// outside strings: models write them, and losing the action for it would be
// worse. String contents are never touched (upstream's regex cleanup was).
func withoutTrailingCommas(raw []byte) []byte {
	out := make([]byte, 0, len(raw))
	inString, escaped := false, false
	for i := 0; i < len(raw); i++ {
		b := raw[i]
		switch {
		case inString:
			switch {
			case escaped:
				escaped = false
			case b == '\\':
				escaped = true
			case b == '"':
				inString = false
			}
		case b == '"':
			inString = true
		case b == ',':
			j := i + 1
			for j < len(raw) && isJSONSpace(raw[j]) {
				j++
			}
			if j < len(raw) && (raw[j] == '}' || raw[j] == ']') {
				continue
			}
		}
		out = append(out, b)
	}
	return out
}

// decodeCommand reads command and args from the exact object bytes. broken
// reports a JSON syntax error (as opposed to a wrongly typed field).
func decodeCommand(raw []byte) (cmd string, args map[string]any, broken bool, err error) {
	var obj map[string]json.RawMessage
	if err := json.Unmarshal(raw, &obj); err != nil {
		if json.Unmarshal(withoutTrailingCommas(raw), &obj) != nil {
			return "", nil, true, fmt.Errorf("llm reply: decode JSON: %w", err)
		}
	}
	if v, ok := obj["command"]; ok && !isNull(v) {
		if err := json.Unmarshal(v, &cmd); err != nil {
			return "", nil, false, fmt.Errorf("llm reply: command is not a string: %s", truncate(string(v), 64))
		}
	}
	if strings.TrimSpace(cmd) == "" {
		return "", nil, false, nil // text-only reply; args without a command mean nothing
	}
	if v, ok := obj["args"]; ok && !isNull(v) {
		d := json.NewDecoder(bytes.NewReader(v))
		d.UseNumber() // keep numbers exactly as written
		if err := d.Decode(&args); err != nil {
			return "", nil, false, fmt.Errorf("llm reply: args of %q is not a JSON object: %w", truncate(cmd, 64), err)
		}
	}
	return cmd, args, false, nil
}

func isNull(v json.RawMessage) bool { return string(bytes.TrimSpace(v)) == "null" }

func truncate(s string, n int) string {
	if len(s) <= n {
		return s
	}
	for n > 0 && !utf8.RuneStart(s[n]) {
		n--
	}
	return s[:n] + "…"
}

// ---- output ----

// flushPend moves checked bytes from pend to ready. Unless final, an
// incomplete UTF-8 sequence at the end is held; invalid bytes become U+FFFD
// one by one, as encoding/json does, so the result does not depend on where
// deltas were split.
func (p *ReplyParser) flushPend(final bool) {
	n := len(p.pend)
	if n == 0 {
		return
	}
	if !final {
		for i := n - 1; i >= 0 && i >= n-utf8.UTFMax; i-- {
			if utf8.RuneStart(p.pend[i]) {
				if !utf8.FullRune(p.pend[i:]) {
					n = i
				}
				break
			}
		}
	}
	b := p.pend[:n]
	if utf8.Valid(b) {
		p.ready = append(p.ready, b...)
	} else {
		for len(b) > 0 {
			r, size := utf8.DecodeRune(b)
			if r == utf8.RuneError && size == 1 {
				p.ready = utf8.AppendRune(p.ready, utf8.RuneError)
			} else {
				p.ready = append(p.ready, b[:size]...)
			}
			b = b[size:]
		}
	}
	p.pend = append(p.pend[:0], p.pend[n:]...)
}

func (p *ReplyParser) takeReady() string {
	if len(p.ready) == 0 {
		return ""
	}
	s := string(p.ready)
	p.ready = p.ready[:0]
	if room := MaxSpokenBytes - p.spoken.Len(); room > 0 {
		if len(s) > room {
			for room > 0 && !utf8.RuneStart(s[room]) {
				room--
			}
			p.spoken.WriteString(s[:room])
		} else {
			p.spoken.WriteString(s)
		}
	}
	return s
}
