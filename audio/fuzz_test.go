package audio

import (
	"bytes"
	"io"
	"math/rand/v2"
	"testing"
)

// decodeBoth decodes data whole and in random pieces; both runs must agree
// on the output and on whether it failed, and the output must be whole samples.
func decodeBoth(t *testing.T, data []byte, enc Encoding, in Format, seed uint64) []byte {
	t.Helper()
	run := func(r io.Reader) ([]byte, error) {
		d, err := Decode(r, enc, in)
		if err != nil {
			t.Fatalf("Decode: %v", err)
		}
		return io.ReadAll(d)
	}
	whole, err1 := run(bytes.NewReader(data))
	pieces, err2 := run(&pieceReader{data: data, rng: rand.New(rand.NewPCG(seed, 1)), max: 1 + int(seed%512)})
	if len(whole)%2 != 0 {
		t.Fatalf("odd output length %d", len(whole))
	}
	if (err1 == nil) != (err2 == nil) {
		t.Fatalf("whole: %v, pieces: %v", err1, err2)
	}
	if !bytes.Equal(whole, pieces) {
		t.Fatalf("output differs when fed in pieces (%d vs %d bytes)", len(whole), len(pieces))
	}
	return whole
}

func FuzzDecodeWAV(f *testing.F) {
	for _, name := range []string{"speech_stream_22050.wav", "tone_24000_float32.wav", "tone_16000_3ch_extensible.wav", "tone_44100_stereo.wav"} {
		b := fixture(f, name)
		f.Add(b[:min(len(b), 600)], uint64(1))
	}
	pcm := s16([]int16{1, -2, 3, -4})
	f.Add(riff(0, chunk("LIST", []byte("INFOx")), chunk("fmt ", fmtBody(1, 2, 8000, 16)), chunk("data", pcm)), uint64(2))
	f.Add(riff(0, chunk("fmt ", extBody(3, 1, 96000, 32)), chunk("data", pcm)), uint64(3))
	f.Add(riff(0, chunk("fmt ", fmtBody(1, 1, 11025, 24)), chunk("data", pcm)), uint64(4))
	f.Fuzz(func(t *testing.T, data []byte, seed uint64) {
		decodeBoth(t, data, WAV, Format{}, seed)
	})
}

func FuzzDecodeMP3(f *testing.F) {
	for _, name := range []string{"welcome_24k_48kbit_mono.mp3", "tone_44100_stereo_id3.mp3"} {
		b := fixture(f, name)
		f.Add(b[:min(len(b), 1500)], uint64(1))
	}
	f.Add([]byte("ID3\x04\x00\x10\x00\x00\x00\x00ID3\x04\x00\x00\x00\x00\x00\x00\xff\xf3"), uint64(2))
	f.Fuzz(func(t *testing.T, data []byte, seed uint64) {
		decodeBoth(t, data, MP3, Format{}, seed)
	})
}

func FuzzResampleChunking(f *testing.F) {
	f.Add(s16(sine(300, 24000, 1000, 30000)), uint8(4), uint64(1))
	f.Add([]byte{0x80, 0x7f, 0xff, 0x7f, 0x00, 0x80}, uint8(1), uint64(2))
	f.Fuzz(func(t *testing.T, data []byte, rate uint8, seed uint64) {
		in := testRates[int(rate)%len(testRates)]
		out := decodeBoth(t, data, PCM16, Format{in, 1}, seed)
		if n := len(data) / 2; len(out)/2 != wantLen(n, in) {
			t.Fatalf("%d input samples at %d Hz gave %d, want %d", n, in, len(out)/2, wantLen(n, in))
		}
	})
}
