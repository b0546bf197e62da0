package audio

import (
	"bytes"
	"fmt"
	"io"
	"math/rand/v2"
	"testing"

	"github.com/nexy-server/nexy/internal/cputime"
)

// Benchmarks report MB/s of 48 kHz output, x_realtime (seconds of audio
// produced per second of wall time; use -cpu 1 for one core) and cpu-ns/op,
// the process's CPU time per op, which stays meaningful when other processes
// share the machine.

// benchDecode decodes data per iteration and reads the result the way the
// chunker does: into a MaxChunkBytes buffer, one Read at a time.
func benchDecode(b *testing.B, data []byte, enc Encoding, in Format, audioSec float64) {
	b.Helper()
	out := int64(audioSec * SampleRate * 2)
	b.SetBytes(out)
	b.ReportAllocs()
	buf := make([]byte, MaxChunkBytes)
	b.ResetTimer()
	cpu0 := cputime.Self()
	for i := 0; i < b.N; i++ {
		d, err := Decode(bytes.NewReader(data), enc, in)
		if err != nil {
			b.Fatal(err)
		}
		for {
			_, err := d.Read(buf)
			if err == io.EOF {
				break
			}
			if err != nil {
				b.Fatal(err)
			}
		}
	}
	cputime.Report(b, cpu0)
	b.ReportMetric(float64(b.N)*audioSec/b.Elapsed().Seconds(), "x_realtime")
}

// BenchmarkResample is the whole PCM16 path for the rates providers send:
// s16 in, resampled to 48 kHz, s16 out. 1 s of a tone per iteration.
func BenchmarkResample(b *testing.B) {
	for _, in := range []int{16000, 22050, 24000, 44100, 96000} {
		b.Run(fmt.Sprintf("%dto48000", in), func(b *testing.B) {
			x := sine(in, in, 440, 12000)
			filterFor(in, SampleRate) // the shared table is built once per process
			benchDecode(b, s16(x), PCM16, Format{in, 1}, 1)
		})
	}
}

// wire48k is 1 s of noise-like 48 kHz mono s16le (compressible data would
// flatter nothing here: passthrough does no per-sample work).
func wire48k() []byte {
	rng := rand.New(rand.NewPCG(48, 0))
	x := make([]int16, SampleRate)
	for i := range x {
		x[i] = int16(rng.IntN(65536) - 32768)
	}
	return s16(x)
}

// BenchmarkWAVPassthrough: a 48 kHz mono s16 WAV (the wire format already),
// 1 s per iteration.
func BenchmarkWAVPassthrough(b *testing.B) {
	w := riff(0, chunk("fmt ", fmtBody(1, 1, SampleRate, 16)), chunk("data", wire48k()))
	benchDecode(b, w, WAV, Format{}, 1)
}

// BenchmarkPCMPassthrough: raw PCM declared at 48 kHz mono, 1 s per iteration.
func BenchmarkPCMPassthrough(b *testing.B) {
	benchDecode(b, wire48k(), PCM16, Format{SampleRate, 1}, 1)
}

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

// BenchmarkChunker cuts 1 s of wire PCM into chunks, none recycled.
func BenchmarkChunker(b *testing.B) { benchChunker(b, false) }

// BenchmarkChunkerRecycled gives every chunk back with Recycle once used, as
// the server's outbox does after Send.
func BenchmarkChunkerRecycled(b *testing.B) { benchChunker(b, true) }

func benchChunker(b *testing.B, recycle bool) {
	data := make([]byte, SampleRate*2)
	b.SetBytes(int64(len(data)))
	b.ReportAllocs()
	cpu0 := cputime.Self()
	for i := 0; i < b.N; i++ {
		c := NewChunker(bytes.NewReader(data))
		for {
			ch, err := c.Next()
			if err == io.EOF {
				break
			} else if err != nil {
				b.Fatal(err)
			}
			if recycle {
				Recycle(ch)
			}
		}
	}
	cputime.Report(b, cpu0)
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "x_realtime")
}
