package llm

import (
	"encoding/json"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// The existing BenchmarkReplyJSON/BenchmarkReplyPlain (reply_test.go) feed one
// synthetic answer in 200 even pieces. These feed what the parser really gets:
// the deltas of the recorded provider streams, the golden delta sequences, and
// the worst case of one byte per delta.

// benchFeed runs one whole reply through a fresh parser.
func benchFeed(deltas []string) int {
	p := NewReplyParser()
	n := 0
	for _, d := range deltas {
		n += len(p.Feed(d))
	}
	rest, _ := p.Finish()
	return n + len(rest)
}

func deltaBytes(deltas []string) int {
	n := 0
	for _, d := range deltas {
		n += len(d)
	}
	return n
}

// BenchmarkReplyFixtures feeds the text deltas of each recorded provider
// stream (token-sized, cut mid-word and mid-escape) to the parser.
func BenchmarkReplyFixtures(b *testing.B) {
	for _, fix := range []struct {
		name string
		dec  func() chunkDecoder
	}{
		{"openai_text.sse", func() chunkDecoder { return &openaiDecoder{model: "m"} }},
		{"openai_action.sse", func() chunkDecoder { return &openaiDecoder{model: "m"} }},
		{"ollama_plain.sse", func() chunkDecoder { return &openaiDecoder{model: "m"} }},
		{"gemini_text.sse", func() chunkDecoder { return &geminiDecoder{model: "m"} }},
		{"gemini_action.sse", func() chunkDecoder { return &geminiDecoder{model: "m"} }},
	} {
		b.Run(strings.TrimSuffix(fix.name, ".sse"), func(b *testing.B) {
			raw, err := os.ReadFile(filepath.Join("..", "testdata", "llm", fix.name))
			if err != nil {
				b.Fatal(err)
			}
			deltas, err := streamOver(raw, fix.dec())
			if err != io.EOF {
				b.Fatal(err)
			}
			if len(deltas) == 0 {
				b.Fatal("no deltas")
			}
			b.SetBytes(int64(deltaBytes(deltas)))
			b.ReportAllocs()
			for b.Loop() {
				benchFeed(deltas)
			}
			b.ReportMetric(float64(len(deltas)), "deltas/op")
		})
	}
}

// BenchmarkReplyGolden replays every delta sequence of testdata/reply (44
// shapes: fences, prose before the object, escapes, broken objects) per op.
func BenchmarkReplyGolden(b *testing.B) {
	files, err := filepath.Glob(filepath.Join("..", "testdata", "reply", "*.json"))
	if err != nil || len(files) == 0 {
		b.Fatalf("golden files: %v", err)
	}
	var all [][]string
	n := 0
	for _, f := range files {
		data, err := os.ReadFile(f)
		if err != nil {
			b.Fatal(err)
		}
		var g struct {
			Deltas []string `json:"deltas"`
		}
		if err := json.Unmarshal(data, &g); err != nil {
			b.Fatal(err)
		}
		all = append(all, g.Deltas)
		n += deltaBytes(g.Deltas)
	}
	b.SetBytes(int64(n))
	b.ReportAllocs()
	for b.Loop() {
		for _, deltas := range all {
			benchFeed(deltas)
		}
	}
	b.ReportMetric(float64(len(all)), "replies/op")
}

// BenchmarkReplyBytewise is the worst case: a long JSON reply with escapes
// arriving one byte per delta.
func BenchmarkReplyBytewise(b *testing.B) {
	text := strings.Repeat(`Открываю \"Заметки\" \u00e9 now.\n `, 40)
	in := `{"text": "` + text + `", "command": "open_app", "args": {"app_name": "Notes"}}`
	deltas := make([]string, len(in))
	for i := range in {
		deltas[i] = in[i : i+1]
	}
	b.SetBytes(int64(len(in)))
	b.ReportAllocs()
	for b.Loop() {
		benchFeed(deltas)
	}
}
