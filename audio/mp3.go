package audio

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"io"

	"github.com/hajimehoshi/go-mp3"
)

// MP3 decoding uses github.com/hajimehoshi/go-mp3 (pure Go, Layer III,
// MPEG-1 and MPEG-2 LSF; MPEG-2.5 and free-format bitrates are rejected).
//
// Streaming behaviour, checked in its source (v0.3.4) and by
// TestMP3StreamsFrameByFrame: on a reader that is not an io.Seeker,
// mp3.NewDecoder reads exactly the first frame (header, side info, main data)
// with io.ReadFull and decodes it; every later Read decodes exactly one more
// frame. It never reads ahead into the next frame, so PCM for frame n is
// available as soon as the last byte of frame n arrives: the added latency is
// one frame of buffering (576 samples = 24 ms for Edge's 24 kHz MPEG-2 stream,
// 1152 samples = 26 ms at 44.1 kHz), on top of the codec's own encoder delay,
// which is silence at the start rather than waiting. If the reader IS an
// io.Seeker the decoder scans the whole stream first to compute its length,
// so the reader is always wrapped to hide Seek.
//
// go-mp3 has no guard against corrupt input panicking (index out of range in
// Huffman or side-info decoding); every call into it is wrapped so a panic
// becomes an error. It allocates an ID3v2 tag's declared size (up to 256 MB),
// so ID3v2 tags are skipped here before it sees the stream.
const (
	maxID3Tags = 8
	mp3Frame   = 4 // go-mp3 always emits 16-bit stereo
)

// mp3Source downmixes go-mp3's stereo output to mono.
type mp3Source struct {
	dec   *mp3.Decoder
	raw   []byte
	carry int
}

// plainReader hides every method but Read (notably io.Seeker).
type plainReader struct{ r io.Reader }

func (p plainReader) Read(b []byte) (int, error) { return p.r.Read(b) }

// openMP3 skips ID3v2 tags and decodes the first frame to learn the rate.
func openMP3(r io.Reader) (source, int, error) {
	r, err := skipID3v2(r)
	if err != nil {
		return nil, 0, err
	}
	var dec *mp3.Decoder
	err = protect(func() (err error) {
		dec, err = mp3.NewDecoder(plainReader{r})
		return err
	})
	if err != nil {
		if errors.Is(err, io.EOF) {
			return nil, 0, errors.New("audio: mp3: no MPEG audio frame found")
		}
		return nil, 0, fmt.Errorf("audio: mp3: first frame: %w", err)
	}
	rate := dec.SampleRate()
	if err := validRate(rate, SampleRate); err != nil {
		return nil, 0, fmt.Errorf("audio: mp3: %w", err)
	}
	return &mp3Source{dec: dec, raw: make([]byte, 4608)}, rate, nil
}

// skipID3v2 discards leading ID3v2 tags without buffering them and returns a
// reader that starts at the first byte after them.
func skipID3v2(r io.Reader) (io.Reader, error) {
	for i := 0; i < maxID3Tags; i++ {
		var h [10]byte
		n, err := io.ReadFull(r, h[:])
		if err != nil && !errors.Is(err, io.ErrUnexpectedEOF) && !errors.Is(err, io.EOF) {
			return nil, fmt.Errorf("audio: mp3: read: %w", err)
		}
		if n < len(h) || string(h[:3]) != "ID3" {
			return io.MultiReader(bytes.NewReader(h[:n]), r), nil
		}
		size := int64(0)
		for _, b := range h[6:10] {
			if b&0x80 != 0 {
				return nil, errors.New("audio: mp3: corrupt ID3v2 tag size")
			}
			size = size<<7 | int64(b)
		}
		if h[5]&0x10 != 0 { // footer present
			size += 10
		}
		if _, err := io.CopyN(io.Discard, r, size); err != nil {
			if errors.Is(err, io.EOF) {
				return nil, errors.New("audio: mp3: stream ends inside an ID3v2 tag")
			}
			return nil, fmt.Errorf("audio: mp3: read: %w", err)
		}
	}
	return nil, fmt.Errorf("audio: mp3: more than %d ID3v2 tags", maxID3Tags)
}

// protect runs f, turning a panic inside the decoder into an error.
func protect(f func() error) (err error) {
	defer func() {
		if p := recover(); p != nil {
			err = fmt.Errorf("corrupt stream (decoder panic: %v)", p)
		}
	}()
	return f()
}

func (s *mp3Source) read(dst []float32) (int, error) {
	want := min(len(dst)*mp3Frame, len(s.raw))
	if want <= s.carry {
		return 0, nil
	}
	var got int
	err := protect(func() (err error) {
		got, err = s.dec.Read(s.raw[s.carry:want])
		return err
	})
	total := s.carry + got
	frames := total / mp3Frame
	for i := 0; i < frames; i++ {
		l := int16(binary.LittleEndian.Uint16(s.raw[4*i:]))
		r := int16(binary.LittleEndian.Uint16(s.raw[4*i+2:]))
		dst[i] = float32(int32(l)+int32(r)) / 2
	}
	s.carry = copy(s.raw, s.raw[frames*mp3Frame:total])
	return frames, err
}
