package audio

import (
	"bytes"
	"encoding/binary"
	"io"
	"math"
	"strings"
	"testing"
)

// chunk builds one RIFF chunk (with its pad byte when size is odd).
func chunk(id string, body []byte) []byte {
	b := append([]byte(id), 0, 0, 0, 0)
	binary.LittleEndian.PutUint32(b[4:], uint32(len(body)))
	b = append(b, body...)
	if len(body)%2 == 1 {
		b = append(b, 0)
	}
	return b
}

// fmtBody builds a plain 16-byte fmt chunk body.
func fmtBody(tag, ch, rate, bits int) []byte {
	b := make([]byte, 16)
	binary.LittleEndian.PutUint16(b[0:], uint16(tag))
	binary.LittleEndian.PutUint16(b[2:], uint16(ch))
	binary.LittleEndian.PutUint32(b[4:], uint32(rate))
	binary.LittleEndian.PutUint32(b[8:], uint32(rate*ch*bits/8))
	binary.LittleEndian.PutUint16(b[12:], uint16(ch*bits/8))
	binary.LittleEndian.PutUint16(b[14:], uint16(bits))
	return b
}

// extBody builds a 40-byte WAVE_FORMAT_EXTENSIBLE fmt body.
func extBody(subTag, ch, rate, bits int) []byte {
	b := fmtBody(0xFFFE, ch, rate, bits)
	ext := make([]byte, 24)
	binary.LittleEndian.PutUint16(ext[0:], 22)
	binary.LittleEndian.PutUint16(ext[2:], uint16(bits))
	binary.LittleEndian.PutUint32(ext[4:], 0x3)
	binary.LittleEndian.PutUint16(ext[8:], uint16(subTag))
	copy(ext[10:], ksDataFormatTail)
	return append(b, ext...)
}

// riff wraps chunks in a RIFF/WAVE header with the given size field.
func riff(size uint32, chunks ...[]byte) []byte {
	b := []byte("RIFF\x00\x00\x00\x00WAVE")
	binary.LittleEndian.PutUint32(b[4:], size)
	for _, c := range chunks {
		b = append(b, c...)
	}
	return b
}

// withDataSize rewrites the data chunk's size field (placeholder tests).
func withDataSize(w []byte, size uint32) []byte {
	i := bytes.Index(w, []byte("data"))
	out := bytes.Clone(w)
	binary.LittleEndian.PutUint32(out[i+4:], size)
	return out
}

func decodeWAV(t *testing.T, w []byte) []int16 {
	t.Helper()
	return decodeAll(t, bytes.NewReader(w), WAV, Format{})
}

func decodeErr(t *testing.T, data []byte, enc Encoding) error {
	t.Helper()
	d, err := Decode(bytes.NewReader(data), enc, Format{})
	if err != nil {
		t.Fatal(err)
	}
	_, err = io.ReadAll(d)
	return err
}

func TestWAVFixtures(t *testing.T) {
	cases := []struct {
		file  string
		in    int // source rate
		n     int // source frames
		toneF float64
		toneA float64 // expected mono amplitude (int16 scale); 0 = speech
	}{
		{"speech_22050.wav", 22050, 27845, 0, 0},
		{"speech_stream_22050.wav", 22050, (50736 - 44) / 2, 0, 0},
		{"tone_24000_float32.wav", 24000, 6000, 1000, 0.5 * 32768},
		{"tone_44100_stereo.wav", 44100, 11025, 0, 0},
		{"tone_16000_3ch_extensible.wav", 16000, 3200, 0, 0},
	}
	for _, c := range cases {
		t.Run(c.file, func(t *testing.T) {
			y := decodeWAV(t, fixture(t, c.file))
			if len(y) != wantLen(c.n, c.in) {
				t.Fatalf("%d samples, want %d (%d frames at %d Hz)", len(y), wantLen(c.n, c.in), c.n, c.in)
			}
			if IsSilent(s16(y)) || rms(y, 0, len(y)) < 300 {
				t.Fatalf("decoded audio is (near) silent: RMS %.0f", rms(y, 0, len(y)))
			}
			if c.toneA > 0 {
				skip := skipFor(t, c.in)
				ideal := func(i int) float64 { return c.toneA * math.Sin(2*math.Pi*c.toneF*float64(i)/SampleRate) }
				if snr := snrDB(y, ideal, skip, len(y)-skip); snr < 70 {
					t.Errorf("SNR %.1f dB vs ideal tone", snr)
				}
			}
		})
	}
}

func TestWAVStereoAverage(t *testing.T) {
	// Two loud channels must average without int16 overflow.
	frames := []int16{32767, 32767, -32768, -32768, 1000, -1000, 32767, -32768, 3, 4}
	y := decodeWAV(t, riff(0, chunk("fmt ", fmtBody(1, 2, 48000, 16)), chunk("data", s16(frames))))
	want := []int16{32767, -32768, 0, -1, 4} // −1/2 and 7/2 round half away from zero
	if !equal16(y, want) {
		t.Fatalf("got %v, want %v", y, want)
	}
}

func equal16(a, b []int16) bool {
	return bytes.Equal(s16(a), s16(b))
}

func TestWAVSampleFormats(t *testing.T) {
	f32 := func(v ...float32) []byte {
		var b []byte
		for _, x := range v {
			b = binary.LittleEndian.AppendUint32(b, math.Float32bits(x))
		}
		return b
	}
	f64 := func(v ...float64) []byte {
		var b []byte
		for _, x := range v {
			b = binary.LittleEndian.AppendUint64(b, math.Float64bits(x))
		}
		return b
	}
	nan := float32(math.NaN())
	inf := float32(math.Inf(1))
	cases := []struct {
		name string
		fmt  []byte
		data []byte
		want []int16
	}{
		{"u8", fmtBody(1, 1, 48000, 8), []byte{0, 128, 255}, []int16{-32768, 0, 32512}},
		{"s24", fmtBody(1, 1, 48000, 24), []byte{0, 0, 0x80, 0xff, 0xff, 0x7f, 0x80, 0x00, 0x00}, []int16{-32768, 32767, 1}},
		{"s32", fmtBody(1, 1, 48000, 32), binary.LittleEndian.AppendUint32(nil, 0x40000000), []int16{16384}},
		{"f32 clip+nan", fmtBody(3, 1, 48000, 32), f32(0.5, -0.25, 1, -1, 2.5, -7, nan, inf), []int16{16384, -8192, 32767, -32768, 32767, -32768, 0, 32767}},
		{"f64", fmtBody(3, 1, 48000, 64), f64(0.5, -1.5), []int16{16384, -32768}},
		{"ext pcm16", extBody(1, 2, 48000, 16), s16([]int16{100, 300}), []int16{200}},
		{"ext float", extBody(3, 1, 48000, 32), f32(0.25), []int16{8192}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			y := decodeWAV(t, riff(0xFFFFFFFF, chunk("fmt ", c.fmt), chunk("data", c.data)))
			if !equal16(y, c.want) {
				t.Fatalf("got %v, want %v", y, c.want)
			}
		})
	}
}

func TestWAVChunksAndPlaceholders(t *testing.T) {
	pcm := s16([]int16{1, 2, 3, 4, 5, 6})
	fm := chunk("fmt ", fmtBody(1, 1, 48000, 16))
	list := chunk("LIST", []byte("INFOISFT\x05\x00\x00\x00Lavf\x00")) // odd size: padded
	fact := chunk("fact", []byte{6, 0, 0, 0})
	trailer := chunk("LIST", []byte("INFOjunk"))
	cases := map[string][]byte{
		"LIST and fact skipped":  riff(100, fm, list, fact, chunk("data", pcm)),
		"LIST before fmt":        riff(100, list, fm, chunk("data", pcm)),
		"data size 0":            withDataSize(riff(0, fm, chunk("data", pcm)), 0),
		"data size 0xFFFFFFFF":   withDataSize(riff(0xFFFFFFFF, fm, chunk("data", pcm)), 0xFFFFFFFF),
		"data size too large":    withDataSize(riff(0x7FFFF024, fm, chunk("data", pcm)), 0x7FFFF000),
		"trailing chunk ignored": riff(100, fm, chunk("data", pcm), trailer),
		"odd data size trims":    append(withDataSize(riff(0, fm, chunk("data", pcm)), 13), 0),
	}
	for name, w := range cases {
		t.Run(name, func(t *testing.T) {
			y := decodeWAV(t, w)
			if !equal16(y, []int16{1, 2, 3, 4, 5, 6}) {
				t.Fatalf("got %v", y)
			}
		})
	}
	t.Run("partial last frame dropped", func(t *testing.T) {
		w := riff(0, chunk("fmt ", fmtBody(1, 2, 48000, 16)), chunk("data", s16([]int16{10, 20, 30})))
		if y := decodeWAV(t, w); !equal16(y, []int16{15}) {
			t.Fatalf("got %v", y)
		}
	})
	t.Run("RF64 with ds64", func(t *testing.T) {
		ds := make([]byte, 28)
		binary.LittleEndian.PutUint64(ds[8:], 8) // data size: 4 samples
		w := riff(0xFFFFFFFF, chunk("ds64", ds), fm, chunk("data", pcm))
		copy(w, "RF64")
		w = withDataSize(w, 0xFFFFFFFF)
		if y := decodeWAV(t, w); !equal16(y, []int16{1, 2, 3, 4}) {
			t.Fatalf("got %v", y)
		}
	})
}

func TestWAVErrors(t *testing.T) {
	fm := chunk("fmt ", fmtBody(1, 1, 24000, 16))
	data := chunk("data", s16([]int16{1, 2}))
	badGUID := extBody(1, 1, 24000, 16)
	badGUID[30] ^= 0xff
	many := []byte{}
	for i := 0; i < maxWAVChunks+1; i++ {
		many = append(many, chunk("junk", []byte{1, 2})...)
	}
	cases := []struct {
		name string
		wav  []byte
		want string
	}{
		{"empty", nil, "truncated RIFF header"},
		{"not riff", []byte("ID3\x04\x00\x00\x00\x00\x00\x00\x00\x00\x00"), "not a RIFF/WAVE"},
		{"no data", riff(0, fm), "no data chunk"},
		{"data before fmt", riff(0, data, fm), "data chunk before fmt"},
		{"adpcm", riff(0, chunk("fmt ", fmtBody(2, 1, 24000, 4)), data), "0x0002 (MS ADPCM)"},
		{"mulaw", riff(0, chunk("fmt ", fmtBody(7, 1, 8000, 8)), data), "µ-law"},
		{"pcm 12 bit", riff(0, chunk("fmt ", fmtBody(1, 1, 24000, 12)), data), "unsupported format 0x0001 (PCM) with 12 bits"},
		{"float 16", riff(0, chunk("fmt ", fmtBody(3, 1, 24000, 16)), data), "IEEE float"},
		{"ext bad guid", riff(0, chunk("fmt ", badGUID), data), "subformat GUID"},
		{"ext short", riff(0, chunk("fmt ", extBody(1, 1, 24000, 16)[:30]), data), "EXTENSIBLE fmt chunk too short"},
		{"zero channels", riff(0, chunk("fmt ", fmtBody(1, 0, 24000, 16)), data), "channel count 0"},
		{"bad block align", riff(0, chunk("fmt ", func() []byte { b := fmtBody(1, 2, 24000, 16); b[12] = 3; return b }()), data), "block align 3"},
		{"bad rate", riff(0, chunk("fmt ", fmtBody(1, 1, 44056, 16)), data), "44056 Hz unsupported"},
		{"fmt too short", riff(0, chunk("fmt ", make([]byte, 14)), data), "bad fmt chunk size 14"},
		{"truncated fmt", riff(0, fm)[:30], "truncated fmt chunk"},
		{"truncated LIST", riff(0, fm, chunk("LIST", make([]byte, 100)))[:60], "truncated \"LIST\" chunk"},
		{"too many chunks", riff(0, fm, many, data), "no data chunk within the first"},
		// A LIST chunk declaring 2 MiB is refused before anything is skipped.
		{"huge metadata", riff(0, fm, []byte("LIST\x00\x00\x20\x00")), "bytes of metadata before the data chunk"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			err := decodeErr(t, c.wav, WAV)
			if err == nil || !strings.Contains(err.Error(), c.want) {
				t.Fatalf("error %v, want it to mention %q", err, c.want)
			}
		})
	}
}
