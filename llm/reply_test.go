package llm

import (
	"encoding/json"
	"math/rand/v2"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"unicode/utf8"
)

// feedAll runs deltas through a fresh parser and returns everything spoken.
func feedAll(t testing.TB, deltas []string) (string, Reply) {
	t.Helper()
	p := NewReplyParser()
	var b strings.Builder
	for _, d := range deltas {
		out := p.Feed(d)
		if !utf8.ValidString(out) {
			t.Fatalf("Feed(%q) returned invalid UTF-8 %q", d, out)
		}
		b.WriteString(out)
	}
	rest, r := p.Finish()
	b.WriteString(rest)
	if b.String() != r.Text {
		t.Fatalf("spoken %q != Reply.Text %q", b.String(), r.Text)
	}
	return b.String(), r
}

// splitAt cuts s at the given byte offsets (ascending).
func splitAt(s string, cuts ...int) []string {
	var out []string
	prev := 0
	for _, c := range cuts {
		out = append(out, s[prev:c])
		prev = c
	}
	return append(out, s[prev:])
}

// normJSON round-trips v through JSON so json.Number and float64 compare equal.
func normJSON(t *testing.T, v any) any {
	t.Helper()
	b, err := json.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	var out any
	if err := json.Unmarshal(b, &out); err != nil {
		t.Fatal(err)
	}
	return out
}

type replyGolden struct {
	Note    string         `json:"note"`
	Deltas  []string       `json:"deltas"`
	Text    string         `json:"text"`
	Command string         `json:"command"`
	Args    map[string]any `json:"args"`
	JSON    bool           `json:"json"`
	Err     bool           `json:"err"`
}

// TestReplyGolden replays the recorded delta sequences of testdata/reply, both
// as recorded and re-split at every byte (one delta per byte).
func TestReplyGolden(t *testing.T) {
	files, err := filepath.Glob(filepath.Join("..", "testdata", "reply", "*.json"))
	if err != nil || len(files) < 30 {
		t.Fatalf("golden files: %v (%d found)", err, len(files))
	}
	for _, f := range files {
		t.Run(strings.TrimSuffix(filepath.Base(f), ".json"), func(t *testing.T) {
			data, err := os.ReadFile(f)
			if err != nil {
				t.Fatal(err)
			}
			var g replyGolden
			if err := json.Unmarshal(data, &g); err != nil {
				t.Fatal(err)
			}
			whole := strings.Join(g.Deltas, "")
			var bytewise []string
			for i := 0; i < len(whole); i++ {
				bytewise = append(bytewise, whole[i:i+1])
			}
			for _, deltas := range [][]string{g.Deltas, bytewise} {
				text, r := feedAll(t, deltas)
				if text != g.Text {
					t.Errorf("spoken %q, want %q (%s)", text, g.Text, g.Note)
				}
				if r.Command != g.Command {
					t.Errorf("command %q, want %q", r.Command, g.Command)
				}
				if !reflect.DeepEqual(normJSON(t, r.Args), normJSON(t, g.Args)) {
					t.Errorf("args %v, want %v", r.Args, g.Args)
				}
				if r.JSON != g.JSON {
					t.Errorf("JSON = %v, want %v", r.JSON, g.JSON)
				}
				if (r.Err != nil) != g.Err {
					t.Errorf("Err = %v, want error: %v", r.Err, g.Err)
				}
			}
		})
	}
}

// TestReplyEscapesEverySplit splits every JSON escape at every byte position.
func TestReplyEscapesEverySplit(t *testing.T) {
	cases := []struct{ esc, want string }{
		{`\"`, `"`}, {`\\`, `\`}, {`\/`, `/`}, {`\b`, "\b"}, {`\f`, "\f"}, {`\n`, "\n"},
		{`\r`, "\r"}, {`\t`, "\t"}, {`\u0041`, "A"}, {`\u00e9`, "é"}, {`\u20AC`, "€"},
		{`\u044f`, "я"}, {`\ud83d\ude00`, "😀"}, {`\uD83D\uDE4F`, "🙏"}, {`\u0000`, "\x00"},
		{`\ud800`, "\uFFFD"}, {`\udc00`, "\uFFFD"}, {`\ud800\u0041`, "\uFFFDA"},
		{`\ud800\ud83d\ude00`, "\uFFFD😀"}, {`\ud800\n`, "\uFFFD\n"},
	}
	for _, c := range cases {
		in := `{"text": "<` + c.esc + `>", "command": "open_app", "args": {"app_name": "A` + c.esc + `"}}`
		var want struct{ Text string }
		if err := json.Unmarshal([]byte(in), &want); err != nil {
			t.Fatalf("%s: bad case: %v", c.esc, err)
		}
		if want.Text != "<"+c.want+">" {
			t.Fatalf("%s: case disagrees with encoding/json: %q", c.esc, want.Text)
		}
		start := strings.Index(in, c.esc)
		for i := start; i <= start+len(c.esc); i++ {
			for j := i; j <= start+len(c.esc); j++ {
				text, r := feedAll(t, splitAt(in, i, j))
				if text != want.Text {
					t.Errorf("%s split at %d,%d: spoken %q, want %q", c.esc, i, j, text, want.Text)
				}
				if r.Command != "open_app" || r.Args["app_name"] != "A"+c.want {
					t.Errorf("%s split at %d,%d: command %q args %v", c.esc, i, j, r.Command, r.Args)
				}
			}
		}
	}
}

// TestReplyUTF8Splits cuts multi-byte runes inside deltas: each Feed result must
// stay valid UTF-8 and the whole must be intact.
func TestReplyUTF8Splits(t *testing.T) {
	for _, in := range []string{
		`{"text": "Привет, мир! 😊 ok"}`,
		"Привет 👋🏽 plain text",
		"```json\n{\"text\": \"日本語のテキスト\"}\n```",
	} {
		want, _ := feedAll(t, []string{in})
		for i := 1; i < len(in); i++ {
			for j := i; j < len(in); j += 3 {
				if got, _ := feedAll(t, splitAt(in, i, j)); got != want {
					t.Fatalf("%q split at %d,%d: %q, want %q", in, i, j, got, want)
				}
			}
		}
	}
}

func TestReplyInvalidUTF8(t *testing.T) {
	in := "{\"text\": \"a\xffb\xe2\x82\"}"
	var want struct{ Text string }
	if err := json.Unmarshal([]byte(in), &want); err != nil {
		t.Fatal(err)
	}
	for i := 0; i <= len(in); i++ {
		if got, _ := feedAll(t, splitAt(in, i)); got != want.Text {
			t.Fatalf("split at %d: %q, want %q", i, got, want.Text)
		}
	}
}

// TestReplyStreamsEarly checks that text is returned as soon as it is decoded,
// not at the end of the stream.
func TestReplyStreamsEarly(t *testing.T) {
	p := NewReplyParser()
	steps := []struct{ in, want string }{
		{"  ```json\n", ""},
		{`{"text": "Hel`, "Hel"},
		{`lo, `, "lo, "},
		{`Mom\u0021`, "Mom!"},
		{`", "command": "open_app", "args": {"text": "no"`, ""},
		{`, "app_name": "Mail"}}`, ""},
		{"\n```", ""},
	}
	for _, s := range steps {
		if got := p.Feed(s.in); got != s.want {
			t.Fatalf("Feed(%q) = %q, want %q", s.in, got, s.want)
		}
	}
	rest, r := p.Finish()
	if rest != "" || r.Text != "Hello, Mom!" || r.Command != "open_app" || r.Args["app_name"] != "Mail" || r.Err != nil {
		t.Fatalf("Finish = %q, %+v", rest, r)
	}
	if rest, r2 := p.Finish(); rest != "" || r2.Text != r.Text {
		t.Fatalf("second Finish = %q, %+v", rest, r2)
	}
	if got := p.Feed("more"); got != "" {
		t.Fatalf("Feed after Finish = %q", got)
	}
}

func TestReplyPlainStreamsDelta(t *testing.T) {
	p := NewReplyParser()
	for _, d := range []string{"  Hello", " there, ", "friend. ", "Ok."} {
		want := strings.TrimLeft(d, " ")
		if d != "  Hello" {
			want = d
		}
		if got := p.Feed(d); got != want {
			t.Fatalf("Feed(%q) = %q, want %q", d, got, want)
		}
	}
	rest, r := p.Finish()
	if rest != "" || r.Text != "Hello there, friend. Ok." || r.JSON || r.Command != "" {
		t.Fatalf("Finish = %q, %+v", rest, r)
	}
}

func TestReplyDeepNestingAndLongArgs(t *testing.T) {
	deep := strings.Repeat(`{"a":`, 500) + "1" + strings.Repeat("}", 500)
	in := `{"text": "Done.", "command": "browser_use", "args": {"task": "` + strings.Repeat("x", 100000) + `", "extra": ` + deep + `}}`
	text, r := feedAll(t, []string{in[:70000], in[70000:]})
	if text != "Done." || r.Command != "browser_use" || len(r.Args["task"].(string)) != 100000 || r.Err != nil {
		t.Fatalf("text %q command %q err %v", text, r.Command, r.Err)
	}
}

func TestReplyOverflowKeepsText(t *testing.T) {
	in := `{"command": "browser_use", "args": {"task": "` + strings.Repeat("y", MaxReplyBytes) + `"}, "text": "Still spoken."}`
	text, r := feedAll(t, []string{in})
	if text != "Still spoken." || r.Command != "" || r.Err == nil || !strings.Contains(r.Err.Error(), "larger than") {
		t.Fatalf("text %q command %q err %v", text, r.Command, r.Err)
	}
}

func TestReplyHugeNonReplyObjectSpokenRaw(t *testing.T) {
	in := `{"data": "` + strings.Repeat("z", MaxReplyBytes) + `"} tail`
	text, r := feedAll(t, []string{in})
	if text != in || r.JSON {
		t.Fatalf("got %d bytes (JSON=%v), want the raw %d bytes", len(text), r.JSON, len(in))
	}
}

func TestReplySpokenCap(t *testing.T) {
	p := NewReplyParser()
	chunk := strings.Repeat("é", 1000)
	total := 0
	for total <= MaxSpokenBytes+4096 {
		total += len(p.Feed(chunk))
	}
	_, r := p.Finish()
	if len(r.Text) > MaxSpokenBytes || len(r.Text) < MaxSpokenBytes-4 || !utf8.ValidString(r.Text) {
		t.Fatalf("Reply.Text is %d bytes", len(r.Text))
	}
}

// FuzzReply checks that splitting never changes the outcome and never panics,
// and that valid replies speak exactly the value encoding/json decodes.
func FuzzReply(f *testing.F) {
	files, _ := filepath.Glob(filepath.Join("..", "testdata", "reply", "*.json"))
	for _, fn := range files {
		data, err := os.ReadFile(fn)
		if err != nil {
			f.Fatal(err)
		}
		var g replyGolden
		if err := json.Unmarshal(data, &g); err != nil {
			f.Fatal(err)
		}
		f.Add(strings.Join(g.Deltas, ""), uint64(len(g.Deltas)))
	}
	f.Add(`{"text": "a\ud83d\ude00b", "args": {"text": "x"}}`, uint64(7))
	f.Add("Sure! {\"text\": \"x\"} ```", uint64(3))
	f.Fuzz(func(t *testing.T, in string, seed uint64) {
		whole, r1 := feedAll(t, []string{in})
		rng := rand.New(rand.NewPCG(seed, 0x5eed))
		var deltas []string
		for rest := in; len(rest) > 0; {
			n := 1 + rng.IntN(min(len(rest), 8))
			deltas = append(deltas, rest[:n])
			rest = rest[n:]
		}
		split, r2 := feedAll(t, deltas)
		if split != whole {
			t.Fatalf("split %q spoke %q, whole spoke %q", deltas, split, whole)
		}
		if r1.Command != r2.Command || r1.JSON != r2.JSON || (r1.Err == nil) != (r2.Err == nil) ||
			!reflect.DeepEqual(r1.Args, r2.Args) {
			t.Fatalf("split changed the reply: %+v vs %+v", r1, r2)
		}
		var obj map[string]json.RawMessage
		if json.Unmarshal([]byte(in), &obj) != nil || topLevelKeys(in, "text") != 1 {
			return // not a valid object with exactly one top-level text key
		}
		var text string
		if json.Unmarshal(obj["text"], &text) != nil {
			return
		}
		if whole != text {
			t.Fatalf("spoke %q, encoding/json decodes %q", whole, text)
		}
		if !r1.JSON {
			t.Fatalf("valid object not reported as JSON")
		}
	})
}

// topLevelKeys counts the top-level keys of a valid JSON object equal to key.
func topLevelKeys(in, key string) int {
	d := json.NewDecoder(strings.NewReader(in))
	depth, n, expectKey := 0, 0, false
	for {
		tok, err := d.Token()
		if err != nil {
			return n
		}
		switch v := tok.(type) {
		case json.Delim:
			if v == '{' || v == '[' {
				depth++
				expectKey = v == '{' && depth == 1
				continue
			}
			depth--
		case string:
			if depth == 1 && expectKey {
				if v == key {
					n++
				}
				expectKey = false
				continue
			}
		}
		expectKey = depth == 1
	}
}

func benchReply(b *testing.B, in string, pieces int) {
	var deltas []string
	step := max(1, len(in)/pieces)
	for i := 0; i < len(in); i += step {
		deltas = append(deltas, in[i:min(len(in), i+step)])
	}
	b.SetBytes(int64(len(in)))
	b.ReportAllocs()
	for b.Loop() {
		p := NewReplyParser()
		for _, d := range deltas {
			p.Feed(d)
		}
		p.Finish()
	}
}

func BenchmarkReplyJSON(b *testing.B) {
	text := strings.Repeat("The weather today is sunny, with a light breeze from the west. ", 30)
	in := `{"text": "` + text + `", "command": "open_app", "args": {"app_name": "Safari"}}`
	benchReply(b, in, 200)
}

func BenchmarkReplyPlain(b *testing.B) {
	benchReply(b, strings.Repeat("The weather today is sunny, with a light breeze from the west. ", 30), 200)
}

// TestReplyFences covers fence and prose shapes; each case is also fed byte by byte.
func TestReplyFences(t *testing.T) {
	cases := []struct{ in, want, cmd string }{
		{"Here:\n```json\n{\"text\": \"x\", \"command\": \"close_browser\"}\n```", "Here:\nx", "close_browser"},
		{"```Hello world\n```", "Hello world\n", ""},
		{"```json", "", ""},
		{"````json\n{\"text\":\"four ticks\"}\n````", "four ticks", ""},
		{"```json   \n  {\"text\":\"spaces\"}", "spaces", ""},
		{"```python\nprint(1)\n```\nDone.", "print(1)\nDone.", ""},
		{"Use ``` inline", "Use  inline", ""},
		{"a `b` c ``", "a `b` c ``", ""},
		{"{\"text\": \"```json in a string stays\"}", "```json in a string stays", ""},
		{"{Paris is nice.}", "{Paris is nice.}", ""},
		{"{\"text\"", "{\"text\"", ""}, // cut before any text: the raw reply
		{"Sure {\"text\": \"a\"} and {\"text\": \"b\"}", "Sure a", ""},
		{"{} then {\"text\": \"real\"}", "{} then real", ""},
		{"\uFEFFHi", "\uFEFFHi", ""},
	}
	for _, c := range cases {
		var bytewise []string
		for i := 0; i < len(c.in); i++ {
			bytewise = append(bytewise, c.in[i:i+1])
		}
		for _, deltas := range [][]string{{c.in}, bytewise} {
			got, r := feedAll(t, deltas)
			if got != c.want || r.Command != c.cmd {
				t.Errorf("%q: spoke %q command %q, want %q %q", c.in, got, r.Command, c.want, c.cmd)
			}
		}
	}
}
