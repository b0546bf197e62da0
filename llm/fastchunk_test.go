package llm

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
)

// viaJSON is the reference: what encoding/json makes of data.
func viaJSON(data string) (openaiChunk, error) {
	var c openaiChunk
	err := json.Unmarshal([]byte(data), &c)
	return c, err
}

// checkFast fails unless the fast path either gave up or produced exactly
// what encoding/json produces; it reports whether the fast path was taken.
func checkFast(t *testing.T, data, prevModel string) bool {
	t.Helper()
	var got openaiChunk
	if !fastChunk(data, prevModel, &got) {
		return false
	}
	want, err := viaJSON(data)
	if err != nil {
		t.Fatalf("fast path accepted what encoding/json rejects (%v):\n%q", err, data)
	}
	if !reflect.DeepEqual(got, want) {
		t.Fatalf("fast path differs from encoding/json on\n%q\n got %s\nwant %s", data, chunkString(got), chunkString(want))
	}
	return true
}

// chunkString prints every field the decoder reads, nil and empty apart.
func chunkString(c openaiChunk) string {
	var b strings.Builder
	fmt.Fprintf(&b, "model=%q", c.Model)
	switch {
	case c.Choices == nil:
		b.WriteString(" choices=nil")
	default:
		fmt.Fprintf(&b, " choices=%d", len(c.Choices))
		for _, ch := range c.Choices {
			fmt.Fprintf(&b, " [content=%q finish=%q]", ch.Delta.Content, ch.FinishReason)
		}
	}
	if c.Usage != nil {
		fmt.Fprintf(&b, " usage=%d/%d", c.Usage.PromptTokens, c.Usage.CompletionTokens)
	}
	if c.Error != nil {
		fmt.Fprintf(&b, " error=%q", c.Error.Message)
	}
	return b.String()
}

// TestFastChunkFixtures: every chunk of the recorded OpenAI and Ollama
// streams takes the fast path (only [DONE] and the in-stream error do not)
// and decodes as encoding/json decodes it, with and without a known model.
func TestFastChunkFixtures(t *testing.T) {
	evs := openaiFixtureEvents(t)
	files, _ := filepath.Glob(filepath.Join("..", "testdata", "llm", "openai_stream_error.sse"))
	for _, f := range files {
		raw, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		got, _ := readAllSSE(strings.NewReader(string(raw)), 0)
		evs = append(evs, got...)
	}
	slow := 0
	for _, ev := range evs {
		want, _ := viaJSON(ev.Data)
		for _, prev := range []string{"", want.Model, "other"} {
			if !checkFast(t, ev.Data, prev) {
				slow++
				if ev.Data != "[DONE]" && !strings.Contains(ev.Data, `"error"`) {
					t.Errorf("fixture chunk left the fast path:\n%s", ev.Data)
				}
			}
		}
	}
	if slow != 3*4 { // three [DONE] markers and one error event, three times each
		t.Errorf("%d slow decodes, want 12", slow)
	}
}

// TestFastChunkGolden runs the curated inputs of testdata/fastchunk.golden:
// each "> " line is a chunk, the "< " line after it says which path decoded
// it and what came out. -update rewrites the "< " lines.
func TestFastChunkGolden(t *testing.T) {
	path := filepath.Join("testdata", "fastchunk.golden")
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	var out strings.Builder
	lines := strings.Split(strings.TrimSuffix(string(data), "\n"), "\n")
	cases := 0
	for i := 0; i < len(lines); i++ {
		line := lines[i]
		if strings.HasPrefix(line, "< ") {
			continue // regenerated after its "> " line
		}
		out.WriteString(line + "\n")
		in, ok := strings.CutPrefix(line, "> ")
		if !ok {
			continue
		}
		cases++
		in, err := unescapeGolden(in)
		if err != nil {
			t.Fatalf("%s:%d: %v", path, i+1, err)
		}
		got := goldenResult(t, in)
		out.WriteString("< " + got + "\n")
		if updateGoldens() {
			continue
		}
		if i+1 >= len(lines) || lines[i+1] != "< "+got {
			want := ""
			if i+1 < len(lines) {
				want = lines[i+1]
			}
			t.Errorf("%s:%d: %q\n got < %s\nwant %s", path, i+1, in, got, want)
		}
	}
	if cases < 40 {
		t.Fatalf("%s: only %d cases", path, cases)
	}
	if updateGoldens() {
		if err := os.WriteFile(path, []byte(out.String()), 0o644); err != nil {
			t.Fatal(err)
		}
	}
}

// goldenResult names the path taken ("fast" or "json") and the outcome.
func goldenResult(t *testing.T, in string) string {
	fast := checkFast(t, in, "")
	c, err := viaJSON(in)
	path := "json"
	if fast {
		path = "fast"
	}
	if err != nil {
		return path + " error"
	}
	return path + " " + chunkString(c)
}

// unescapeGolden turns «NN» (two hex digits) in a golden input into that
// byte, for invalid UTF-8 and raw control characters; a backslash stays a
// backslash, since the inputs are JSON.
func unescapeGolden(s string) (string, error) {
	var b strings.Builder
	for {
		i := strings.Index(s, "«")
		if i < 0 {
			b.WriteString(s)
			return b.String(), nil
		}
		b.WriteString(s[:i])
		s = s[i+len("«"):]
		hex, rest, ok := strings.Cut(s, "»")
		var v byte
		if !ok || len(hex) != 2 {
			return "", fmt.Errorf("bad «NN» byte at %q", s)
		}
		if _, err := fmt.Sscanf(hex, "%02x", &v); err != nil {
			return "", fmt.Errorf("bad «NN» byte %q: %v", hex, err)
		}
		b.WriteByte(v)
		s = rest
	}
}

// FuzzFastChunk compares the fast path with encoding/json on any input: it
// may give up, but when it answers it must answer exactly as encoding/json.
func FuzzFastChunk(f *testing.F) {
	for _, name := range []string{"openai_text.sse", "openai_action.sse", "ollama_plain.sse", "openai_stream_error.sse", "gemini_text.sse"} {
		raw, err := os.ReadFile(filepath.Join("..", "testdata", "llm", name))
		if err != nil {
			f.Fatal(err)
		}
		evs, _ := readAllSSE(strings.NewReader(string(raw)), 0)
		for _, ev := range evs {
			f.Add(ev.Data, "")
		}
	}
	if data, err := os.ReadFile(filepath.Join("testdata", "fastchunk.golden")); err == nil {
		for _, line := range strings.Split(string(data), "\n") {
			if in, ok := strings.CutPrefix(line, "> "); ok {
				if in, err := unescapeGolden(in); err == nil {
					f.Add(in, "gpt-4o-mini")
				}
			}
		}
	}
	f.Fuzz(func(t *testing.T, data, prevModel string) {
		checkFast(t, data, prevModel)
		// The decoder as a whole: fast or not, the same chunk comes out.
		d := &openaiDecoder{u: Usage{Model: prevModel}}
		var c openaiChunk
		err := d.decodeChunk(data, &c)
		want, wantErr := viaJSON(data)
		if (err != nil) != (wantErr != nil) {
			t.Fatalf("decodeChunk err %v, encoding/json %v", err, wantErr)
		}
		if err == nil && !reflect.DeepEqual(c, want) {
			t.Fatalf("decodeChunk %s, encoding/json %s", chunkString(c), chunkString(want))
		}
	})
}

// TestDecodeChunkAllocs pins the point of the fast path: a content chunk
// without escapes costs one allocation (the one-element choices slice).
func TestDecodeChunkAllocs(t *testing.T) {
	data := `{"id":"chatcmpl-1","object":"chat.completion.chunk","created":1,"model":"gpt-4o-mini","choices":[{"index":0,"delta":{"content":" word"},"logprobs":null,"finish_reason":null}],"usage":null}`
	d := &openaiDecoder{u: Usage{Model: "gpt-4o-mini"}}
	var out []string
	allocs := testing.AllocsPerRun(100, func() {
		out, _, _ = d.event(sseEvent{Data: data}, out[:0])
	})
	if len(out) != 1 || out[0] != " word" {
		t.Fatalf("deltas %q", out)
	}
	if allocs > 1 {
		t.Errorf("%v allocations per content chunk, want at most 1", allocs)
	}
}
