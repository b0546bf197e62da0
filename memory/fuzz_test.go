package memory

import (
	"strings"
	"testing"
	"unicode/utf8"
)

// FuzzRedact: Redact never panics, is idempotent, reports a change exactly
// when it made one, and keeps valid UTF-8 valid.
func FuzzRedact(f *testing.F) {
	for _, s := range []string{
		"my card is 4111 1111 1111 1111.", "password is hunter2", "пароль от почты — qwerty",
		"PIN 1234", "sk-proj-abcdefghijklmnopqrstuvwx", "call +1 415 555 2671", "password is [redacted].",
		"a3f5c9e1b2d4f6a8c0e2b4d6f8a0c2e4", "1 4111 1111 1111 1111 1", "token: «abc def»",
		"Bearer abc.def.ghi-123", "код от домофона 1234",
	} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		once, changed := Redact(s)
		if changed != (once != s) {
			t.Fatalf("Redact(%q) = %q, changed=%v", s, once, changed)
		}
		twice, again := Redact(once)
		if twice != once || again {
			t.Fatalf("not idempotent: %q -> %q -> %q", s, once, twice)
		}
		if utf8.ValidString(s) && !utf8.ValidString(once) {
			t.Fatalf("Redact(%q) = %q: invalid UTF-8", s, once)
		}
	})
}

// FuzzParseAnalysis: ParseAnalysis never panics, and whatever it returns is
// clean: known slots, single lines within the caps, nothing a second Redact
// would change, no redaction mark in a fact.
func FuzzParseAnalysis(f *testing.F) {
	for _, s := range []string{
		"FACT name: Anna\nDIGEST: asked about jazz", "NONE", "", "```\nFACT city: Berlin\n```",
		"- **FACT name**: Anna", "1. FACT(preference): likes tea", "FORGET_ALL\nFORGET: email",
		"{\"facts\": []}", "Here is the analysis:\nFACT note: x\nDone.", "FACT name： Анна",
		"FACT note: password is hunter2", "DIGEST: card 4111 1111 1111 1111",
		"FACT hobby: chess\r\nFORGET: everything\r\n",
	} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		u, err := ParseAnalysis(s)
		if err != nil {
			if _, ok := err.(*ParseError); !ok {
				t.Fatalf("error %T %v", err, err)
			}
			return
		}
		for _, fact := range u.Remember {
			checkFact(t, fact)
		}
		checkLine(t, "digest", u.Digest, MaxDigestRunes)
		if _, changed := Redact(u.Digest); changed {
			t.Fatalf("digest %q is not redacted", u.Digest)
		}
		for _, term := range u.Forget {
			checkLine(t, "term", term, MaxTermRunes)
		}
	})
}

func checkFact(t *testing.T, f Fact) {
	t.Helper()
	if _, ok := KnownSlot(f.Slot); !ok {
		t.Fatalf("fact %+v: unknown slot", f)
	}
	if f.Text == "" {
		t.Fatalf("fact %+v: empty", f)
	}
	checkLine(t, "fact", f.Text, MaxFactRunes)
	if _, changed := Redact(f.Text); changed || strings.Contains(f.Text, Mark) {
		t.Fatalf("fact %+v holds a secret", f)
	}
}

func checkLine(t *testing.T, what, s string, max int) {
	t.Helper()
	if n := utf8.RuneCountInString(s); n > max {
		t.Fatalf("%s %q: %d runes > %d", what, s, n, max)
	}
	if strings.ContainsAny(s, "\n\r\u2028\u2029\x00") || !utf8.ValidString(s) || s != strings.TrimSpace(s) {
		t.Fatalf("%s %q is not one clean line", what, s)
	}
}

// FuzzHeuristic: the heuristic never panics and returns only clean facts,
// terms and digest, whatever the user said.
func FuzzHeuristic(f *testing.F) {
	for _, s := range []string{
		"My name is Anna and I live in New York City.", "Меня зовут Анна, я живу в Москве",
		"forget that my email is a@b.com", "Forget everything about me. My name is Bob.",
		"remember that my password is hunter2", "I like jazz, especially Miles.", "забудь, что я люблю джаз",
		"мой любимый цвет — синий", "don't forget that Bob's birthday is May 5",
	} {
		f.Add(s, "Okay.")
	}
	f.Fuzz(func(t *testing.T, user, assistant string) {
		u := Heuristic(Turn{User: user, Assistant: assistant})
		for _, fact := range u.Remember {
			checkFact(t, fact)
		}
		for _, term := range u.Forget {
			checkLine(t, "term", term, MaxTermRunes)
		}
		checkLine(t, "digest", u.Digest, MaxDigestRunes)
		if _, changed := Redact(u.Digest); changed {
			t.Fatalf("digest %q is not redacted", u.Digest)
		}
	})
}

// FuzzOneLine: the plain-line shortcut returns exactly what the full rules do.
func FuzzOneLine(f *testing.F) {
	for _, s := range []string{"", "a", " a", "a ", "a  b", "a b", "tab\there", "line\nbreak", "ünï", "\x00", "ok, fine.", "\u2028", "a\u200bb"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		if got, want := oneLine(s), normalizeLine(s); got != want {
			t.Fatalf("oneLine(%q) = %q, want %q", s, got, want)
		}
	})
}
