package audio

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"os"
	"path/filepath"
	"testing"
)

// readSplit decodes data with the passthrough allowed or not, feeding it in
// random pieces (1..maxPiece bytes) and reading through random buffer sizes
// (1..5000 bytes, so odd sizes and 1-byte reads occur too).
func readSplit(t testing.TB, data []byte, enc Encoding, in Format, pass bool, seed uint64, maxPiece int) (*decoder, []byte, error) {
	t.Helper()
	rng := rand.New(rand.NewPCG(seed, uint64(maxPiece)))
	d := newDecoder(&pieceReader{data: data, rng: rng, max: maxPiece}, enc, in, pass)
	var out []byte
	buf := make([]byte, 5000)
	for reads := 0; ; reads++ {
		if reads > 10*len(data)+100 {
			t.Fatal("decoder keeps returning without reaching the end")
		}
		size := 1 + rng.IntN(len(buf))
		if rng.IntN(4) == 0 {
			size = 1 + rng.IntN(3)
		}
		n, err := d.Read(buf[:size])
		if n < 0 || n > size {
			t.Fatalf("Read returned %d for a %d-byte buffer", n, size)
		}
		out = append(out, buf[:n]...)
		if err == io.EOF {
			return d, out, nil
		}
		if err != nil {
			return d, out, err
		}
	}
}

// samePath decodes data through the passthrough and through the general path
// with different read boundaries and requires identical bytes and errors.
// It reports whether the passthrough was taken.
func samePath(t testing.TB, data []byte, enc Encoding, in Format, seed uint64, maxPiece int) bool {
	t.Helper()
	_, want, werr := readSplit(t, data, enc, in, false, seed, 5000)
	d, got, gerr := readSplit(t, data, enc, in, true, seed+1, maxPiece)
	if len(got)%2 != 0 {
		t.Fatalf("passthrough gave %d bytes: not whole samples", len(got))
	}
	if fmt.Sprint(werr) != fmt.Sprint(gerr) {
		t.Fatalf("general path error %v, passthrough error %v", werr, gerr)
	}
	if !bytes.Equal(got, want) {
		i := 0
		for i < min(len(got), len(want)) && got[i] == want[i] {
			i++
		}
		t.Fatalf("passthrough gave %d bytes, general path %d; first difference at byte %d", len(got), len(want), i)
	}
	return d.pass != nil
}

// wavVariants wraps wire PCM in the WAV layouts providers and tools write.
func wavVariants(pcm []byte) map[string][]byte {
	fm := chunk("fmt ", fmtBody(1, 1, SampleRate, 16))
	list := chunk("LIST", []byte("INFOISFT\x05\x00\x00\x00Lavf\x00")) // odd size: padded
	half := len(pcm) / 2 &^ 1
	one := riff(0, fm, chunk("data", pcm[:half]))
	two := riff(0, fm, list, chunk("data", pcm[half:]))
	v := map[string][]byte{
		"exact sizes":            riff(uint32(len(pcm)+36), fm, chunk("data", pcm)),
		"extensible fmt":         riff(0, chunk("fmt ", extBody(1, 1, SampleRate, 16)), chunk("data", pcm)),
		"odd LIST before data":   riff(0, list, fm, chunk("fact", []byte{1, 2, 3, 4}), chunk("data", pcm)),
		"trailing chunks":        append(riff(0, fm, chunk("data", pcm)), chunk("LIST", []byte("INFOjunk!"))...),
		"data size 0":            withDataSize(riff(0, fm, chunk("data", pcm)), 0),
		"data size 0xFFFFFFFF":   withDataSize(riff(0xFFFFFFFF, fm, chunk("data", pcm)), 0xFFFFFFFF),
		"declared size too long": withDataSize(riff(0x7FFFF024, fm, chunk("data", pcm)), 0x7FFFF000),
		"concatenated":           append(append(one, two...), chunk("LIST", []byte("trailing"))...),
		"RF64":                   rf64(fm, pcm),
		"RF64 concatenated":      append(rf64(fm, pcm[:half]), rf64(fm, pcm[half:])...),
		"truncated":              riff(0, fm, chunk("data", pcm))[:44+len(pcm)*2/3],
	}
	if len(pcm) > 3 { // an odd data size: half a sample, then the pad byte
		odd := pcm[:len(pcm)-1]
		v["odd data size"] = append(riff(0, fm, chunk("data", odd)), riff(0, fm, chunk("data", pcm[:2]))...)
		v["odd RF64"] = append(rf64(fm, odd), rf64(fm, pcm[:2])...)
	}
	return v
}

// wireFixtures is the wire PCM of every audio fixture (decoded and resampled
// by the general path) plus Azure's raw 48 kHz PCM as it came.
func wireFixtures(t testing.TB) map[string][]byte {
	t.Helper()
	out := map[string][]byte{}
	names, err := filepath.Glob(filepath.Join("..", "testdata", "audio", "*.*"))
	if err != nil {
		t.Fatal(err)
	}
	for _, path := range names {
		name := filepath.Base(path)
		enc := WAV
		switch filepath.Ext(name) {
		case ".mp3":
			enc = MP3
		case ".wav":
		default:
			continue
		}
		_, pcm, err := readSplit(t, fixture(t, name), enc, Format{}, false, 1, 5000)
		if err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		out[name] = pcm
	}
	azure, err := os.ReadFile(filepath.Join("..", "testdata", "tts", "azure_hello_48k.pcm"))
	if err != nil {
		t.Fatal(err)
	}
	out["azure_hello_48k.pcm"] = azure
	if len(out) < 7 {
		t.Fatalf("found only %d fixtures", len(out))
	}
	return out
}

// TestPassthroughMatchesGeneralPath: for every fixture, as raw PCM and in
// every WAV layout, whatever the read boundaries on either side, the
// passthrough's bytes and errors are exactly the general path's.
func TestPassthroughMatchesGeneralPath(t *testing.T) {
	seed := uint64(0)
	for name, pcm := range wireFixtures(t) {
		t.Run(name, func(t *testing.T) {
			for _, maxPiece := range []int{1, 3, 333, 5000} {
				seed++
				// Whole fixtures in large pieces; with smaller pieces a prefix
				// has boundaries enough (and keeps -race quick).
				pcm := pcm
				if maxPiece < 5000 {
					pcm = pcm[:min(len(pcm), 10*maxPiece+3*MaxChunkBytes+1)]
				}
				// Raw PCM, also with an odd trailing byte.
				for _, raw := range [][]byte{pcm, append(pcm[:len(pcm):len(pcm)], 0x7f)} {
					if !samePath(t, raw, PCM16, Format{SampleRate, 1}, seed, maxPiece) {
						t.Fatal("48 kHz mono PCM did not take the passthrough")
					}
				}
				for layout, w := range wavVariants(pcm) {
					if !samePath(t, w, WAV, Format{}, seed, maxPiece) {
						t.Fatalf("%s: 48 kHz mono s16 WAV did not take the passthrough", layout)
					}
				}
			}
		})
	}
}

// TestPassthroughOnlyForWireFormat: anything else takes the general path.
func TestPassthroughOnlyForWireFormat(t *testing.T) {
	pcm := s16([]int16{1, 2, 3, 4})
	cases := map[string]struct {
		data []byte
		enc  Encoding
		in   Format
	}{
		"pcm 24 kHz":  {pcm, PCM16, Format{24000, 1}},
		"pcm stereo":  {pcm, PCM16, Format{SampleRate, 2}},
		"wav stereo":  {riff(0, chunk("fmt ", fmtBody(1, 2, SampleRate, 16)), chunk("data", pcm)), WAV, Format{}},
		"wav 24 kHz":  {riff(0, chunk("fmt ", fmtBody(1, 1, 24000, 16)), chunk("data", pcm)), WAV, Format{}},
		"wav 32-bit":  {riff(0, chunk("fmt ", fmtBody(1, 1, SampleRate, 32)), chunk("data", pcm)), WAV, Format{}},
		"wav float32": {riff(0, chunk("fmt ", fmtBody(3, 1, SampleRate, 32)), chunk("data", pcm)), WAV, Format{}},
	}
	for name, c := range cases {
		d, _, err := readSplit(t, c.data, c.enc, c.in, true, 1, 5000)
		if err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		if d.pass != nil {
			t.Errorf("%s took the passthrough", name)
		}
	}
}

// TestPassthroughSplitSample: a sample split across source reads is held
// back and completed by the next read; a lone byte at the end is dropped.
func TestPassthroughSplitSample(t *testing.T) {
	r := &scriptReader{t: t, steps: []step{
		{data: []byte{1}},
		{data: []byte{2, 3}},
		{data: []byte{4, 5, 6}},
		{data: []byte{7}, err: io.EOF},
	}}
	d, err := Decode(r, PCM16, Format{SampleRate, 1})
	if err != nil {
		t.Fatal(err)
	}
	buf := make([]byte, 16)
	var got [][]byte
	for {
		n, err := d.Read(buf)
		if n > 0 {
			got = append(got, bytes.Clone(buf[:n]))
		}
		if err == io.EOF {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
	}
	want := [][]byte{{1, 2}, {3, 4, 5, 6}}
	if fmt.Sprint(got) != fmt.Sprint(want) {
		t.Fatalf("reads %v, want %v", got, want)
	}
}

// TestPassthroughErrors: a reader failure comes after the audio before it,
// wrapped as the general path wraps it, and stays.
func TestPassthroughErrors(t *testing.T) {
	boom := errors.New("boom")
	r := io.MultiReader(bytes.NewReader([]byte{1, 2, 3}), errReader{boom})
	d, _ := Decode(r, PCM16, Format{SampleRate, 1})
	b, err := io.ReadAll(d)
	if !bytes.Equal(b, []byte{1, 2}) || !errors.Is(err, boom) || err.Error() != "audio: decode pcm16: boom" {
		t.Fatalf("got %v, %v", b, err)
	}
	if _, err2 := d.Read(make([]byte, 4)); err2 != err {
		t.Fatalf("error not sticky: %v then %v", err, err2)
	}
}

// TestPassthroughNoAllocs: steady-state reads allocate nothing (and, by
// construction, touch no sample).
func TestPassthroughNoAllocs(t *testing.T) {
	w := riff(0, chunk("fmt ", fmtBody(1, 1, SampleRate, 16)), chunk("data", make([]byte, 1<<20)))
	d, _ := Decode(bytes.NewReader(w), WAV, Format{})
	buf := make([]byte, MaxChunkBytes-1) // odd: every other read carries a byte
	if _, err := d.Read(buf); err != nil {
		t.Fatal(err)
	}
	allocs := testing.AllocsPerRun(100, func() {
		if _, err := d.Read(buf); err != nil {
			t.Fatal(err)
		}
	})
	if allocs != 0 {
		t.Fatalf("%.1f allocations per read", allocs)
	}
}

// FuzzPassthrough compares the passthrough with the general path on
// arbitrary bytes and read boundaries: as raw 48 kHz PCM, wrapped in 48 kHz
// mono WAV headers (followed by arbitrary bytes), and as a whole WAV stream.
func FuzzPassthrough(f *testing.F) {
	for _, name := range []string{"speech_stream_22050.wav", "tone_44100_stereo.wav"} {
		b := fixture(f, name)
		f.Add(b[:min(len(b), 700)], uint8(0), uint64(1))
	}
	pcm := s16([]int16{1, -2, 3, -4, 32767, -32768})
	fm := chunk("fmt ", fmtBody(1, 1, SampleRate, 16))
	f.Add(riff(0, fm, chunk("data", pcm)), uint8(3), uint64(2))
	f.Add(append(riff(0, fm, chunk("data", pcm[:5])), riff(0, fm, chunk("data", pcm))...), uint8(3), uint64(3))
	f.Add(rf64(fm, pcm), uint8(3), uint64(4))
	f.Add(append(pcm, 9), uint8(1), uint64(5))
	f.Add(append(chunk("LIST", []byte("abc")), riff(0, fm, chunk("data", pcm))...), uint8(2), uint64(6))
	f.Fuzz(func(t *testing.T, data []byte, mode uint8, seed uint64) {
		maxPiece := 1 + int(seed%700)
		fm := chunk("fmt ", fmtBody(1, 1, SampleRate, 16))
		switch mode % 4 {
		case 0: // raw PCM
			samePath(t, data, PCM16, Format{SampleRate, 1}, seed, maxPiece)
		case 1: // a streamed WAV (placeholder size) of data
			samePath(t, withDataSize(riff(0, fm, chunk("data", data)), 0xFFFFFFFF), WAV, Format{}, seed, maxPiece)
		case 2: // a sized WAV of half of data, then the rest as whatever follows
			h := len(data) / 2
			w := append(riff(0, fm, chunk("data", data[:h])), data[h:]...)
			if seed&1 == 1 {
				w = append(rf64(fm, data[:h]), data[h:]...)
			}
			samePath(t, w, WAV, Format{}, seed, maxPiece)
		default: // data is the whole stream
			samePath(t, data, WAV, Format{}, seed, maxPiece)
		}
	})
}
