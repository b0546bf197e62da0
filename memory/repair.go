package memory

import (
	"strings"
	"unicode"
	"unicode/utf8"
)

// parseRepair is the tolerant pass. It normalises CRLF, unwraps one ```
// code fence, then reads each line with repairLine; lines it cannot read
// (a preamble such as "Here is the analysis:", a trailing "Done.") are
// dropped. NONE mixed with other lines is ignored.
func parseRepair(out string) ([]line, error) {
	out = strings.ReplaceAll(strings.ReplaceAll(out, "\r\n", "\n"), "\r", "\n")
	out = strings.TrimSpace(unwrapFence(out))
	if out == "" {
		return nil, &ParseError{Reason: ReasonEmpty}
	}
	var lines []line
	for _, raw := range strings.Split(out, "\n") {
		if l, ok := repairLine(raw); ok {
			lines = append(lines, l)
		}
	}
	if len(lines) == 0 {
		return nil, &ParseError{Reason: rejectReason(out)}
	}
	return dropNone(lines), nil
}

// rejectReason names what an output with no usable line looks like.
func rejectReason(out string) string {
	switch out[0] {
	case '{', '[':
		return ReasonJSON
	case '<':
		return ReasonXML
	}
	return ReasonNoValidLines
}

// dropNone removes NONE lines when other lines are present.
func dropNone(lines []line) []line {
	var kept []line
	for _, l := range lines {
		if l.kind != kindNone {
			kept = append(kept, l)
		}
	}
	if len(kept) == 0 {
		return lines[:1]
	}
	return kept
}

// unwrapFence returns the inside of the first ``` fenced block, or out
// unchanged when there is none; an unclosed fence just loses its line.
func unwrapFence(out string) string {
	lines := strings.Split(out, "\n")
	open := -1
	for i, l := range lines {
		if !strings.HasPrefix(strings.TrimSpace(l), "```") {
			continue
		}
		if open < 0 {
			open = i
			continue
		}
		return strings.Join(lines[open+1:i], "\n")
	}
	if open >= 0 {
		return strings.Join(append(lines[:open:open], lines[open+1:]...), "\n")
	}
	return out
}

// repairLine reads one line leniently: labels in any case, after bullets
// ("-", "*", "•") or numbering ("1.", "2)"), in bold ("**FACT name**:"),
// with a full-width colon, and FACT variants "FACT(name):", "FACT [name]:",
// "FACT_name:", "FACT name - text", "FACT: name: text", "FACT: text" (a note).
func repairLine(raw string) (line, bool) {
	s := cleanLabelLine(raw)
	lower := strings.ToLower(s)
	switch {
	case s == "":
		return line{}, false
	case isNoneLine(lower):
		return line{kind: kindNone}, true
	case isForgetAllLine(lower):
		return line{kind: kindForgetAll}, true
	case hasWord(s, "forget"):
		return valueLine(kindForget, s[len("forget"):])
	case hasWord(s, "digest"):
		return valueLine(kindDigest, s[len("digest"):])
	case hasWord(s, "fact"):
		return factLine(s[len("fact"):])
	}
	return line{}, false
}

// cleanLabelLine strips the decoration models put around a label.
func cleanLabelLine(s string) string {
	s = strings.NewReplacer("：", ":", "﹕", ":", "**", "", "`", "").Replace(s)
	for {
		t := strings.TrimSpace(s)
		t = strings.TrimLeft(t, "-*•·–—>")
		t = strings.TrimSpace(stripNumbering(t))
		if t == s {
			return s
		}
		s = t
	}
}

// stripNumbering removes "1." or "2)" in front of a line.
func stripNumbering(s string) string {
	n := 0
	for n < len(s) && n < 3 && isDigit(s[n]) {
		n++
	}
	if n > 0 && n < len(s) && (s[n] == '.' || s[n] == ')') {
		return s[n+1:]
	}
	return s
}

// hasWord reports whether s starts with label (any case) not followed by a
// letter: "Forget:" yes, "Forgetting" no.
func hasWord(s, label string) bool {
	if !hasPrefixFold(s, label) {
		return false
	}
	r, _ := utf8.DecodeRuneInString(s[len(label):])
	return len(s) == len(label) || !unicode.IsLetter(r)
}

func isNoneLine(lower string) bool {
	switch strings.TrimRight(lower, ". ") {
	case "none", "(none)", "none:":
		return true
	}
	return false
}

// isForgetAllLine accepts FORGET_ALL, "forget all", "forget-all",
// "forgetall", optionally followed by ":" and "yes"/"true"/nothing.
func isForgetAllLine(lower string) bool {
	for _, p := range []string{"forget_all", "forget all", "forget-all", "forgetall"} {
		if rest, ok := strings.CutPrefix(lower, p); ok {
			rest = strings.TrimSpace(strings.TrimLeft(strings.TrimSpace(rest), ":=-"))
			rest = strings.TrimRight(rest, ". ")
			return rest == "" || rest == "yes" || rest == "true"
		}
	}
	return false
}

// valueLine reads ": value" (or "- value", "= value") after a label.
func valueLine(kind lineKind, rest string) (line, bool) {
	v, ok := afterSeparator(rest)
	if !ok {
		return line{}, false
	}
	return line{kind: kind, text: v}, true
}

// afterSeparator returns what follows a ':', '=', '-', '–' or '—' at the
// start of rest (after spaces); ok is false without one or without a value.
func afterSeparator(rest string) (string, bool) {
	rest = strings.TrimSpace(rest)
	for _, sep := range []string{":", "=", "-", "–", "—"} {
		if v, ok := strings.CutPrefix(rest, sep); ok {
			v = strings.TrimSpace(strings.TrimLeft(v, ":"))
			return v, v != ""
		}
	}
	return "", false
}

// factLine reads what follows "FACT": a slot in parentheses, brackets,
// angle brackets, after '_' or a space, then a separator and the text; or a
// separator first, then "slot: text" when the word is a known slot, else the
// whole value as a note.
func factLine(rest string) (line, bool) {
	if slot, after, ok := bracketedSlot(rest); ok {
		v, ok := afterSeparator(after)
		return line{kind: kindFact, slot: slot, text: v}, ok && slot != ""
	}
	if v, ok := afterSeparator(rest); ok {
		if head, tail, found := strings.Cut(v, ":"); found {
			if _, known := KnownSlot(head); known && strings.TrimSpace(tail) != "" {
				return line{kind: kindFact, slot: strings.TrimSpace(head), text: strings.TrimSpace(tail)}, true
			}
		}
		return line{kind: kindFact, slot: SlotNote, text: v}, true
	}
	trimmed := strings.TrimLeft(rest, " _")
	if len(trimmed) == len(rest) {
		return line{}, false
	}
	n := slotWordLen(trimmed)
	v, ok := afterSeparator(trimmed[n:])
	return line{kind: kindFact, slot: trimmed[:n], text: v}, ok && n > 0
}

// bracketedSlot reads "(name)", "[name]" or "<name>" at the start of rest.
func bracketedSlot(rest string) (slot, after string, ok bool) {
	rest = strings.TrimSpace(rest)
	for _, p := range [][2]string{{"(", ")"}, {"[", "]"}, {"<", ">"}} {
		if inner, ok := strings.CutPrefix(rest, p[0]); ok {
			slot, after, found := strings.Cut(inner, p[1])
			slot = strings.TrimSpace(slot)
			return slot, after, found && slotWordLen(slot) == len(slot)
		}
	}
	return "", "", false
}

// slotWordLen is the length of the slot name at the start of s: letters,
// '_' and '-' (ASCII, so the model cannot smuggle text in as a slot).
func slotWordLen(s string) int {
	n := 0
	for n < len(s) && n < 32 {
		c := s[n]
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c == '_' || c == '-') {
			break
		}
		n++
	}
	return n
}
