package memory

import (
	"regexp"
	"slices"
	"strings"
)

var (
	forgetAllEnRE = regexp.MustCompile(`(?i)` + wordBoundary + `(forget)\s+(?:(?:everything|all)(?:\s+(?:about me|(?:that )?you know(?: about me)?|` +
		`you remember(?: about me)?|i(?:'ve| have)? told you|(?:of )?my (?:data|info|information|facts|details|memories)))?|about me|me)`)
	forgetAllRuRE = regexp.MustCompile(`(?i)` + wordBoundary + `(забудь)\s+(?:вс[её](?:\s+(?:обо мне|про меня)|\s*,?\s*что (?:ты )?(?:знаешь|помнишь)(?: обо мне| про меня)?|` +
		`\s*,?\s*что я (?:тебе )?(?:говорил|говорила|рассказывал|рассказывала))?|обо мне|про меня|меня)`)
	forgetEnRE = regexp.MustCompile(`(?i)` + wordBoundary + `(forget)(?:\s+about)?\s+`)
	forgetRuRE = regexp.MustCompile(`(?i)` + wordBoundary + `(забудь)\s*,?\s*`)
)

// heuristicForget finds "forget everything" and "forget X" requests in the
// user's words. It also runs in LLM mode (see Analyzer.Analyze), so a forget
// request works even when the model misses it. spans are the byte ranges of
// the forget requests in text, ascending.
func heuristicForget(text string) (all bool, terms []string, spans [][2]int) {
	for _, re := range []*regexp.Regexp{forgetAllEnRE, forgetAllRuRE} {
		for _, loc := range re.FindAllStringSubmatchIndex(text, -1) {
			if isRequest(text, loc[2]) && atClauseEnd(text[loc[1]:]) {
				all = true
			}
		}
	}
	for _, re := range []*regexp.Regexp{forgetEnRE, forgetRuRE} {
		for _, loc := range re.FindAllStringSubmatchIndex(text, -1) {
			if !isRequest(text, loc[2]) {
				continue
			}
			raw := clause(text[loc[1]:], true)
			spans = append(spans, [2]int{loc[2], loc[1] + len(raw)})
			if everythingWords[firstWord(raw)] {
				continue // "forget everything I said" is not a term; forget-all is above
			}
			if term, ok := cleanTerm(raw); ok && len(terms) < MaxFactsPerUpdate && !containsFold(terms, term) {
				terms = append(terms, term)
			}
		}
	}
	slices.SortFunc(spans, func(a, b [2]int) int { return a[0] - b[0] })
	return all, terms, spans
}

// closingWords may follow "forget everything" and still end the request.
var closingWords = map[string]bool{
	"please": true, "now": true, "completely": true, "nexy": true, "пожалуйста": true,
	"сейчас": true, "полностью": true, "некси": true,
}

// atClauseEnd reports whether rest (what follows a forget-all phrase) ends
// the sentence, allowing "please" and the like: "forget everything, please."
// counts, "forget all that and tell me a joke" does not.
func atClauseEnd(rest string) bool {
	for {
		rest = strings.TrimLeft(rest, " ,")
		w := firstWord(rest)
		if w == "" || !closingWords[w] {
			break
		}
		rest = rest[len(leadingWords(rest, 1)[0]):]
	}
	return rest == "" || strings.ContainsAny(rest[:1], ".!?;\n") || strings.HasPrefix(rest, "…")
}

// termPrefixes are stripped from the start of a forget term, so "forget that
// I like jazz" retires "likes jazz" and "забудь моё имя" the name.
var termPrefixes = []string{
	"the fact that ", "about ", "that ", "my ", "i like ", "i love ", "i live in ", "i am ", "i'm ",
	"i work as ", "i work at ", "i have ", "что ", "про ", "о ", "об ", "мой ", "моё ", "мое ", "мою ",
	"мои ", "моя ", "моего ", "моей ", "я люблю ", "я живу в ", "я живу во ", "меня зовут ", "у меня ",
}

// termSuffixes are stripped from the end of a forget term.
var termSuffixes = []string{" please", " пожалуйста", " now", " too", " тоже", " completely", " полностью"}

// stopTerms name nothing to forget.
var stopTerms = map[string]bool{
	"it": true, "this": true, "that": true, "about it": true, "it all": true, "him": true, "her": true,
	"them": true, "me": true, "это": true, "об этом": true, "про это": true, "его": true, "её": true,
	"ее": true, "их": true, "меня": true, "обо мне": true, "про меня": true, "about me": true,
	"what i said": true, "что я сказал": true,
}

// cleanTerm turns a forget phrase into a term Plan can match: one line,
// without "my"/"that"/"I like" in front, a slot alias mapped to its slot
// ("my e-mail is a@b.c" → "email"), capped, secret-free. ok is false when
// nothing usable is left.
func cleanTerm(raw string) (string, bool) {
	term := trimValue(oneLine(raw))
	term = stripAffixes(term)
	if slot, ok := KnownSlot(term); ok {
		term = slot
	} else if slot, ok := slotOfStatement(term); ok {
		term = slot
	}
	term = capRunes(term, MaxTermRunes)
	if len([]rune(term)) < 2 || stopTerms[strings.ToLower(term)] || isEmptyValue(term) {
		return "", false
	}
	if _, redacted := Redact(term); redacted || strings.Contains(term, Mark) {
		return "", false
	}
	return term, true
}

// stripAffixes removes termPrefixes and termSuffixes until none is left.
func stripAffixes(term string) string {
	for changed := true; changed; {
		changed = false
		for _, p := range termPrefixes {
			if hasPrefixFold(term, p) && len(term) > len(p) {
				term, changed = strings.TrimSpace(term[len(p):]), true
				break
			}
		}
		for _, s := range termSuffixes {
			if hasSuffixFold(term, s) && len(term) > len(s) {
				term, changed = strings.TrimSpace(term[:len(term)-len(s)]), true
				break
			}
		}
	}
	return term
}

// slotOfStatement maps "email is a@b.c" / "город — Москва" to the slot named
// at its start, so forgetting a stated value retires the slot.
func slotOfStatement(term string) (string, bool) {
	for _, sep := range []string{" is ", " — ", " - ", " это ", ": "} {
		if head, _, ok := strings.Cut(strings.ToLower(term), sep); ok {
			return KnownSlot(head)
		}
	}
	return "", false
}

// everythingWords start a phrase about all of memory ("forget everything
// I said"): the heuristic takes no term from it.
var everythingWords = map[string]bool{"everything": true, "all": true, "всё": true, "все": true}

// everythingTerms are the whole terms that mean all of memory.
var everythingTerms = map[string]bool{
	"everything": true, "all": true, "everything about me": true, "all about me": true,
	"all facts": true, "all memory": true, "всё": true, "все": true, "всё обо мне": true,
	"все обо мне": true, "всё про меня": true, "все про меня": true,
}

// isEverything reports whether a forget term asks for everything
// ("FORGET: everything" from the model is a forget-all).
func isEverything(term string) bool {
	return everythingTerms[strings.ToLower(strings.Join(strings.Fields(term), " "))]
}

// hasPrefixFold is strings.HasPrefix ignoring case, comparing the same bytes
// (so a cut never lands inside a rune whose case forms differ in length).
func hasPrefixFold(s, prefix string) bool {
	return len(s) >= len(prefix) && strings.EqualFold(s[:len(prefix)], prefix)
}

// hasSuffixFold is strings.HasSuffix ignoring case.
func hasSuffixFold(s, suffix string) bool {
	return len(s) >= len(suffix) && strings.EqualFold(s[len(s)-len(suffix):], suffix)
}
