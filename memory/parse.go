package memory

import (
	"regexp"
	"strings"
)

// The analyzer's output contract: plain lines, nothing else.
//
//	FACT <slot>: <text>   zero or more: a stable fact the user stated
//	FORGET: <term>        zero or more: retire facts by slot or words
//	FORGET_ALL            at most once: the user asked to forget everything
//	DIGEST: <one line>    at most once: today's digest line for this turn
//	NONE                  alone, when there is nothing to record
//
// ParseAnalysis accepts it strictly first; if any line breaks the contract,
// a repair pass tolerates what models commonly do instead (see repairLine).

// ParseError says why analyzer output could not be used at all.
type ParseError struct {
	// Reason is one of the Reason* constants, stable for logs and metrics.
	Reason string
}

// Error names the reason, for the log.
func (e *ParseError) Error() string { return "memory: analyzer output rejected: " + e.Reason }

// ParseError reasons.
const (
	ReasonEmpty        = "empty_response" // nothing but white space
	ReasonJSON         = "json_format"    // the model answered with JSON
	ReasonXML          = "xml_format"     // the model answered with XML/HTML
	ReasonNoValidLines = "no_valid_lines" // not one line follows the contract
	ReasonTooLong      = "too_long"       // the model did not stop (Analyzer only)
)

// lineKind is what one contract line says.
type lineKind int

const (
	kindFact lineKind = iota
	kindForget
	kindForgetAll
	kindDigest
	kindNone
)

// line is one parsed contract line.
type line struct {
	kind       lineKind
	slot, text string
}

// ParseAnalysis reads the analyzer's output into an Update (Method
// MethodLLM). Lines that still break the contract after repair are dropped;
// if no line is usable and the output is not NONE, it returns a *ParseError.
// The result is cleaned like every Update this package returns: hedged,
// self-referential and one-off facts are dropped (upstream 5.3 step 4),
// unknown slots become notes ("hobby: chess"), facts holding a secret are
// dropped, texts are single lines capped at MaxFactRunes / MaxDigestRunes,
// and "FORGET: everything" means FORGET_ALL.
func ParseAnalysis(out string) (Update, error) {
	u, _, err := parseAnalysis(out)
	return u, err
}

// parseAnalysis also reports whether the repair pass was needed.
func parseAnalysis(out string) (u Update, repaired bool, err error) {
	lines, ok := parseStrict(out)
	if !ok {
		repaired = true
		if lines, err = parseRepair(out); err != nil {
			return Update{}, repaired, err
		}
	}
	return buildUpdate(lines), repaired, nil
}

var (
	strictFactRE   = regexp.MustCompile(`^FACT ([a-z_]+): (\S.*)$`)
	strictForgetRE = regexp.MustCompile(`^FORGET: (\S.*)$`)
	strictDigestRE = regexp.MustCompile(`^DIGEST: (\S.*)$`)
)

// parseStrict accepts only the exact contract: every non-empty line
// matches, NONE stands alone, FORGET_ALL and DIGEST appear at most once.
func parseStrict(out string) ([]line, bool) {
	var lines []line
	counts := map[lineKind]int{}
	for _, raw := range strings.Split(strings.TrimSpace(out), "\n") {
		if raw == "" {
			continue
		}
		l, ok := strictLine(raw)
		if !ok {
			return nil, false
		}
		counts[l.kind]++
		lines = append(lines, l)
	}
	if len(lines) == 0 || counts[kindForgetAll] > 1 || counts[kindDigest] > 1 ||
		counts[kindNone] > 0 && len(lines) > 1 {
		return nil, false
	}
	return lines, true
}

func strictLine(s string) (line, bool) {
	if strings.ContainsAny(s, "\r\t") {
		return line{}, false // CRLF and tabs are for the repair pass
	}
	if m := strictFactRE.FindStringSubmatch(s); m != nil {
		return line{kind: kindFact, slot: m[1], text: m[2]}, true
	}
	if m := strictForgetRE.FindStringSubmatch(s); m != nil {
		return line{kind: kindForget, text: m[1]}, true
	}
	if m := strictDigestRE.FindStringSubmatch(s); m != nil {
		return line{kind: kindDigest, text: m[1]}, true
	}
	switch s {
	case "FORGET_ALL":
		return line{kind: kindForgetAll}, true
	case "NONE":
		return line{kind: kindNone}, true
	}
	return line{}, false
}

// buildUpdate turns parsed lines into a clean Update: facts de-duplicated
// and bounded, the first usable digest kept.
func buildUpdate(lines []line) Update {
	u := Update{Method: MethodLLM}
	for _, l := range lines {
		switch l.kind {
		case kindFact:
			addFact(&u, l.slot, l.text)
		case kindForget:
			addTerm(&u, l.text)
		case kindForgetAll:
			u.ForgetAll = true
		case kindDigest:
			if u.Digest == "" && !isEmptyValue(trimValue(l.text)) {
				u.Digest = cleanDigest(l.text)
			}
		}
	}
	return u
}

// addFact adds a model fact unless it is unusable or already there. An
// unknown slot keeps its name in the text, so "hobby: chess" stays readable
// as a note.
func addFact(u *Update, slot, text string) {
	known, ok := KnownSlot(slot)
	if !ok {
		known, text = SlotNote, strings.TrimSpace(slot)+": "+trimValue(text)
	}
	f, ok := cleanFact(known, text)
	if !ok || len(u.Remember) >= MaxFactsPerUpdate {
		return
	}
	for _, old := range u.Remember {
		if old.Slot == f.Slot && strings.EqualFold(old.Text, f.Text) {
			return
		}
	}
	u.Remember = append(u.Remember, f)
}

// addTerm adds a forget term; "everything" means forget all.
func addTerm(u *Update, raw string) {
	if isEverything(trimValue(oneLine(raw))) {
		u.ForgetAll = true
		return
	}
	if term, ok := cleanTerm(raw); ok && len(u.Forget) < MaxFactsPerUpdate && !containsFold(u.Forget, term) {
		u.Forget = append(u.Forget, term)
	}
}
