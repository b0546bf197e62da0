package llm

import (
	"encoding/json"
	"strings"
	"unicode/utf16"
	"unicode/utf8"
)

// decodeChunk decodes one OpenAI chat.completion.chunk into c. The common
// shape (one choice with a text delta, a finish_reason, a usage block) is
// read by fastChunk without reflection; anything it does not fully
// understand goes to encoding/json, so the result and the error are always
// exactly what json.Unmarshal gives (FuzzFastChunk checks this).
func (d *openaiDecoder) decodeChunk(data string, c *openaiChunk) error {
	if fastChunk(data, d.u.Model, c) {
		return nil
	}
	// Decoded into a local so that c itself does not escape to the heap.
	var slow openaiChunk
	if err := json.Unmarshal([]byte(data), &slow); err != nil {
		return err
	}
	*c = slow
	return nil
}

// fastChunk decodes data into c (which must be zero) and reports whether it
// could. It gives up (false, c in any state) on everything encoding/json
// might read differently from a plain reading of the text: escaped or
// non-ASCII keys, keys that match a field only case-insensitively, repeated
// fields, a field of another type than the Go field, numbers that are not
// plain integers, lone surrogates, invalid UTF-8 in a decoded string, more
// than one choice, an "error" object, deep nesting, and any syntax error
// (encoding/json then reports it). Unknown fields are skipped, as
// encoding/json skips them, after checking their syntax.
//
// Decoded strings without escapes are substrings of data, so a delta costs no
// copy; model is reused when it equals prevModel (the same on every chunk).
func fastChunk(data, prevModel string, c *openaiChunk) bool {
	p := chunkScanner{s: data}
	if !p.objectStart() {
		return false
	}
	var seen uint8
	for more := !p.objectEmpty(); more; {
		key, ok := p.key()
		if !ok {
			return false
		}
		switch key {
		case "model":
			if !p.once(&seen, 1) {
				return false
			}
			if p.null() {
				break
			}
			raw, escaped, ok := p.str()
			if !ok {
				return false
			}
			switch {
			case escaped:
				c.Model = raw
			case raw == prevModel:
				c.Model = prevModel
			default:
				c.Model = strings.Clone(raw) // kept in Usage after the stream
			}
		case "choices":
			if !p.once(&seen, 2) || !p.choices(c) {
				return false
			}
		case "usage":
			if !p.once(&seen, 4) || !p.usage(c) {
				return false
			}
		case "error":
			// Errors in the stream are rare: only a null is read here.
			if !p.once(&seen, 8) || !p.null() {
				return false
			}
		default:
			if foldsTo(key, "model", "choices", "usage", "error") || !p.skip(0) {
				return false
			}
		}
		if more, ok = p.next('}'); !ok {
			return false
		}
	}
	p.ws()
	return p.i == len(p.s)
}

// makeSlice sets *s to a new slice of length n (non-nil even for n == 0, as
// encoding/json leaves an empty array). It names the anonymous element type
// of openaiChunk.Choices without repeating it.
func makeSlice[S ~[]E, E any](s *S, n int) { *s = make(S, n) }

// newValue sets *p to a new zero value, for the anonymous openaiChunk.Usage.
func newValue[P ~*E, E any](p *P) { *p = P(new(E)) }

// choices reads the "choices" value: null, [] or one choice object.
func (p *chunkScanner) choices(c *openaiChunk) bool {
	if p.null() {
		return true
	}
	if !p.arrayStart() {
		return false
	}
	if p.arrayEmpty() {
		makeSlice(&c.Choices, 0)
		return true
	}
	makeSlice(&c.Choices, 1)
	ch := &c.Choices[0]
	if !p.objectStart() {
		return false // null or another type: encoding/json decides
	}
	var seen uint8
	for more := !p.objectEmpty(); more; {
		key, ok := p.key()
		if !ok {
			return false
		}
		switch key {
		case "delta":
			if !p.once(&seen, 1) || !p.delta(&ch.Delta.Content) {
				return false
			}
		case "finish_reason":
			if !p.once(&seen, 2) {
				return false
			}
			if p.null() {
				break
			}
			raw, escaped, ok := p.str()
			if !ok {
				return false
			}
			if !escaped {
				raw = internFinish(raw)
			}
			ch.FinishReason = raw
		default:
			if foldsTo(key, "delta", "finish_reason") || !p.skip(1) {
				return false
			}
		}
		if more, ok = p.next('}'); !ok {
			return false
		}
	}
	// A second choice: encoding/json reads it; the decoder only uses the first.
	more, ok := p.next(']')
	return ok && !more
}

// delta reads a choice's "delta" object, keeping only "content".
func (p *chunkScanner) delta(content *string) bool {
	if p.null() {
		return true
	}
	if !p.objectStart() {
		return false
	}
	seen := uint8(0)
	for more := !p.objectEmpty(); more; {
		key, ok := p.key()
		if !ok {
			return false
		}
		switch key {
		case "content":
			if !p.once(&seen, 1) {
				return false
			}
			if p.null() {
				break
			}
			s, _, ok := p.str()
			if !ok {
				return false
			}
			*content = s
		default:
			if foldsTo(key, "content") || !p.skip(2) {
				return false
			}
		}
		if more, ok = p.next('}'); !ok {
			return false
		}
	}
	return true
}

// usage reads the "usage" value: null or an object with token counts.
func (p *chunkScanner) usage(c *openaiChunk) bool {
	if p.null() {
		return true
	}
	if !p.objectStart() {
		return false
	}
	newValue(&c.Usage)
	var seen uint8
	for more := !p.objectEmpty(); more; {
		key, ok := p.key()
		if !ok {
			return false
		}
		switch key {
		case "prompt_tokens":
			if !p.once(&seen, 1) || !p.intValue(&c.Usage.PromptTokens) {
				return false
			}
		case "completion_tokens":
			if !p.once(&seen, 2) || !p.intValue(&c.Usage.CompletionTokens) {
				return false
			}
		default:
			if foldsTo(key, "prompt_tokens", "completion_tokens") || !p.skip(1) {
				return false
			}
		}
		if more, ok = p.next('}'); !ok {
			return false
		}
	}
	return true
}

// internFinish returns the usual finish reasons as constants, so the decoder
// does not keep the whole chunk alive through a substring.
func internFinish(s string) string {
	for _, r := range [...]string{"stop", "length", "content_filter", "tool_calls", "function_call"} {
		if s == r {
			return r
		}
	}
	return strings.Clone(s)
}

// foldsTo reports whether key (ASCII, see chunkScanner.key) equals one of the
// names when case is ignored, as encoding/json matches field names.
func foldsTo(key string, names ...string) bool {
	for _, n := range names {
		if strings.EqualFold(key, n) {
			return true
		}
	}
	return false
}

// chunkScanner reads JSON text from s at i. Every method returns false for
// anything it does not handle; the caller then gives up on the fast path.
type chunkScanner struct {
	s string
	i int
}

// maxSkipDepth bounds the nesting of skipped values; deeper goes to encoding/json.
const maxSkipDepth = 64

func (p *chunkScanner) ws() {
	for p.i < len(p.s) {
		switch p.s[p.i] {
		case ' ', '\t', '\n', '\r':
			p.i++
		default:
			return
		}
	}
}

// lit consumes b after white space.
func (p *chunkScanner) lit(b byte) bool {
	p.ws()
	if p.i < len(p.s) && p.s[p.i] == b {
		p.i++
		return true
	}
	return false
}

func (p *chunkScanner) objectStart() bool { return p.lit('{') }
func (p *chunkScanner) objectEmpty() bool { return p.lit('}') }
func (p *chunkScanner) arrayStart() bool  { return p.lit('[') }
func (p *chunkScanner) arrayEmpty() bool  { return p.lit(']') }

// next consumes the ',' between members (more) or the closing byte.
func (p *chunkScanner) next(closing byte) (more, ok bool) {
	p.ws()
	if p.i < len(p.s) {
		switch p.s[p.i] {
		case ',':
			p.i++
			return true, true
		case closing:
			p.i++
			return false, true
		}
	}
	return false, false
}

// once marks a field as seen; a repeated field is left to encoding/json.
func (p *chunkScanner) once(seen *uint8, bit uint8) bool {
	if *seen&bit != 0 {
		return false
	}
	*seen |= bit
	return true
}

// null consumes a null literal if one comes next.
func (p *chunkScanner) null() bool {
	p.ws()
	if strings.HasPrefix(p.s[p.i:], "null") {
		p.i += 4
		return true
	}
	return false
}

// key reads a member name and its ':'. Only plain ASCII names without
// escapes are handled, so that a name is matched exactly as written.
func (p *chunkScanner) key() (string, bool) {
	p.ws()
	if p.i >= len(p.s) || p.s[p.i] != '"' {
		return "", false
	}
	start := p.i + 1
	for j := start; j < len(p.s); j++ {
		switch b := p.s[j]; {
		case b == '"':
			p.i = j + 1
			return p.s[start:j], p.lit(':')
		case b == '\\' || b < 0x20 || b >= utf8.RuneSelf:
			return "", false
		}
	}
	return "", false
}

// str reads a string value. Without escapes it is a substring of s; escaped
// reports that it was decoded into a new string.
func (p *chunkScanner) str() (s string, escaped bool, ok bool) {
	p.ws()
	if p.i >= len(p.s) || p.s[p.i] != '"' {
		return "", false, false
	}
	start := p.i + 1
	ascii := true
	j := start
	for ; j < len(p.s); j++ {
		b := p.s[j]
		if b == '"' {
			s = p.s[start:j]
			if !ascii && !utf8.ValidString(s) {
				return "", false, false // encoding/json would replace the bad bytes
			}
			p.i = j + 1
			return s, false, true
		}
		if b == '\\' {
			break
		}
		if b < 0x20 {
			return "", false, false
		}
		if b >= utf8.RuneSelf {
			ascii = false
		}
	}
	if j >= len(p.s) {
		return "", false, false
	}
	// Escapes: decode from the first backslash on.
	buf := make([]byte, 0, len(p.s[start:j])+16)
	buf = append(buf, p.s[start:j]...)
	for j < len(p.s) {
		b := p.s[j]
		switch {
		case b == '"':
			if !ascii && !utf8.Valid(buf) {
				return "", false, false
			}
			p.i = j + 1
			return string(buf), true, true
		case b < 0x20:
			return "", false, false
		case b != '\\':
			if b >= utf8.RuneSelf {
				ascii = false
			}
			buf = append(buf, b)
			j++
			continue
		}
		if j+1 >= len(p.s) {
			return "", false, false
		}
		switch e := p.s[j+1]; e {
		case '"', '\\', '/':
			buf = append(buf, e)
		case 'b':
			buf = append(buf, '\b')
		case 'f':
			buf = append(buf, '\f')
		case 'n':
			buf = append(buf, '\n')
		case 'r':
			buf = append(buf, '\r')
		case 't':
			buf = append(buf, '\t')
		case 'u':
			r, ok := hex4(p.s, j+2)
			if !ok {
				return "", false, false
			}
			if utf16.IsSurrogate(r) {
				// Only a high surrogate followed by an escaped low one.
				lo, ok := hex4(p.s, j+8)
				if !ok || p.s[j+6] != '\\' || p.s[j+7] != 'u' {
					return "", false, false
				}
				r = utf16.DecodeRune(r, lo)
				if r == utf8.RuneError {
					return "", false, false
				}
				j += 6
			}
			buf = utf8.AppendRune(buf, r)
			j += 6
			continue
		default:
			return "", false, false
		}
		j += 2
	}
	return "", false, false
}

// hex4 reads four hex digits at s[i:].
func hex4(s string, i int) (rune, bool) {
	if i < 0 || i+4 > len(s) {
		return 0, false
	}
	var r rune
	for _, c := range []byte(s[i : i+4]) {
		switch {
		case '0' <= c && c <= '9':
			c -= '0'
		case 'a' <= c && c <= 'f':
			c = c - 'a' + 10
		case 'A' <= c && c <= 'F':
			c = c - 'A' + 10
		default:
			return 0, false
		}
		r = r<<4 | rune(c)
	}
	return r, true
}

// intValue reads an integer field: null leaves it, a plain integer of at most
// 18 digits sets it (no overflow possible); fractions, exponents and longer
// numbers go to encoding/json.
func (p *chunkScanner) intValue(v *int) bool {
	if p.null() {
		return true
	}
	i := p.i
	neg := i < len(p.s) && p.s[i] == '-'
	if neg {
		i++
	}
	start := i
	n := 0
	for i < len(p.s) && p.s[i] >= '0' && p.s[i] <= '9' {
		n = n*10 + int(p.s[i]-'0')
		i++
	}
	digits := i - start
	if digits == 0 || digits > 18 || (digits > 1 && p.s[start] == '0') {
		return false
	}
	if i < len(p.s) && (p.s[i] == '.' || p.s[i] == 'e' || p.s[i] == 'E') {
		return false
	}
	if neg {
		n = -n
	}
	*v = n
	p.i = i
	return true
}

// skip checks and skips one value of a field the chunk does not keep.
func (p *chunkScanner) skip(depth int) bool {
	p.ws()
	if p.i >= len(p.s) {
		return false
	}
	switch b := p.s[p.i]; {
	case b == '"':
		return p.skipString()
	case b == '{':
		if depth >= maxSkipDepth {
			return false
		}
		p.i++
		for more := !p.objectEmpty(); more; {
			p.ws()
			if p.i >= len(p.s) || p.s[p.i] != '"' || !p.skipString() || !p.lit(':') || !p.skip(depth+1) {
				return false
			}
			var ok bool
			if more, ok = p.next('}'); !ok {
				return false
			}
		}
		return true
	case b == '[':
		if depth >= maxSkipDepth {
			return false
		}
		p.i++
		for more := !p.arrayEmpty(); more; {
			if !p.skip(depth + 1) {
				return false
			}
			var ok bool
			if more, ok = p.next(']'); !ok {
				return false
			}
		}
		return true
	case b == '-' || b >= '0' && b <= '9':
		return p.skipNumber()
	}
	for _, l := range [...]string{"null", "true", "false"} {
		if strings.HasPrefix(p.s[p.i:], l) {
			p.i += len(l)
			return true
		}
	}
	return false
}

// skipString skips a string, checking its escapes; any bytes >= 0x80 are
// accepted, as encoding/json accepts them.
func (p *chunkScanner) skipString() bool {
	for j := p.i + 1; j < len(p.s); j++ {
		switch b := p.s[j]; {
		case b == '"':
			p.i = j + 1
			return true
		case b < 0x20:
			return false
		case b == '\\':
			if j+1 >= len(p.s) {
				return false
			}
			switch p.s[j+1] {
			case '"', '\\', '/', 'b', 'f', 'n', 'r', 't':
				j++
			case 'u':
				if _, ok := hex4(p.s, j+2); !ok {
					return false
				}
				j += 5
			default:
				return false
			}
		}
	}
	return false
}

// skipNumber skips a number in JSON's grammar:
// -?(0|[1-9][0-9]*)(\.[0-9]+)?([eE][+-]?[0-9]+)?
func (p *chunkScanner) skipNumber() bool {
	s, i := p.s, p.i
	digits := func() int {
		n := 0
		for i < len(s) && s[i] >= '0' && s[i] <= '9' {
			i++
			n++
		}
		return n
	}
	if i < len(s) && s[i] == '-' {
		i++
	}
	if i < len(s) && s[i] == '0' {
		i++
	} else if digits() == 0 {
		return false
	}
	if i < len(s) && s[i] == '.' {
		i++
		if digits() == 0 {
			return false
		}
	}
	if i < len(s) && (s[i] == 'e' || s[i] == 'E') {
		i++
		if i < len(s) && (s[i] == '+' || s[i] == '-') {
			i++
		}
		if digits() == 0 {
			return false
		}
	}
	p.i = i
	return true
}
