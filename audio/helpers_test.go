package audio

import (
	"encoding/binary"
	"io"
	"math"
	"math/rand/v2"
	"os"
	"path/filepath"
	"testing"
)

// s16 serialises samples as s16le.
func s16(x []int16) []byte {
	b := make([]byte, 2*len(x))
	for i, v := range x {
		binary.LittleEndian.PutUint16(b[2*i:], uint16(v))
	}
	return b
}

// samplesOf parses s16le (an odd trailing byte is ignored).
func samplesOf(b []byte) []int16 {
	x := make([]int16, len(b)/2)
	for i := range x {
		x[i] = int16(binary.LittleEndian.Uint16(b[2*i:]))
	}
	return x
}

// sine is amp·sin(2π·freq·i/rate) rounded to int16.
func sine(n, rate int, freq, amp float64) []int16 {
	x := make([]int16, n)
	for i := range x {
		x[i] = int16(math.Round(amp * math.Sin(2*math.Pi*freq*float64(i)/float64(rate))))
	}
	return x
}

// decodeAll decodes everything from r and fails the test on any error.
func decodeAll(t testing.TB, r io.Reader, enc Encoding, in Format) []int16 {
	t.Helper()
	d, err := Decode(r, enc, in)
	if err != nil {
		t.Fatalf("Decode: %v", err)
	}
	b, err := io.ReadAll(d)
	if err != nil {
		t.Fatalf("read decoded stream: %v", err)
	}
	if len(b)%2 != 0 {
		t.Fatalf("decoded %d bytes, want an even count", len(b))
	}
	return samplesOf(b)
}

// fixture reads a file from the repo-root testdata/audio.
func fixture(t testing.TB, name string) []byte {
	t.Helper()
	b, err := os.ReadFile(filepath.Join("..", "testdata", "audio", name))
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// snrDB compares y[from:to] with the ideal signal ideal(i) and returns
// 10·log10(signal power / error power).
func snrDB(y []int16, ideal func(i int) float64, from, to int) float64 {
	var sig, noise float64
	for i := from; i < to; i++ {
		s := ideal(i)
		e := float64(y[i]) - s
		sig += s * s
		noise += e * e
	}
	if noise == 0 {
		return math.Inf(1)
	}
	return 10 * math.Log10(sig/noise)
}

// rms of y[from:to].
func rms(y []int16, from, to int) float64 {
	var s float64
	for i := from; i < to; i++ {
		s += float64(y[i]) * float64(y[i])
	}
	return math.Sqrt(s / float64(to-from))
}

func db(ratio float64) float64 { return 20 * math.Log10(ratio) }

// pieceReader returns its data in random-sized pieces (1..max bytes).
type pieceReader struct {
	data []byte
	rng  *rand.Rand
	max  int
}

func (p *pieceReader) Read(b []byte) (int, error) {
	if len(p.data) == 0 {
		return 0, io.EOF
	}
	n := min(1+p.rng.IntN(p.max), len(b), len(p.data))
	copy(b, p.data[:n])
	p.data = p.data[n:]
	return n, nil
}

// wantLen is the exact output length for n input samples at rate in.
func wantLen(n, in int) int {
	return (n*SampleRate + in - 1) / in
}
