package audio

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"strings"
	"testing"
)

func TestDecodeArguments(t *testing.T) {
	if _, err := Decode(nil, WAV, Format{}); err == nil {
		t.Error("nil reader accepted")
	}
	if _, err := Decode(strings.NewReader(""), Encoding(9), Format{}); err == nil || !strings.Contains(err.Error(), "encoding(9)") {
		t.Errorf("unknown encoding: %v", err)
	}
	for _, f := range []Format{{24000, 0}, {24000, 33}, {0, 1}} {
		if _, err := Decode(strings.NewReader(""), PCM16, f); err == nil {
			t.Errorf("format %+v accepted", f)
		}
	}
	// WAV and MP3 ignore in; nothing is read before the first Read.
	for _, enc := range []Encoding{WAV, MP3} {
		r := &scriptReader{t: t}
		if _, err := Decode(r, enc, Format{-1, -1}); err != nil {
			t.Errorf("%v: %v", enc, err)
		}
	}
}

func TestDecodePCM16Stereo(t *testing.T) {
	in := s16([]int16{100, 200, -300, -500, 7, 8})
	y := decodeAll(t, bytes.NewReader(append(in, 9)), PCM16, Format{48000, 2}) // stray half frame dropped
	if !equal16(y, []int16{150, -400, 8}) {
		t.Fatalf("got %v", y)
	}
}

// TestDecodeKeepsReaderErrors: a provider failure mid-stream surfaces after
// the audio decoded so far, and errors.Is still recognises it.
func TestDecodeKeepsReaderErrors(t *testing.T) {
	for _, enc := range []Encoding{PCM16, WAV, MP3} {
		var data []byte
		switch enc {
		case PCM16:
			data = s16(sine(4800, 24000, 440, 10000))
		case WAV:
			data = fixture(t, "speech_22050.wav")[:20000]
		case MP3:
			data = fixture(t, "welcome_24k_48kbit_mono.mp3")[:5000]
		}
		r := io.MultiReader(bytes.NewReader(data), errReader{context.Canceled})
		d, err := Decode(r, enc, Format{24000, 1})
		if err != nil {
			t.Fatal(err)
		}
		b, err := io.ReadAll(d)
		if !errors.Is(err, context.Canceled) {
			t.Errorf("%v: error %v does not wrap context.Canceled", enc, err)
		}
		if len(b) == 0 {
			t.Errorf("%v: no audio before the error", enc)
		}
	}
}

type errReader struct{ err error }

func (e errReader) Read([]byte) (int, error) { return 0, e.err }

// TestDecodeStuckSource: a reader that keeps returning (0, nil) ends with
// io.ErrNoProgress instead of spinning forever.
func TestDecodeStuckSource(t *testing.T) {
	for _, enc := range []Encoding{PCM16, WAV, MP3} {
		d, _ := Decode(zeroReader{}, enc, Format{24000, 1})
		if _, err := io.ReadAll(d); !errors.Is(err, io.ErrNoProgress) {
			t.Errorf("%v: got %v, want io.ErrNoProgress", enc, err)
		}
	}
}

type zeroReader struct{}

func (zeroReader) Read([]byte) (int, error) { return 0, nil }

// TestWAVStreamsIncrementally: a streamed WAV (placeholder sizes) yields the
// audio of each piece before the decoder reads the next piece.
func TestWAVStreamsIncrementally(t *testing.T) {
	w := fixture(t, "speech_stream_22050.wav")
	const piece = 2205 * 2 // 0.1 s
	pieces := [][]byte{w[:44]}
	for b := w[44:]; len(b) > 0; b = b[min(piece, len(b)):] {
		pieces = append(pieces, b[:min(piece, len(b))])
	}
	received := 0
	fr := &frameReader{pieces: pieces, received: &received}
	d, err := Decode(fr, WAV, Format{})
	if err != nil {
		t.Fatal(err)
	}
	buf := make([]byte, 777)
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
	f, _ := filterFor(22050, SampleRate)
	for k := 2; k < len(pieces); k++ {
		in := (k-1)*2205 - f.delay // samples fully usable before piece k
		want := 2 * (in*SampleRate/22050 - 1)
		if fr.startedAt[k] < want {
			t.Fatalf("piece %d started with %d bytes out, want ≥ %d", k, fr.startedAt[k], want)
		}
	}
}

// TestDecodeAllRatesFromWAV runs each common provider rate through the WAV path.
func TestDecodeAllRatesFromWAV(t *testing.T) {
	for _, in := range testRates {
		t.Run(fmt.Sprint(in), func(t *testing.T) {
			x := sine(in/5, in, 1000, 12000)
			w := riff(0, chunk("fmt ", fmtBody(1, 1, in, 16)), chunk("data", s16(x)))
			y := decodeWAV(t, w)
			if len(y) != wantLen(len(x), in) {
				t.Fatalf("%d samples, want %d", len(y), wantLen(len(x), in))
			}
		})
	}
}

// TestDecodeChunkFill: from a fast source (whole stream available), Decode
// plus Chunker yields nearly full wire chunks, not fragments.
func TestDecodeChunkFill(t *testing.T) {
	for _, in := range testRates {
		d, err := Decode(bytes.NewReader(s16(sine(in, in, 300, 8000))), PCM16, Format{in, 1})
		if err != nil {
			t.Fatal(err)
		}
		c := NewChunker(d)
		var sizes []int
		for {
			ch, err := c.Next()
			if err == io.EOF {
				break
			}
			if err != nil {
				t.Fatal(err)
			}
			sizes = append(sizes, len(ch))
		}
		// The first holds the look-ahead; the last two are the remainder and the flushed tail.
		for i := 1; i < len(sizes)-2; i++ {
			if sizes[i] < MaxChunkBytes-16 {
				t.Fatalf("%d Hz: chunk %d has %d bytes; sizes %v", in, i, sizes[i], sizes)
			}
		}
	}
}
