package tts

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"unicode"
	"unicode/utf8"
)

// Golden files for Speakable live in ../testdata/sanitize/*.txt: pairs of
//
//	> display segment (escaped as in the splitter goldens)
//	< expected TTS input ("<" alone: nothing to say)
//
// with "#" comments and blank lines in between. -update rewrites the "<" lines.

type sanCase struct {
	line      int
	in, want  string
	wantIndex int // line index of the "<" line, -1 if missing
}

func sanLoad(t *testing.T, path string) ([]string, []*sanCase) {
	t.Helper()
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	lines := strings.Split(strings.TrimRight(string(data), "\n"), "\n")
	var cases []*sanCase
	for i, line := range lines {
		payload := func(prefix string) string {
			s, err := segUnescape(strings.TrimPrefix(strings.TrimPrefix(line, prefix), " "))
			if err != nil {
				t.Fatalf("%s:%d: %v", path, i+1, err)
			}
			return s
		}
		switch {
		case line == "" || strings.HasPrefix(line, "#"):
		case line == ">" || strings.HasPrefix(line, "> "):
			cases = append(cases, &sanCase{line: i + 1, in: payload(">"), wantIndex: -1})
		case line == "<" || strings.HasPrefix(line, "< "):
			if len(cases) == 0 || cases[len(cases)-1].wantIndex >= 0 {
				t.Fatalf("%s:%d: \"<\" line without its \">\" line", path, i+1)
			}
			c := cases[len(cases)-1]
			c.want, c.wantIndex = payload("<"), i
		default:
			t.Fatalf("%s:%d: unrecognized line %q", path, i+1, line)
		}
	}
	if len(cases) == 0 {
		t.Fatalf("%s: no cases", path)
	}
	return lines, cases
}

// sanWrite rewrites the "<" lines (inserting missing ones after their ">").
func sanWrite(path string, lines []string, cases []*sanCase) error {
	byLine := map[int]*sanCase{}
	for _, c := range cases {
		byLine[c.line-1] = c
	}
	var b strings.Builder
	for i, line := range lines {
		if strings.HasPrefix(line, "<") {
			continue
		}
		b.WriteString(line + "\n")
		if c := byLine[i]; c != nil {
			b.WriteString(strings.TrimRight("< "+segEscape(c.want), " ") + "\n")
		}
	}
	return os.WriteFile(path, []byte(b.String()), 0o644)
}

func TestSpeakableGolden(t *testing.T) {
	for _, path := range segGoldenFiles(t, "sanitize") {
		lines, cases := sanLoad(t, path)
		for _, c := range cases {
			got := Speakable(c.in)
			if again := Speakable(got); again != got {
				t.Errorf("%s:%d: not idempotent: %q → %q → %q", filepath.Base(path), c.line, c.in, got, again)
			}
			if segUpdating() {
				c.want = got
				continue
			}
			if c.wantIndex < 0 {
				t.Errorf("%s:%d: missing \"<\" line", filepath.Base(path), c.line)
			} else if got != c.want {
				t.Errorf("%s:%d: Speakable(%q)\n got %q\nwant %q", filepath.Base(path), c.line, c.in, got, c.want)
			}
		}
		if segUpdating() {
			if err := sanWrite(path, lines, cases); err != nil {
				t.Fatal(err)
			}
		}
	}
}

// TestSpeakableKeeps pins upstream's over-cleaning bugs (llm-memory.md §8 B3):
// these must reach the voice unchanged.
func TestSpeakableKeeps(t *testing.T) {
	for _, s := range []string{
		"It costs £5 or 6€.", "It is -9°C outside.", "I don’t know.", "I like C# and F#.",
		"Rock & roll, 100% sure.", "Wait — what?", "Привет, мир!", "東京は晴れです。",
		"“Quoted” and ‘single’.", "x = 2 * 3", "snake_case_name", "~5 minutes", "#hashtag",
		"Settings → Privacy", "1. First item.", "user@example.com", "नमस्ते दुनिया", "كيف حالك؟",
	} {
		if got := Speakable(s); got != s {
			t.Errorf("Speakable(%q) = %q, want it unchanged", s, got)
		}
	}
}

func TestSpeakableNothingToSay(t *testing.T) {
	for _, s := range []string{"", "   ", "😀", "👍🏽🎉", "---", "**", "```", "...", "— ✅ —", "\u200b", "🇺🇦", "👨‍👩‍👧"} {
		if got := Speakable(s); got != "" {
			t.Errorf("Speakable(%q) = %q, want empty", s, got)
		}
	}
}

// FuzzSpeakable: no panic, valid UTF-8, idempotent, collapsed spaces, no
// emoji left, and "" exactly when nothing is speakable.
func FuzzSpeakable(f *testing.F) {
	for _, s := range []string{
		"**Bold** and `code` and # hash C# -- dash == eq __u__",
		"I don’t know — maybe 😊 ok. **Bold** text # here.",
		"Price is £5 or 6€ … — don’t worry 😀.",
		"See [the docs](https://example.com/a_(b)) or https://www.go.dev/doc?x=1.",
		"## Title\n- item *one*\n- [ ] task\n> quote\n| a | b |\n|---|---|\n```json\n{\"x\":1}\n```",
		"👨‍👩‍👧 1️⃣ #️⃣ 🇺🇦 🏴󠁧󠁢󠁳󠁣󠁴󠁿 ↔️ ©️ ❤️",
		"a\xffb\x00c\u200bd\u202e",
		"![alt](x.png) <https://a.b/c> www.x.org",
	} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, in string) {
		out := Speakable(in)
		if !utf8.ValidString(out) {
			t.Fatalf("invalid UTF-8 out of %q: %q", in, out)
		}
		if again := Speakable(out); again != out {
			t.Fatalf("not idempotent: %q → %q → %q", in, out, again)
		}
		if strings.TrimSpace(out) != out || strings.Contains(out, "  ") || strings.ContainsAny(out, "\n\r\t") {
			t.Fatalf("whitespace not collapsed: %q → %q", in, out)
		}
		if out != "" && !hasLetterOrNumber(out) {
			t.Fatalf("unspeakable output %q from %q", out, in)
		}
		for _, r := range out {
			if isPictograph(r) || r == vs16 || isInvisible(r) || r == utf8.RuneError || unicode.IsControl(r) {
				t.Fatalf("output %q of %q keeps %U", out, in, r)
			}
		}
	})
}

func BenchmarkSpeakable(b *testing.B) {
	segs := NewSplitter(DefaultSplitterConfig()).Push(segBenchAnswer + " ")
	b.ReportAllocs()
	for b.Loop() {
		for _, s := range segs {
			_ = Speakable(s)
		}
	}
}
