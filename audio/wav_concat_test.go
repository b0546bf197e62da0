package audio

import (
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
