package memory

import (
	"regexp"
	"strings"
	"unicode"
	"unicode/utf8"
)

// digestSideRunes caps each side of the heuristic digest line.
const digestSideRunes = 100

// Heuristic extracts an Update from one turn without a model. It takes only
// explicit statements from the user's words, in English and Russian, so
// "I am going home" or "I'm tired" never become a name (upstream C3):
//
//	name        "my name is X", "call me X", "меня зовут X", "моё/мое имя X"
//	email       "my email is X", "моя почта X"
//	city        "I live in X", "я живу в X"
//	preference  "I like/love X", "I don't like/hate X", "my favorite X is Y",
//	            "я люблю X", "я не люблю X", "мой любимый X — Y"
//	note        "remember that X", "remember: X", "don't forget that X",
//	            "запомни, что X", "запомни X", "не забудь, что X"
//	forget all  "forget everything (about me)", "forget all", "забудь всё (обо мне)"
//	forget      "forget that X", "forget my X", "forget about X", "забудь, что X", "забудь X"
//
// Names and cities are capitalised words (at most three, stopping at
// punctuation or "and"). Remember/forget count only as requests to Nexy: at
// the start of a clause, after "please" or "Nexy," at most, so "do you
// remember that song" and "don't forget" are not requests. A fact that holds
// a secret is dropped. The digest is "asked: …; answered: …" built from this
// turn alone, never from an older digest (upstream C6).
func Heuristic(t Turn) Update {
	text := oneLine(t.User)
	u := Update{Method: MethodHeuristic}
	var spans [][2]int
	u.ForgetAll, u.Forget, spans = heuristicForget(text)
	u.Remember = heuristicFacts(mask(text, spans))
	u.Digest = heuristicDigest(text, oneLine(t.Assistant))
	return u
}

// mask replaces the byte ranges in spans (ascending, not overlapping) with
// a sentence break, so no fact is read out of a forget request: "forget that
// my email is a@b.c" must not store the email it asks to forget.
func mask(text string, spans [][2]int) string {
	var b strings.Builder
	last := 0
	for _, sp := range spans {
		if sp[0] < last {
			continue
		}
		b.WriteString(text[last:sp[0]])
		b.WriteString(" . ")
		last = sp[1]
	}
	b.WriteString(text[last:])
	return b.String()
}

// heuristicFacts runs every fact extractor over text and keeps the clean,
// secret-free results.
func heuristicFacts(text string) []Fact {
	var facts []Fact
	add := func(slot, value string) {
		if f, ok := cleanFact(slot, value); ok && len(facts) < MaxFactsPerUpdate {
			facts = append(facts, f)
		}
	}
	if v := extractName(text); v != "" {
		add(SlotName, v)
	}
	if v := extractEmail(text); v != "" {
		add(SlotEmail, v)
	}
	if v := extractCity(text); v != "" {
		add(SlotCity, v)
	}
	for _, v := range extractPreferences(text) {
		add(SlotPreference, v)
	}
	for _, v := range extractNotes(text) {
		add(SlotNote, v)
	}
	return facts
}

// heuristicDigest is one line "asked: …; answered: …". Secrets are redacted
// before cutting, so a cut can never leave half a card number behind.
func heuristicDigest(user, assistant string) string {
	side := func(label, s string) string {
		s, _ = Redact(s)
		if s = cutRunes(s, digestSideRunes); s == "" {
			return ""
		}
		return label + ": " + s
	}
	var parts []string
	for _, p := range []string{side("asked", user), side("answered", assistant)} {
		if p != "" {
			parts = append(parts, p)
		}
	}
	return cleanDigest(strings.Join(parts, "; "))
}

// wordBoundary is what may precede a keyword: start or a non-letter. Go's
// \b is ASCII-only and would fail on Cyrillic.
const wordBoundary = `(?:^|[^\p{L}\p{N}'’])`

var (
	nameRE   = regexp.MustCompile(`(?i)` + wordBoundary + `(my name is|my name's|меня зовут|мо[её] имя|call me|зови меня|называй меня)\s+`)
	emailRE  = regexp.MustCompile(`(?i)` + wordBoundary + `(?:my e-?mail(?: address)?|моя почта|мой (?:e-?mail|имейл|емейл|адрес почты|адрес электронной почты))(?:\s*(?:is|это|:|—|-)\s*|\s+)([A-Za-z0-9._%+-]+@[A-Za-z0-9.-]+\.[A-Za-z]{2,})`)
	cityRE   = regexp.MustCompile(`(?i)` + wordBoundary + `(?:i live in|i'm living in|i am living in|я живу во?)\s+`)
	prefRE   = regexp.MustCompile(`(?i)` + wordBoundary + `(i (?:really )?(?:like|love|enjoy|adore)|i (?:really )?(?:don't|do not) like|i hate|я (?:очень )?(?:люблю|обожаю)|я не люблю|я ненавижу)\s+`)
	favEnRE  = regexp.MustCompile(`(?i)` + wordBoundary + `my favou?rite\s+([\p{L}\p{N} '-]{1,40}?)\s+(?:is|are)\s+`)
	favRuRE  = regexp.MustCompile(`(?i)` + wordBoundary + `(?:мой|моя|моё|мое|мои)\s+(любим(?:ый|ая|ое|ые))\s+([\p{L}\p{N} -]{1,40}?)\s*(?:—|–|-|:|это)\s*`)
	noteEnRE = regexp.MustCompile(`(?i)` + wordBoundary + `(remember|don't forget|do not forget)(?:\s*,?\s*that\s+|\s*:\s*)`)
	noteRuRE = regexp.MustCompile(`(?i)` + wordBoundary + `(?:(запомни)(?:\s*[,:]?\s*что\s+|\s*[,:]\s*|\s+)|(не забудь|не забывай)\s*,?\s*что\s+)`)
)

// nameStop are words after "my name is" that are not a name.
var nameStop = map[string]bool{
	"not": true, "a": true, "an": true, "the": true, "is": true, "what": true, "that": true,
	"this": true, "it": true, "so": true, "just": true, "also": true, "actually": true,
	"really": true, "and": true, "but": true, "or": true, "very": true, "too": true, "when": true,
	"back": true, "later": true, "tomorrow": true, "now": true, "please": true, "at": true,
	"не": true, "так": true, "тоже": true, "как": true, "что": true, "это": true, "и": true,
	"а": true, "но": true, "уже": true, "же": true, "вообще": true, "просто": true, "потом": true,
}

// extractName returns the first stated name. After "my name is" (and the
// Russian forms) a lower-case single word is accepted, since speech
// recognition does not always capitalise; "call me" needs capitals, since
// "call me back" is a request, not a name.
func extractName(text string) string {
	for _, loc := range nameRE.FindAllStringSubmatchIndex(text, -1) {
		key := strings.ToLower(text[loc[2]:loc[3]])
		lenient := !strings.Contains(key, "call") && !strings.Contains(key, "зови") && !strings.Contains(key, "называй")
		if name := capitalWords(text[loc[1]:], 3, lenient); name != "" {
			return name
		}
	}
	return ""
}

// capitalWords returns up to max leading capitalised words of s, stopping at
// punctuation or a lower-case word. With lenient, a single lower-case first
// word that is not a stop word is taken and capitalised.
func capitalWords(s string, max int, lenient bool) string {
	words := leadingWords(s, max)
	var out []string
	for _, w := range words {
		r, _ := utf8.DecodeRuneInString(w)
		if !unicode.IsUpper(r) || nameStop[strings.ToLower(w)] {
			break
		}
		out = append(out, w)
	}
	if len(out) == 0 && lenient && len(words) > 0 && !nameStop[strings.ToLower(words[0])] {
		r, size := utf8.DecodeRuneInString(words[0])
		out = []string{string(unicode.ToUpper(r)) + words[0][size:]}
	}
	return strings.Join(out, " ")
}

// leadingWords returns up to max words at the start of s, a word being
// letters with inner hyphens or apostrophes; it stops at anything else.
func leadingWords(s string, max int) []string {
	var out []string
	for len(out) < max {
		s = strings.TrimLeft(s, " ")
		n := 0
		for n < len(s) {
			r, size := utf8.DecodeRuneInString(s[n:])
			if !unicode.IsLetter(r) && !(n > 0 && strings.ContainsRune("-'’", r)) {
				break
			}
			n += size
		}
		if n == 0 {
			break
		}
		out = append(out, strings.TrimRight(s[:n], "-'’"))
		if s = s[n:]; s != "" && s[0] != ' ' {
			break
		}
	}
	return out
}

func extractEmail(text string) string {
	if m := emailRE.FindStringSubmatch(text); m != nil {
		return strings.TrimRight(m[1], ".")
	}
	return ""
}

func extractCity(text string) string {
	for _, loc := range cityRE.FindAllStringIndex(text, -1) {
		rest := text[loc[1]:]
		if w := leadingWords(rest, 1); len(w) == 1 && strings.EqualFold(w[0], "the") {
			rest = strings.TrimLeft(rest, " ")[len(w[0]):]
		}
		if city := capitalWords(rest, 3, false); city != "" {
			return city
		}
	}
	return ""
}
