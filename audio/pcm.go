package audio

import (
	"encoding/binary"
	"io"
	"math"
)

// sampleKind is how one interleaved sample is stored.
type sampleKind int

const (
	kindU8 sampleKind = iota // unsigned 8-bit (WAV convention)
	kindS16
	kindS24
	kindS32
	kindF32
	kindF64
)

// size is the byte width of one sample of kind k.
func (k sampleKind) size() int {
	switch k {
	case kindU8:
		return 1
	case kindS16:
		return 2
	case kindS24:
		return 3
	case kindS32, kindF32:
		return 4
	}
	return 8
}

const (
	maxChannels = 32
	// maxRawBytes bounds the byte buffer a pcmSource reads into per call.
	maxRawBytes = 16 << 10
	// maxEmptyReads is how many (0, nil) reads in a row count as a stuck source.
	maxEmptyReads = 100
)

// source yields mono samples in int16 scale (−32768..32767) at a fixed rate.
// read may return samples together with an error; any error ends the stream
// (io.EOF at a clean end). (0, nil) means only part of a frame arrived.
type source interface {
	read(dst []float32) (int, error)
}

// pcmSource reads interleaved integer or float frames from a stream and
// downmixes them to mono by averaging the channels.
type pcmSource struct {
	r     io.Reader
	ch    int
	kind  sampleKind
	frame int    // bytes per frame
	raw   []byte // read buffer; raw[:carry] is an incomplete frame from the last read
	carry int
}

// newPCMSource reads at most maxFrames frames (and maxRawBytes bytes) a call.
func newPCMSource(r io.Reader, ch int, kind sampleKind, maxFrames int) *pcmSource {
	frame := ch * kind.size()
	frames := max(min(maxFrames, maxRawBytes/frame), 1)
	return &pcmSource{r: r, ch: ch, kind: kind, frame: frame, raw: make([]byte, frames*frame)}
}

// read does a single Read of the underlying stream, so samples flow as soon as
// they arrive. A partial frame at EOF is dropped (half a frame is not audio).
func (s *pcmSource) read(dst []float32) (int, error) {
	want := min(len(dst), len(s.raw)/s.frame) * s.frame
	if want <= s.carry {
		return 0, nil
	}
	got, err := s.r.Read(s.raw[s.carry:want])
	total := s.carry + got
	frames := total / s.frame
	s.convert(dst[:frames], s.raw[:frames*s.frame])
	s.carry = copy(s.raw, s.raw[frames*s.frame:total])
	return frames, err
}

// convert downmixes whole frames in b into dst.
func (s *pcmSource) convert(dst []float32, b []byte) {
	if s.ch == 1 && s.kind == kindS16 { // the common case, kept tight
		for i := range dst {
			dst[i] = float32(int16(binary.LittleEndian.Uint16(b[2*i:])))
		}
		return
	}
	w := s.kind.size()
	inv := 1 / float64(s.ch)
	for i := range dst {
		f := b[i*s.frame : (i+1)*s.frame]
		sum := 0.0 // float64: exact for any channel count, cannot overflow
		for c := 0; c < s.ch; c++ {
			sum += sampleAt(s.kind, f[c*w:])
		}
		dst[i] = float32(sum * inv)
	}
}

// sampleAt decodes one sample to int16 scale. Float samples are clipped to
// [−1, 1] and NaN becomes silence, so nothing non-finite enters the filter.
func sampleAt(k sampleKind, b []byte) float64 {
	switch k {
	case kindU8:
		return float64(int(b[0])-128) * 256
	case kindS16:
		return float64(int16(binary.LittleEndian.Uint16(b)))
	case kindS24:
		v := int32(uint32(b[0])<<8|uint32(b[1])<<16|uint32(b[2])<<24) >> 8
		return float64(v) / 256
	case kindS32:
		return float64(int32(binary.LittleEndian.Uint32(b))) / 65536
	case kindF32:
		return clipUnit(float64(math.Float32frombits(binary.LittleEndian.Uint32(b))))
	default:
		return clipUnit(math.Float64frombits(binary.LittleEndian.Uint64(b)))
	}
}

func clipUnit(v float64) float64 {
	switch {
	case v != v: // NaN
		return 0
	case v > 1:
		return 32768
	case v < -1:
		return -32768
	}
	return v * 32768
}

// appendS16 rounds (half away from zero), clips and appends samples as s16le.
func appendS16(b []byte, x []float32) []byte {
	for _, v := range x {
		var s int16
		switch {
		case v >= 32767:
			s = 32767
		case v <= -32768:
			s = -32768
		case v >= 0:
			s = int16(v + 0.5)
		default:
			s = int16(v - 0.5)
		}
		b = binary.LittleEndian.AppendUint16(b, uint16(s))
	}
	return b
}

// progressReader turns a run of (0, nil) reads into io.ErrNoProgress, so a
// misbehaving source cannot make a decoder (or io.ReadFull inside go-mp3) spin.
type progressReader struct {
	r     io.Reader
	empty int
}

func (p *progressReader) Read(b []byte) (int, error) {
	if len(b) == 0 {
		return 0, nil
	}
	n, err := p.r.Read(b)
	if n == 0 && err == nil {
		p.empty++
		if p.empty >= maxEmptyReads {
			return 0, io.ErrNoProgress
		}
		return 0, nil
	}
	p.empty = 0
	return n, err
}
