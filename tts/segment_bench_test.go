package tts

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"unicode/utf8"
)

// BenchmarkSplitter (segment_test.go) pushes one English answer in 4-rune
// deltas. These cover the other shapes the splitter meets: every golden file
// (Russian, lists, scripts, long unpunctuated text) in token-sized deltas,
// and one rune per delta.

// segBenchCases reads the inputs and configs of a golden file without a
// *testing.T (the golden loader needs one).
func segBenchCases(b *testing.B, path string) (cfgs []SplitterConfig, inputs []string) {
	b.Helper()
	data, err := os.ReadFile(path)
	if err != nil {
		b.Fatal(err)
	}
	cur := -1
	var sb strings.Builder
	flush := func() {
		if cur >= 0 {
			inputs = append(inputs, sb.String())
			sb.Reset()
		}
	}
	for _, line := range strings.Split(string(data), "\n") {
		switch {
		case strings.HasPrefix(line, "=== "):
			flush()
			cur++
			cfgs = append(cfgs, SplitterConfig{})
		case cur < 0:
		case strings.HasPrefix(line, "config"):
			cfg, err := segParseConfig(line)
			if err != nil {
				b.Fatal(err)
			}
			cfgs[cur] = cfg
		case line == ">" || strings.HasPrefix(line, "> "):
			d, err := segUnescape(strings.TrimPrefix(strings.TrimPrefix(line, ">"), " "))
			if err != nil {
				b.Fatal(err)
			}
			sb.WriteString(d)
		}
	}
	flush()
	return cfgs, inputs
}

// tokenDeltas cuts s into pieces of about n bytes, on rune boundaries, the
// size LLM deltas usually have.
func tokenDeltas(s string, n int) []string {
	var out []string
	for len(s) > 0 {
		i := min(n, len(s))
		for i < len(s) && !utf8.RuneStart(s[i]) {
			i++
		}
		out = append(out, s[:i])
		s = s[i:]
	}
	return out
}

func BenchmarkSplitterGolden(b *testing.B) {
	files, err := filepath.Glob(filepath.Join("..", "testdata", "splitter", "*.txt"))
	if err != nil || len(files) == 0 {
		b.Fatalf("golden files: %v", err)
	}
	for _, path := range files {
		b.Run(strings.TrimSuffix(filepath.Base(path), ".txt"), func(b *testing.B) {
			cfgs, inputs := segBenchCases(b, path)
			deltas := make([][]string, len(inputs))
			n := 0
			for i, in := range inputs {
				deltas[i] = tokenDeltas(in, 5)
				n += len(in)
			}
			b.SetBytes(int64(n))
			b.ReportAllocs()
			for b.Loop() {
				for i, ds := range deltas {
					s := NewSplitter(cfgs[i])
					for _, d := range ds {
						s.Push(d)
					}
					s.Flush()
				}
			}
			b.ReportMetric(float64(len(inputs)), "cases/op")
		})
	}
}

// BenchmarkSplitterRunewise pushes the long English answer one rune at a time.
func BenchmarkSplitterRunewise(b *testing.B) {
	var deltas []string
	for _, r := range segBenchAnswer {
		deltas = append(deltas, string(r))
	}
	b.SetBytes(int64(len(segBenchAnswer)))
	b.ReportAllocs()
	for b.Loop() {
		s := NewSplitter(DefaultSplitterConfig())
		for _, d := range deltas {
			s.Push(d)
		}
		s.Flush()
	}
}
