package tts

import (
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
	"unicode"
	"unicode/utf8"
)

// Golden files for the splitter live in ../testdata/splitter/*.txt:
//
//	# comment
//	=== case name
//	config max=60 first=2 min=3 chars=15   (optional; omitted keys = defaults)
//	> one delta, exactly as streamed
//	> the next delta
//	< expected segment 1
//	< expected segment 2
//
// Payloads after "> " and "< " are escaped: \n \r \t \\, \s for a space
// (needed only at the ends of a line), \xHH for a raw byte, \u{HHHH}.
// `go test ./tts -run Golden -update` rewrites the "<" lines from the output.

func init() {
	// Registered only once even if another test file in the package also
	// defines -update.
	if flag.Lookup("update") == nil {
		flag.Bool("update", false, "rewrite golden files under testdata/")
	}
}

// segUpdating reports whether -update was given.
func segUpdating() bool {
	f := flag.Lookup("update")
	return f != nil && f.Value.String() == "true"
}

// segUnescape decodes a golden payload.
func segUnescape(s string) (string, error) {
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		if s[i] != '\\' {
			b.WriteByte(s[i])
			continue
		}
		if i+1 >= len(s) {
			return "", fmt.Errorf("dangling backslash in %q", s)
		}
		i++
		switch s[i] {
		case 'n':
			b.WriteByte('\n')
		case 'r':
			b.WriteByte('\r')
		case 't':
			b.WriteByte('\t')
		case 's':
			b.WriteByte(' ')
		case '\\':
			b.WriteByte('\\')
		case 'x':
			if i+2 >= len(s) {
				return "", fmt.Errorf("short \\x in %q", s)
			}
			v, err := strconv.ParseUint(s[i+1:i+3], 16, 8)
			if err != nil {
				return "", fmt.Errorf("bad \\x in %q: %w", s, err)
			}
			b.WriteByte(byte(v))
			i += 2
		case 'u':
			end := strings.IndexByte(s[i:], '}')
			if i+1 >= len(s) || s[i+1] != '{' || end < 0 {
				return "", fmt.Errorf("bad \\u{...} in %q", s)
			}
			v, err := strconv.ParseUint(s[i+2:i+end], 16, 32)
			if err != nil {
				return "", fmt.Errorf("bad \\u{...} in %q: %w", s, err)
			}
			b.WriteRune(rune(v))
			i += end
		default:
			return "", fmt.Errorf("unknown escape \\%c in %q", s[i], s)
		}
	}
	return b.String(), nil
}

// segEscape encodes a payload so that it fits on one golden line.
func segEscape(s string) string {
	var b strings.Builder
	for i := 0; i < len(s); {
		r, n := utf8.DecodeRuneInString(s[i:])
		switch {
		case r == utf8.RuneError && n == 1:
			fmt.Fprintf(&b, `\x%02x`, s[i])
		case r == '\\':
			b.WriteString(`\\`)
		case r == '\n':
			b.WriteString(`\n`)
		case r == '\r':
			b.WriteString(`\r`)
		case r == '\t':
			b.WriteString(`\t`)
		case r == ' ' && (i == 0 || i+n == len(s)):
			b.WriteString(`\s`)
		case unicode.IsControl(r) || r == 0x2028 || r == 0x2029 || (unicode.IsSpace(r) && r != ' ') ||
			r == zwj || (r >= 0xFE00 && r <= 0xFE0F) || r == 0x200B || r == 0xFEFF || r == 0xAD:
			fmt.Fprintf(&b, `\u{%04X}`, r)
		default:
			b.WriteString(s[i : i+n])
		}
		i += n
	}
	return b.String()
}

// segCase is one splitter golden case.
type segCase struct {
	file, name string
	line       int
	cfg        SplitterConfig
	deltas     []string
	want       []string
}

// segFile is a parsed golden file, kept line by line for -update.
type segFile struct {
	path   string
	header []string
	cases  []*segCase
	raw    [][]string // the non-"<" lines of each case, in order
}

func segParseConfig(line string) (SplitterConfig, error) {
	var cfg SplitterConfig
	for _, kv := range strings.Fields(strings.TrimPrefix(line, "config")) {
		k, v, ok := strings.Cut(kv, "=")
		n, err := strconv.Atoi(v)
		if !ok || err != nil {
			return cfg, fmt.Errorf("bad config item %q", kv)
		}
		switch k {
		case "first":
			cfg.FirstMinWords = n
		case "min":
			cfg.MinWords = n
		case "chars":
			cfg.MinChars = n
		case "max":
			cfg.MaxChars = n
		default:
			return cfg, fmt.Errorf("unknown config key %q", k)
		}
	}
	return cfg, cfg.Validate()
}

func segLoadFile(t *testing.T, path string) *segFile {
	t.Helper()
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	f := &segFile{path: path}
	var cur *segCase
	for i, line := range strings.Split(strings.TrimRight(string(data), "\n"), "\n") {
		fail := func(err error) { t.Fatalf("%s:%d: %v", path, i+1, err) }
		switch {
		case strings.HasPrefix(line, "=== "):
			cur = &segCase{file: filepath.Base(path), name: strings.TrimPrefix(line, "=== "), line: i + 1}
			f.cases = append(f.cases, cur)
			f.raw = append(f.raw, []string{line})
		case cur == nil:
			f.header = append(f.header, line)
		case line == "":
		case strings.HasPrefix(line, "#"):
			f.raw[len(f.raw)-1] = append(f.raw[len(f.raw)-1], line)
		case strings.HasPrefix(line, "config"):
			cfg, err := segParseConfig(line)
			if err != nil {
				fail(err)
			}
			cur.cfg = cfg
			f.raw[len(f.raw)-1] = append(f.raw[len(f.raw)-1], line)
		case line == ">" || strings.HasPrefix(line, "> "):
			d, err := segUnescape(strings.TrimPrefix(strings.TrimPrefix(line, ">"), " "))
			if err != nil {
				fail(err)
			}
			cur.deltas = append(cur.deltas, d)
			f.raw[len(f.raw)-1] = append(f.raw[len(f.raw)-1], line)
		case strings.HasPrefix(line, "< "):
			seg, err := segUnescape(strings.TrimPrefix(line, "< "))
			if err != nil {
				fail(err)
			}
			cur.want = append(cur.want, seg)
		default:
			fail(fmt.Errorf("unrecognized line %q", line))
		}
	}
	if len(f.cases) == 0 {
		t.Fatalf("%s: no cases", path)
	}
	return f
}

// write rewrites the file with the cases' want lines.
func (f *segFile) write() error {
	var b strings.Builder
	for _, h := range f.header {
		b.WriteString(h + "\n")
	}
	for i, c := range f.cases {
		for _, l := range f.raw[i] {
			b.WriteString(l + "\n")
		}
		for _, w := range c.want {
			b.WriteString("< " + segEscape(w) + "\n")
		}
		if i < len(f.cases)-1 {
			b.WriteString("\n")
		}
	}
	return os.WriteFile(f.path, []byte(b.String()), 0o644)
}

func segGoldenFiles(t *testing.T, dir string) []string {
	t.Helper()
	files, err := filepath.Glob(filepath.Join("..", "testdata", dir, "*.txt"))
	if err != nil || len(files) == 0 {
		t.Fatalf("no golden files in testdata/%s: %v", dir, err)
	}
	return files
}

// segRun streams deltas through a fresh splitter and returns every segment.
func segRun(cfg SplitterConfig, deltas []string) []string {
	s := NewSplitter(cfg)
	var out []string
	for _, d := range deltas {
		out = append(out, s.Push(d)...)
	}
	return append(out, s.Flush()...)
}

// segChunkings returns the ways the same text is re-streamed: whole, byte
// by byte, rune by rune, word by word (whitespace attached to the word
// before it) and in 4-byte pieces that ignore rune boundaries.
func segChunkings(text string) map[string][]string {
	var bytes, runes, words, fours []string
	for i := 0; i < len(text); i++ {
		bytes = append(bytes, text[i:i+1])
	}
	for i := 0; i < len(text); {
		_, n := utf8.DecodeRuneInString(text[i:])
		runes = append(runes, text[i:i+n])
		i += n
	}
	start := 0
	for i := 1; i <= len(text); i++ {
		if i == len(text) || (text[i] != ' ' && text[i] != '\n' && (text[i-1] == ' ' || text[i-1] == '\n')) {
			words = append(words, text[start:i])
			start = i
		}
	}
	for i := 0; i < len(text); i += 4 {
		fours = append(fours, text[i:min(i+4, len(text))])
	}
	return map[string][]string{"whole": {text}, "bytes": bytes, "runes": runes, "words": words, "fours": fours}
}

// segCheckInvariants verifies that segments are non-empty, trimmed, and
// that input == ws seg1 ws seg2 ... segN ws with only whitespace in ws.
func segCheckInvariants(t testing.TB, input string, segs []string) {
	t.Helper()
	rest := input
	for i, seg := range segs {
		if seg == "" {
			t.Fatalf("segment %d is empty; segments %q", i, segs)
		}
		if strings.TrimFunc(seg, unicode.IsSpace) != seg {
			t.Fatalf("segment %d %q has whitespace at an edge", i, seg)
		}
		rest = strings.TrimLeftFunc(rest, unicode.IsSpace)
		if !strings.HasPrefix(rest, seg) {
			t.Fatalf("segment %d %q is not the next input text; remaining input %q", i, seg, rest)
		}
		rest = rest[len(seg):]
	}
	if strings.TrimFunc(rest, unicode.IsSpace) != "" {
		t.Fatalf("input not covered by segments; left %q (segments %q)", rest, segs)
	}
}

func TestSplitterGolden(t *testing.T) {
	for _, path := range segGoldenFiles(t, "splitter") {
		f := segLoadFile(t, path)
		for _, c := range f.cases {
			t.Run(c.file+"/"+c.name, func(t *testing.T) {
				got := segRun(c.cfg, c.deltas)
				input := strings.Join(c.deltas, "")
				segCheckInvariants(t, input, got)
				for how, deltas := range segChunkings(input) {
					if again := segRun(c.cfg, deltas); !slices.Equal(again, got) {
						t.Errorf("streamed %s: got %q, as written %q", how, again, got)
					}
				}
				if segUpdating() {
					c.want = got
					return
				}
				if !slices.Equal(got, c.want) {
					t.Errorf("%s:%d\n got: %s\nwant: %s", c.file, c.line, segQuote(got), segQuote(c.want))
				}
			})
		}
		if segUpdating() {
			if err := f.write(); err != nil {
				t.Fatal(err)
			}
		}
	}
}

func segQuote(segs []string) string {
	q := make([]string, len(segs))
	for i, s := range segs {
		q[i] = strconv.Quote(s)
	}
	return "[" + strings.Join(q, ", ") + "]"
}

// TestSplitterUpstreamVectors pins the protocol.md Appendix A.1/A.3 inputs
// that upstream got wrong, independent of the golden files.
func TestSplitterUpstreamVectors(t *testing.T) {
	cases := []struct {
		deltas []string
		want   []string
	}{
		{[]string{"Hello! How can I help you today? I am", " Nexy, your assistant. Ok."},
			[]string{"Hello! How can I help you today?", "I am Nexy, your assistant.", "Ok."}},
		{[]string{"Hel", "lo there, my friend. Wait... what?! Version 1.2.3 is out. Yes."},
			[]string{"Hello there, my friend.", "Wait... what?! Version 1.2.3 is out.", "Yes."}},
		{[]string{"The answer is 42"}, []string{"The answer is 42"}},
		{[]string{"Ok."}, []string{"Ok."}},
		{[]string{"Yes! I can do that for you."}, []string{"Yes! I can do that for you."}},
		{[]string{"Dr. Smith said hi. Call me at 5:30 p.m. today."},
			[]string{"Dr. Smith said hi.", "Call me at 5:30 p.m. today."}},
		{[]string{"Plain text answer without json. Second."},
			[]string{"Plain text answer without json.", "Second."}},
		{[]string{"Hi.There is no space."}, []string{"Hi.There is no space."}},
		{[]string{"e.g. this and i.e. that."}, []string{"e.g. this and i.e. that."}},
		{[]string{"Open main.py and v1.2.3 at 192.168.1.1:8080 now. Done"},
			[]string{"Open main.py and v1.2.3 at 192.168.1.1:8080 now.", "Done"}},
	}
	for _, c := range cases {
		if got := segRun(SplitterConfig{}, c.deltas); !slices.Equal(got, c.want) {
			t.Errorf("%q:\n got %s\nwant %s", c.deltas, segQuote(got), segQuote(c.want))
		}
	}
}

func TestSplitterPushReturnsAsSoonAsComplete(t *testing.T) {
	s := NewSplitter(DefaultSplitterConfig())
	steps := []struct {
		delta string
		want  []string
	}{
		{"Sure, I can help with that.", nil},           // boundary not yet confirmed
		{" ", nil},                                     // still could be an abbreviation
		{"T", []string{"Sure, I can help with that."}}, // next word starts: committed
		{"he weather is 5.", nil},
		{"3 degrees today. ", nil},
		{"Ok", []string{"The weather is 5.3 degrees today."}},
		{".", nil},
	}
	for i, st := range steps {
		if got := s.Push(st.delta); !slices.Equal(got, st.want) {
			t.Fatalf("step %d Push(%q) = %q, want %q", i, st.delta, got, st.want)
		}
	}
	if got := s.Flush(); !slices.Equal(got, []string{"Ok."}) {
		t.Fatalf("Flush = %q, want [Ok.]", got)
	}
	// Reusable after Flush, with the first-segment threshold again.
	if got := segRunOn(s, "Hi there. Bye now."); !slices.Equal(got, []string{"Hi there.", "Bye now."}) {
		t.Fatalf("reuse: %q", got)
	}
	if got := s.Flush(); got != nil {
		t.Fatalf("Flush of an empty splitter = %q, want nil", got)
	}
}

func segRunOn(s *Splitter, text string) []string {
	return append(s.Push(text), s.Flush()...)
}

func TestSplitterConfigValidate(t *testing.T) {
	if err := DefaultSplitterConfig().Validate(); err != nil {
		t.Fatalf("defaults invalid: %v", err)
	}
	if err := (SplitterConfig{}).Validate(); err != nil {
		t.Fatalf("zero config invalid: %v", err)
	}
	bad := map[string]SplitterConfig{
		"FirstMinWords": {FirstMinWords: -1},
		"MinWords":      {MinWords: -2},
		"MinChars must": {MinChars: -1},
		"MaxChars must": {MaxChars: 10},
		"must not":      {MinChars: 100, MaxChars: 60},
	}
	for want, cfg := range bad {
		err := cfg.Validate()
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("Validate(%+v) = %v, want error mentioning %q", cfg, err, want)
		}
	}
	// NewSplitter never fails: invalid values fall back to usable ones.
	s := NewSplitter(SplitterConfig{MinWords: -5, MaxChars: 3, MinChars: 70})
	if s.cfg.MinWords != defaultMinWords || s.cfg.MaxChars != 70 {
		t.Fatalf("normalized config = %+v", s.cfg)
	}
}

// TestSplitterBoundedBuffer streams long input with no sentence ends and
// checks that the pending buffer stays bounded and nothing is lost.
func TestSplitterBoundedBuffer(t *testing.T) {
	inputs := map[string]string{
		"words":      strings.Repeat("word ", 20000),
		"no spaces":  strings.Repeat("x", 100000),
		"spaces":     "start " + strings.Repeat(" ", 100000) + "end",
		"newlines":   "a\n" + strings.Repeat("\n", 100000) + "b",
		"bangs":      "Hey" + strings.Repeat("!", 100000) + " you",
		"cjk":        strings.Repeat("漢字かな", 20000),
		"held short": strings.Repeat("Ok. ", 20000),
	}
	for name, in := range inputs {
		s := NewSplitter(DefaultSplitterConfig())
		var segs []string
		for i := 0; i < len(in); i += 7 {
			segs = append(segs, s.Push(in[i:min(i+7, len(in))])...)
			if cap(s.buf) > 8*1024 {
				t.Fatalf("%s: buffer grew to %d bytes at input offset %d", name, cap(s.buf), i)
			}
		}
		segs = append(segs, s.Flush()...)
		segCheckInvariants(t, in, segs)
		for _, seg := range segs {
			if n := utf8.RuneCountInString(seg); n > defaultMaxChars+runSlack+1 {
				t.Fatalf("%s: segment of %d runes exceeds MaxChars", name, n)
			}
		}
	}
}

// TestSplitterMaxCharsCut checks where a long sentence is cut.
func TestSplitterMaxCharsCut(t *testing.T) {
	cfg := SplitterConfig{MaxChars: 60}
	// A comma after a third of MaxChars wins over later spaces.
	in := "this sentence keeps going for quite a while, and then it goes on and on without any end at all"
	got := segRun(cfg, []string{in})
	if len(got) < 2 || got[0] != "this sentence keeps going for quite a while," {
		t.Fatalf("comma cut: %q", got)
	}
	// A comma too early is ignored in favour of the last space.
	in = "so, this sentence keeps going for quite a while and then it goes on and on without end"
	got = segRun(cfg, []string{in})
	if len(got) < 2 || strings.HasSuffix(got[0], ",") || utf8.RuneCountInString(got[0]) < 40 {
		t.Fatalf("space cut: %q", got)
	}
	// No space at all: a hard cut that keeps an emoji sequence whole.
	in = strings.Repeat("a", 59) + "👍🏽" + strings.Repeat("b", 30)
	got = segRun(cfg, []string{in})
	for _, seg := range got {
		if strings.HasPrefix(seg, "🏽") || strings.HasSuffix(seg, "👍") {
			t.Fatalf("hard cut split a skin-tone sequence: %q", got)
		}
	}
	segCheckInvariants(t, in, got)
}

func TestWordCount(t *testing.T) {
	cases := map[string]int{
		"I'm fine":          2,
		"main.py 1.2.3":     2,
		"Привет мир":        2,
		"日本語":               2,
		"你好":                1,
		"你好，世界":             2,
		"我是Nexy助手":          3,
		"5:30 p.m.":         2,
		"— 😀 !":             0,
		"well-known e-mail": 2,
	}
	for in, want := range cases {
		s := NewSplitter(DefaultSplitterConfig())
		s.buf = append(s.buf, in...)
		for i := 0; i < len(in); {
			r, n := utf8.DecodeRuneInString(in[i:])
			s.count(r, i, n)
			i += n
		}
		if s.words != want {
			t.Errorf("words(%q) = %d, want %d", in, s.words, want)
		}
	}
}

// FuzzSplitter checks invariants on arbitrary input and chunking: no panic,
// the segments tile the input, none empty or untrimmed, and the result does
// not depend on how the input is cut into deltas.
func FuzzSplitter(f *testing.F) {
	seeds := []string{
		"Hello! How can I help you today? I am Nexy, your assistant. Ok.",
		"Hel" + "lo there. Wait... what?! Version 1.2.3 is out. Yes.",
		"Dr. Smith said hi. Call me at 5:30 p.m. today.",
		"Это т.е. пример, см. стр. 5. Ул. Ленина, д. 3. И т.д. Потом.",
		"你好。我是Nexy。「好的。」谢谢！",
		"1. First\n2. Second\n\n- third",
		"He said \"hi.\" Then (left.) Next",
		"a\xe6\x97\xa5\xffb. c",
		"👨‍👩‍👧 family. 🇺🇦 flag!",
		strings.Repeat("long clause, ", 40),
	}
	for _, s := range seeds {
		f.Add(s, []byte{3, 1, 4, 1, 5, 9, 2, 6}, uint8(0))
	}
	f.Fuzz(func(t *testing.T, in string, cuts []byte, maxExtra uint8) {
		cfg := SplitterConfig{MaxChars: minMaxChars + int(maxExtra)}
		whole := segRun(cfg, []string{in})
		segCheckInvariants(t, in, whole)
		var deltas []string
		rest := in
		for i := 0; rest != ""; i++ {
			n := 1
			if len(cuts) > 0 {
				n = int(cuts[i%len(cuts)])%9 + 1
			}
			n = min(n, len(rest))
			deltas = append(deltas, rest[:n])
			rest = rest[n:]
		}
		if got := segRun(cfg, deltas); !slices.Equal(got, whole) {
			t.Fatalf("chunked %q: got %q, whole %q", deltas, got, whole)
		}
	})
}

// segBenchAnswer is a realistic ~1,500-character answer.
const segBenchAnswer = `Sure! Here is a quick overview of what you asked about. The Safari browser on macOS 15.2 lets you manage extensions from Settings, under the Extensions tab. To open it, press Command and comma, then choose Extensions. You will see a list of everything installed, e.g. ad blockers, password managers and translation tools.

Here are the steps:
1. Open Safari and press Command comma.
2. Select the Extensions tab at the top of the window.
3. Turn an extension on or off with its checkbox.

If something looks wrong, for example a page loads slowly or a button does nothing, try turning extensions off one at a time. Dr. Smith's accessibility guide, updated on 12.03.2025 at 5:30 p.m., also recommends checking VoiceOver settings: press Command F5 to toggle VoiceOver, and use Control Option U to open the rotor. It's a good idea to keep macOS up to date; version 15.2.1 fixed several VoiceOver bugs... but not all of them! Would you like me to open Safari settings for you now? I can also read the list of installed extensions aloud, one by one, so you can decide which ones to keep. Just say the word, and I'll do it. By the way, the weather in Kyiv is -3°C today, so dress warmly if you're going out — and don't forget your umbrella, since light snow is expected around 6 p.m. Anything else I can help with? I'm here whenever you need me, day or night. Have a great evening!`

func segBenchDeltas() []string {
	var deltas []string
	runes := []rune(segBenchAnswer)
	for i := 0; i < len(runes); i += 4 {
		deltas = append(deltas, string(runes[i:min(i+4, len(runes))]))
	}
	return deltas
}

func BenchmarkSplitter(b *testing.B) {
	deltas := segBenchDeltas()
	b.SetBytes(int64(len(segBenchAnswer)))
	b.ReportAllocs()
	segs := 0
	for b.Loop() {
		s := NewSplitter(DefaultSplitterConfig())
		for _, d := range deltas {
			segs += len(s.Push(d))
		}
		segs += len(s.Flush())
	}
	b.ReportMetric(float64(len(deltas)), "deltas/op")
	if segs == 0 {
		b.Fatal("no segments")
	}
}
