package audio

import (
	"bytes"
	"errors"
	"io"
	"math/rand/v2"
	"strings"
	"testing"
)

// mp3Frames splits an MPEG-1/2 Layer III stream (after any ID3v2 tag) into
// frames and returns them with the samples per frame and the sample rate.
// Test helper only: the decoder itself relies on go-mp3's parser.
func mp3Frames(t testing.TB, b []byte) (tag []byte, frames [][]byte, spf, rate int) {
	t.Helper()
	if bytes.HasPrefix(b, []byte("ID3")) {
		size := int(b[6])<<21 | int(b[7])<<14 | int(b[8])<<7 | int(b[9])
		tag, b = b[:10+size], b[10+size:]
	}
	br1 := []int{0, 32, 40, 48, 56, 64, 80, 96, 112, 128, 160, 192, 224, 256, 320}
	br2 := []int{0, 8, 16, 24, 32, 40, 48, 56, 64, 80, 96, 112, 128, 144, 160}
	for len(b) >= 4 {
		if len(b) == 128 && bytes.HasPrefix(b, []byte("TAG")) {
			break // ID3v1 trailer
		}
		if b[0] != 0xFF || b[1]&0xE0 != 0xE0 || (b[1]>>1)&3 != 1 {
			t.Fatalf("no Layer III frame header at % x", b[:4])
		}
		mpeg1 := (b[1]>>3)&3 == 3
		bri, sri, pad := int(b[2]>>4), int(b[2]>>2)&3, int(b[2]>>1)&1
		var size int
		if mpeg1 {
			rate, spf = []int{44100, 48000, 32000}[sri], 1152
			size = 144*br1[bri]*1000/rate + pad
		} else {
			rate, spf = []int{22050, 24000, 16000}[sri], 576
			size = 72*br2[bri]*1000/rate + pad
		}
		if size > len(b) {
			size = len(b)
		}
		frames = append(frames, b[:size])
		b = b[size:]
	}
	return tag, frames, spf, rate
}

func TestMP3Fixtures(t *testing.T) {
	cases := []struct {
		file     string
		rate     int
		minRMS   float64
		toneRMS  float64 // expected RMS of the middle part, 0 = speech
		channels string
	}{
		{"welcome_24k_48kbit_mono.mp3", 24000, 500, 0, "mono"},
		{"tone_44100_stereo_id3.mp3", 44100, 4000, 8192, "stereo"}, // (sin440+sin660)/2 at 0.5 FS
	}
	for _, c := range cases {
		t.Run(c.file, func(t *testing.T) {
			data := fixture(t, c.file)
			_, frames, spf, rate := mp3Frames(t, data)
			if rate != c.rate {
				t.Fatalf("fixture rate %d, want %d", rate, c.rate)
			}
			y := decodeAll(t, bytes.NewReader(data), MP3, Format{})
			if want := wantLen(len(frames)*spf, rate); len(y) != want {
				t.Fatalf("%d samples, want %d (%d frames × %d at %d Hz)", len(y), want, len(frames), spf, rate)
			}
			if r := rms(y, 0, len(y)); IsSilent(s16(y)) || r < c.minRMS {
				t.Fatalf("decoded audio too quiet: RMS %.0f", r)
			}
			if c.toneRMS > 0 {
				r := rms(y, len(y)/4, 3*len(y)/4)
				if g := db(r / c.toneRMS); g < -0.5 || g > 0.5 {
					t.Errorf("tone RMS %.0f, want %.0f (±0.5 dB), got %+.2f dB", r, c.toneRMS, g)
				}
			}
		})
	}
}

// frameReader serves pieces one at a time (never more than one per Read)
// and records, whenever the decoder starts on piece k, how many output
// bytes the consumer had received by then.
type frameReader struct {
	pieces    [][]byte
	cur       int
	off       int
	received  *int
	startedAt []int
}

func (f *frameReader) Read(b []byte) (int, error) {
	if f.cur < len(f.pieces) && f.off == len(f.pieces[f.cur]) {
		f.cur, f.off = f.cur+1, 0
	}
	if f.cur == len(f.pieces) {
		return 0, io.EOF
	}
	if f.off == 0 {
		f.startedAt = append(f.startedAt, *f.received)
	}
	n := copy(b, f.pieces[f.cur][f.off:])
	f.off += n
	return n, nil
}

// TestMP3StreamsFrameByFrame proves the decoder emits PCM as frames arrive:
// before it reads a single byte of frame k+1, the consumer already has the
// audio of frames 0..k, minus only the resampler's look-ahead.
func TestMP3StreamsFrameByFrame(t *testing.T) {
	_, frames, spf, _ := mp3Frames(t, fixture(t, "welcome_24k_48kbit_mono.mp3"))
	received := 0
	fr := &frameReader{pieces: frames, received: &received}
	d, err := Decode(fr, MP3, Format{})
	if err != nil {
		t.Fatal(err)
	}
	buf := make([]byte, 1000)
	for {
		n, err := d.Read(buf)
		received += n
		if err == io.EOF {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
	}
	f, _ := filterFor(24000, SampleRate)
	if len(fr.startedAt) != len(frames) {
		t.Fatalf("decoder started %d frames, fixture has %d", len(fr.startedAt), len(frames))
	}
	for k := 1; k < len(frames); k++ {
		// Frames 0..k-1 are complete when frame k is first touched.
		want := 2 * 2 * (k*spf - f.delay) // bytes: ×2 for 24→48 kHz, ×2 bytes a sample
		if fr.startedAt[k] < want {
			t.Fatalf("when frame %d was first read only %d bytes were out, want ≥ %d", k, fr.startedAt[k], want)
		}
	}
	if received != 2*2*len(frames)*spf {
		t.Fatalf("received %d bytes in total, want %d", received, 2*2*len(frames)*spf)
	}
}

// TestMP3OverPipe: the Edge case, MP3 written frame by frame into an io.Pipe,
// decodes to exactly what the whole file decodes to.
func TestMP3OverPipe(t *testing.T) {
	data := fixture(t, "welcome_24k_48kbit_mono.mp3")
	_, frames, _, _ := mp3Frames(t, data)
	pr, pw := io.Pipe()
	go func() {
		for _, f := range frames {
			if _, err := pw.Write(f); err != nil {
				return
			}
		}
		pw.Close()
	}()
	got := decodeAll(t, pr, MP3, Format{})
	want := decodeAll(t, bytes.NewReader(data), MP3, Format{})
	if !equal16(got, want) {
		t.Fatal("pipe-fed decode differs from whole-file decode")
	}
}

// TestMP3Chunking: random piece sizes give identical output.
func TestMP3Chunking(t *testing.T) {
	data := fixture(t, "tone_44100_stereo_id3.mp3")
	want := decodeAll(t, bytes.NewReader(data), MP3, Format{})
	for _, maxPiece := range []int{1, 5, 200, 3000} {
		pr := &pieceReader{data: data, rng: rand.New(rand.NewPCG(7, uint64(maxPiece))), max: maxPiece}
		if got := decodeAll(t, pr, MP3, Format{}); !equal16(got, want) {
			t.Fatalf("pieces ≤ %d: output differs", maxPiece)
		}
	}
}

func TestMP3Truncated(t *testing.T) {
	data := fixture(t, "welcome_24k_48kbit_mono.mp3")
	y := decodeAll(t, bytes.NewReader(data[:len(data)/2+37]), MP3, Format{})
	if len(y) == 0 || IsSilent(s16(y)) {
		t.Fatal("truncated stream decoded to nothing")
	}
}

func TestMP3Errors(t *testing.T) {
	welcome := fixture(t, "welcome_24k_48kbit_mono.mp3")
	layer2 := bytes.Clone(welcome[:400])
	layer2[1] = layer2[1]&^0x06 | 0x04 // layer bits 10 = Layer II
	mpeg25 := bytes.Clone(welcome[:400])
	mpeg25[1] &^= 0x18 // version bits 00 = MPEG 2.5
	cases := []struct {
		name string
		data []byte
		want string
	}{
		{"empty", nil, "no MPEG audio frame found"},
		{"short", []byte{0xFF}, "no MPEG audio frame found"},
		{"text", []byte(strings.Repeat("not an mp3 at all ", 100)), "no MPEG audio frame found"},
		{"id3 truncated", []byte("ID3\x04\x00\x00\x00\x00\x10\x00abc"), "inside an ID3v2 tag"},
		{"id3 bad size", []byte("ID3\x04\x00\x00\x80\x00\x00\x00abc"), "corrupt ID3v2 tag size"},
		{"layer II", layer2, "layer"},
		{"mpeg 2.5", mpeg25, "2.5"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			err := decodeErr(t, c.data, MP3)
			if err == nil || !strings.Contains(err.Error(), c.want) {
				t.Fatalf("error %v, want it to mention %q", err, c.want)
			}
		})
	}
}

func TestMP3ID3Skipped(t *testing.T) {
	// Two stacked ID3v2 tags (one with a footer) before the audio.
	data := fixture(t, "welcome_24k_48kbit_mono.mp3")
	tag := append([]byte("ID3\x04\x00\x00\x00\x00\x00\x05"), "xxxxx"...)
	footer := append([]byte("ID3\x04\x00\x10\x00\x00\x00\x02"), "yy3DI\x04\x00\x10\x00\x00\x00\x02"...)
	stacked := append(append(append([]byte{}, tag...), footer...), data...)
	want := decodeAll(t, bytes.NewReader(data), MP3, Format{})
	if got := decodeAll(t, bytes.NewReader(stacked), MP3, Format{}); !equal16(got, want) {
		t.Fatal("ID3v2 tags changed the decoded audio")
	}
}

func TestProtectTurnsPanicIntoError(t *testing.T) {
	err := protect(func() error { var s []int; _ = s[3]; return nil })
	if err == nil || !strings.Contains(err.Error(), "decoder panic") {
		t.Fatalf("got %v", err)
	}
	sentinel := errors.New("x")
	if err := protect(func() error { return sentinel }); err != sentinel {
		t.Fatalf("got %v", err)
	}
}

// TestMP3DecoderPanicIsError: a 48-byte input found by FuzzDecodeMP3 makes
// go-mp3 v0.3.4 index out of range while reading the first frame; Decode
// must report it as an error (kept as a seed in testdata/fuzz/FuzzDecodeMP3).
func TestMP3DecoderPanicIsError(t *testing.T) {
	data := []byte("\xff\xf3$000000000000001\xa500000000000000000000000000000")
	err := decodeErr(t, data, MP3)
	if err == nil || !strings.Contains(err.Error(), "corrupt stream (decoder panic") {
		t.Fatalf("got %v, want a decoder-panic error", err)
	}
	t.Log(err)
}
