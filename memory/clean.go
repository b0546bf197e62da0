package memory

import (
	"strings"
)

// cleanFact makes a fact storable or rejects it: one line, unwrapped from
// quotes, not a placeholder ("none", "n/a"), passing the long-term filter,
// capped at MaxFactRunes, and free of secrets. A fact that held a secret is
// dropped whole rather than stored redacted (SPEC §8: secrets are never
// stored, and "password: [redacted]" is no fact worth keeping).
func cleanFact(slot, text string) (Fact, bool) {
	text = trimValue(oneLine(text))
	if isEmptyValue(text) || !longTerm(text) {
		return Fact{}, false
	}
	if _, redacted := Redact(text); redacted || strings.Contains(text, Mark) {
		return Fact{}, false
	}
	text = cutRunes(text, MaxFactRunes)
	if _, redacted := Redact(text); redacted {
		return Fact{}, false // the cut made a new match (a shortened digit run)
	}
	return Fact{Slot: NormalizeSlot(slot), Text: text}, true
}

// cleanDigest makes a digest line: one line, no '|' (MergeDigest joins
// entries with " | ", so an entry can never split into two), secrets
// redacted, capped at MaxDigestRunes. Unlike a fact, a digest keeps its
// redacted text: "asked about the wifi password [redacted]" is still a
// useful summary.
func cleanDigest(s string) string {
	return redactCapped(strings.ReplaceAll(trimValue(oneLine(s)), "|", "/"), MaxDigestRunes)
}

// redactCapped returns s redacted and cut to n runes such that Redact leaves
// it unchanged: cutting can expose a match (19 digits cut to 16) and
// redacting can lengthen the text ("1234" → Mark), so it alternates until
// both hold, giving up with "" in the (never seen) case it does not settle.
func redactCapped(s string, n int) string {
	for i := 0; i < 4; i++ {
		s, _ = Redact(s)
		s = cutRunes(s, n)
		if r, changed := Redact(s); !changed {
			return r
		}
	}
	return ""
}

// Long-term filter (upstream 5.3 step 4): only explicit, stable facts.
var (
	// hedges mark a guess, not something the user stated.
	hedges = []string{"implied", "implies", "inferred", "infer", "likely", "unlikely", "maybe", "perhaps",
		"seems", "seem", "seemingly", "probably", "possibly", "possible", "apparently", "presumably",
		"возможно", "вероятно", "кажется", "наверное", "видимо", "похоже", "предположительно"}
	// aiStatements are the model talking about itself.
	aiStatements = []string{"as an ai", "as a language model", "language model", "i don't have memory",
		"i do not have memory", "don't have the ability to remember", "no memory of", "как ии",
		"как искусственный интеллект", "у меня нет памяти"}
	// oneOffs are one-time requests, which belong in the digest, not in facts.
	oneOffs = []string{"asked me to", "asked you to", "asked the assistant", "requested", "can you",
		"could you", "find me", "wants me to", "wants you to", "попросил", "попросила", "просит", "найди"}
)

// longTerm reports whether text passes the long-term filter.
func longTerm(text string) bool {
	for _, list := range [][]string{hedges, aiStatements, oneOffs} {
		for _, w := range list {
			if containsWord(text, w) {
				return false
			}
		}
	}
	return true
}
