package memory

import (
	"regexp"
	"strings"
)

// Mark is what Redact puts where a secret was.
const Mark = "[redacted]"

// maxRedactPasses bounds Redact's fixpoint loop. One pass can expose a match
// for another rule (a card inside "password is 4111 …" leaves
// "password is [redacted]."), so Redact repeats until nothing changes; every
// pass turns secret text into Mark, which no rule matches, so it ends fast.
const maxRedactPasses = 8

// Redact replaces secrets in s with Mark and reports whether it changed s.
// It is idempotent: Redact(Redact(s)) == Redact(s). What counts as a secret:
//
//   - card numbers: 13–19 digits, in groups of at least two separated by one
//     space or dash, that pass the Luhn check and start like a card (2–6).
//     Phone numbers (7–15 digits, often after '+', normally failing Luhn),
//     dates, years and millisecond timestamps (starting with 1) stay;
//   - labelled secrets: "password is X", "my password: X", "the wifi password
//     for home is X", "api key: X", "token = X", "pin is 1234", "PIN 1234",
//     "пароль X", "пароль от почты: X", "пин-код 1234", "код от домофона 1234".
//     Only the value is replaced; a quoted value is replaced whole, otherwise
//     one word;
//   - API keys and tokens by shape: sk-…, AIza…, ghp_…/gho_…, github_pat_…,
//     xox?-…, AKIA…, "Bearer X";
//   - long runs (24+) of base64/hex characters holding both digits and
//     letters with one unbroken stretch of 16+ (so URL slugs, UUIDs and
//     hyphenated words stay).
func Redact(s string) (string, bool) {
	out := s
	for i := 0; i < maxRedactPasses; i++ {
		next := redactOnce(out)
		if next == out {
			break
		}
		out = next
	}
	return out, out != s
}

func redactOnce(s string) string {
	s = redactKeys(s)
	s = redactCards(s)
	s = redactLabeled(s)
	return redactRuns(s)
}

// mayContain reports whether s, lower-cased, contains one of the words. The
// regular expressions below are slow on long text (Unicode classes, case
// folding); this cheap test skips them for the common text that holds no
// label or key prefix at all.
func mayContain(lower string, words ...string) bool {
	for _, w := range words {
		if strings.Contains(lower, w) {
			return true
		}
	}
	return false
}

// keyRE finds API keys by their published prefixes. Group 2 is the key.
var keyRE = regexp.MustCompile(`(^|[^A-Za-z0-9_-])(sk-[A-Za-z0-9_-]{16,}|AIza[0-9A-Za-z_-]{30,}|` +
	`gh[pousr]_[A-Za-z0-9]{20,}|github_pat_[A-Za-z0-9_]{20,}|xox[abposr]-[A-Za-z0-9-]{10,}|AKIA[0-9A-Z]{16})`)

// bearerRE finds an HTTP bearer credential. Group 2 is the token.
var bearerRE = regexp.MustCompile(`(?i)(bearer\s+)([A-Za-z0-9._~+/=-]{8,})`)

func redactKeys(s string) string {
	if mayContain(s, "sk-", "AIza", "_", "xox", "AKIA") {
		s = replaceGroup(keyRE, s, 2, nil)
	}
	if mayContain(strings.ToLower(s), "bearer") {
		s = replaceGroup(bearerRE, s, 2, nil)
	}
	return s
}

// replaceGroup replaces submatch group of every match of re in s with Mark
// when accept (nil = always) agrees.
func replaceGroup(re *regexp.Regexp, s string, group int, accept func(m []string) bool) string {
	locs := re.FindAllStringSubmatchIndex(s, -1)
	if locs == nil {
		return s
	}
	var b strings.Builder
	last := 0
	for _, loc := range locs {
		start, end := loc[2*group], loc[2*group+1]
		if start < 0 || start < last {
			continue
		}
		if accept != nil && !accept(submatches(s, loc)) {
			continue
		}
		b.WriteString(s[last:start])
		b.WriteString(Mark)
		last = end
	}
	if last == 0 {
		return s
	}
	b.WriteString(s[last:])
	return b.String()
}

func submatches(s string, loc []int) []string {
	m := make([]string, len(loc)/2)
	for i := range m {
		if loc[2*i] >= 0 {
			m[i] = s[loc[2*i]:loc[2*i+1]]
		}
	}
	return m
}

// minRun is the shortest run of base64/hex characters taken for a key.
const minRun = 24

// redactRuns replaces runs of base64/hex characters that look random. A
// plain scan: a regular expression here cost more than all other rules.
func redactRuns(s string) string {
	var b strings.Builder
	last := 0
	for i := 0; i < len(s); {
		if !isRunByte(s[i]) {
			i++
			continue
		}
		start := i
		for i < len(s) && isRunByte(s[i]) {
			i++
		}
		if i-start >= minRun && looksRandom(s[start:i]) {
			b.WriteString(s[last:start])
			b.WriteString(Mark)
			last = i
		}
	}
	if last == 0 {
		return s
	}
	b.WriteString(s[last:])
	return b.String()
}

// isRunByte reports whether c is a base64 (standard or URL) or hex character.
func isRunByte(c byte) bool {
	return c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || isDigit(c) || strings.IndexByte("+/=_-", c) >= 0
}

// looksRandom reports whether a 24+ character run reads like a key rather
// than words: it mixes digits and letters and has an unbroken stretch of at
// least 16 characters between separators (- _ / + =).
func looksRandom(run string) bool {
	digit, letter, stretch, longest := false, false, 0, 0
	for i := 0; i < len(run); i++ {
		c := run[i]
		switch {
		case c >= '0' && c <= '9':
			digit = true
		case c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z':
			letter = true
		default:
			stretch = -1
		}
		stretch++
		longest = max(longest, stretch)
	}
	return digit && letter && longest >= 16
}
