package audio

import (
	"bytes"
	"io"
	"testing"
)

// Benchmarks report MB/s of 48 kHz output and x_realtime: seconds of audio
// produced per second of one core's time (go test -bench . -cpu 1).

func benchDecode(b *testing.B, data []byte, enc Encoding, in Format, audioSec float64) {
	b.Helper()
	out := int64(audioSec * SampleRate * 2)
	b.SetBytes(out)
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		d, err := Decode(bytes.NewReader(data), enc, in)
		if err != nil {
			b.Fatal(err)
		}
		if _, err := io.Copy(io.Discard, d); err != nil {
			b.Fatal(err)
		}
	}
	b.ReportMetric(float64(b.N)*audioSec/b.Elapsed().Seconds(), "x_realtime")
}

func benchResample(b *testing.B, in int) {
	x := sine(in, in, 440, 12000) // 1 s
	filterFor(in, SampleRate)     // the shared table is built once per process
	benchDecode(b, s16(x), PCM16, Format{in, 1}, 1)
}

func BenchmarkResample24to48(b *testing.B)    { benchResample(b, 24000) }
func BenchmarkResample22050to48(b *testing.B) { benchResample(b, 22050) }
func BenchmarkResample44100to48(b *testing.B) { benchResample(b, 44100) }
func BenchmarkResample96to48(b *testing.B)    { benchResample(b, 96000) }

// BenchmarkDecodeMP3 is the Edge path: 24 kHz mono 48 kbit/s MP3 → 48 kHz PCM.
func BenchmarkDecodeMP3(b *testing.B) {
	data := fixture(b, "welcome_24k_48kbit_mono.mp3")
	_, frames, spf, rate := mp3Frames(b, data)
	benchDecode(b, data, MP3, Format{}, float64(len(frames)*spf)/float64(rate))
}

func BenchmarkDecodeWAV22050(b *testing.B) {
	data := fixture(b, "speech_22050.wav")
	benchDecode(b, data, WAV, Format{}, 27845.0/22050)
}

// BenchmarkChunker cuts 1 s of wire PCM into chunks.
func BenchmarkChunker(b *testing.B) {
	data := make([]byte, SampleRate*2)
	b.SetBytes(int64(len(data)))
	b.ReportAllocs()
	for i := 0; i < b.N; i++ {
		c := NewChunker(bytes.NewReader(data))
		for {
			if _, err := c.Next(); err == io.EOF {
				break
			} else if err != nil {
				b.Fatal(err)
			}
		}
	}
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "x_realtime")
}
