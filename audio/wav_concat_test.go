package audio

import (
	"encoding/binary"
	"strings"
	"testing"
)

// Some speech servers stream one whole WAV per sentence back to back: all of
// them must be played, not just the first.
func TestWAVConcatenated(t *testing.T) {
	one := riff(0, chunk("fmt ", fmtBody(1, 1, 48000, 16)), chunk("data", s16(sine(4800, 48000, 440, 8000))))
	two := riff(0, chunk("fmt ", fmtBody(1, 1, 48000, 16)), chunk("LIST", []byte("INFOxxxx")), chunk("data", s16(sine(2400, 48000, 660, 8000))))
	got := decodeWAV(t, append(append(one, two...), chunk("LIST", []byte("trailing"))...))
	if len(got) != 4800+2400 {
		t.Fatalf("decoded %d samples, want %d (both WAVs)", len(got), 7200)
	}
	odd := riff(0, chunk("fmt ", fmtBody(1, 1, 48000, 8)), chunk("data", []byte{128, 200, 50}))
	if got := decodeWAV(t, append(odd, odd...)); len(got) != 6 {
		t.Fatalf("odd-sized data chunks: %d samples, want 6", len(got))
	}
	other := riff(0, chunk("fmt ", fmtBody(1, 1, 24000, 16)), chunk("data", s16(sine(100, 24000, 440, 8000))))
	err := decodeErr(t, append(one, other...), WAV)
	if err == nil || !strings.Contains(err.Error(), "changes format") {
		t.Fatalf("format change: %v", err)
	}
}

// rf64 builds an RF64 WAV whose data chunk size is the 0xFFFFFFFF placeholder
// and whose real size (len(data)) is in the ds64 chunk; the data chunk is
// padded to an even length as RIFF requires.
func rf64(fmtChunk, data []byte) []byte {
	ds := make([]byte, 28)
	binary.LittleEndian.PutUint64(ds[8:], uint64(len(data)))
	w := riff(0xFFFFFFFF, chunk("ds64", ds), fmtChunk, chunk("data", data))
	copy(w, "RF64")
	return withDataSize(w, 0xFFFFFFFF)
}

// TestWAVRF64PadByte: the pad byte after an RF64 data chunk depends on the
// real size from ds64, not on the 0xFFFFFFFF placeholder (which is odd): an
// even-sized RF64 chunk has no pad byte, so what follows must still be found.
func TestWAVRF64PadByte(t *testing.T) {
	fm16 := chunk("fmt ", fmtBody(1, 1, 48000, 16))
	fm8 := chunk("fmt ", fmtBody(1, 1, 48000, 8))
	a, b := []int16{1, 2, 3, 4}, []int16{5, 6, -7}
	second := riff(0, fm16, chunk("data", s16(b)))
	cases := []struct {
		name string
		wav  []byte
		want []int16
	}{
		{"even RF64 then RIFF", append(rf64(fm16, s16(a)), second...), []int16{1, 2, 3, 4, 5, 6, -7}},
		{"even RF64 then RF64", append(rf64(fm16, s16(a)), rf64(fm16, s16(b))...), []int16{1, 2, 3, 4, 5, 6, -7}},
		{"even RF64, trailing chunk, RIFF", append(append(rf64(fm16, s16(a)), chunk("LIST", []byte("INFOx"))...), second...),
			[]int16{1, 2, 3, 4, 5, 6, -7}},
		// 8-bit, 3 bytes: odd, so a pad byte follows and must be skipped.
		{"odd RF64 then RF64", append(rf64(fm8, []byte{128, 129, 127}), rf64(fm8, []byte{130})...), []int16{0, 256, -256, 512}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			if got := decodeWAV(t, c.wav); !equal16(got, c.want) {
				t.Fatalf("got %v, want %v", got, c.want)
			}
		})
	}
}
