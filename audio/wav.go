package audio

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
)

// WAV parsing works on a plain stream: nothing is read beyond the header until
// samples are requested, and no seeking is needed. Streaming writers cannot
// know the final size, so a RIFF or data size of 0 or 0xFFFFFFFF means "until
// EOF"; a declared size larger than the stream (espeak-ng --stdout writes
// 0x7FFFF000) simply ends at EOF.
const (
	maxWAVChunks   = 64      // chunks tolerated before "data"
	maxWAVSkip     = 1 << 20 // bytes of unknown chunks tolerated before "data"
	maxFmtChunk    = 256
	wavFormatPCM   = 0x0001
	wavFormatFloat = 0x0003
	wavFormatExt   = 0xFFFE
	sizeUntilEOF   = 0xFFFFFFFF
)

// ksDataFormatTail is bytes 2..15 of the KSDATAFORMAT_SUBTYPE_* GUIDs used by
// WAVE_FORMAT_EXTENSIBLE (the first two bytes carry the format tag).
var ksDataFormatTail = []byte{0x00, 0x00, 0x00, 0x00, 0x10, 0x00, 0x80, 0x00, 0x00, 0xAA, 0x00, 0x38, 0x9B, 0x71}

// wavFormat is the decoded "fmt " chunk.
type wavFormat struct {
	tag      uint16 // after resolving WAVE_FORMAT_EXTENSIBLE
	channels int
	rate     int
	bits     int
	kind     sampleKind
}

// readWAVHeader parses chunks up to "data" and returns the format and a
// reader of the sample bytes.
func readWAVHeader(r io.Reader) (*wavFormat, io.Reader, error) {
	var hdr [12]byte
	if _, err := io.ReadFull(r, hdr[:]); err != nil {
		return nil, nil, wavReadErr("RIFF header", err)
	}
	riff := string(hdr[0:4])
	if (riff != "RIFF" && riff != "RF64") || string(hdr[8:12]) != "WAVE" {
		return nil, nil, fmt.Errorf("audio: wav: not a RIFF/WAVE stream (starts with %q)", hdr[:4])
	}
	var (
		format  *wavFormat
		ds64    uint64 // RF64 data size from the ds64 chunk
		skipped int64
	)
	for i := 0; i < maxWAVChunks; i++ {
		var ch [8]byte
		if _, err := io.ReadFull(r, ch[:]); err != nil {
			return nil, nil, wavReadErr("chunk header (no data chunk)", err)
		}
		id, size := string(ch[0:4]), binary.LittleEndian.Uint32(ch[4:])
		switch id {
		case "fmt ":
			f, err := readFmt(r, size)
			if err != nil {
				return nil, nil, err
			}
			format = f
		case "ds64":
			d, err := readDS64(r, riff, size)
			if err != nil {
				return nil, nil, err
			}
			ds64 = d
		case "data":
			if format == nil {
				return nil, nil, errors.New("audio: wav: data chunk before fmt chunk")
			}
			bounded := !isPlaceholder(riff, size, ds64)
			return format, &wavData{r: r, cur: dataReader(r, riff, size, ds64), format: format,
				bounded: bounded, pad: bounded && dataSize(riff, size, ds64)&1 == 1}, nil
		default:
			pad := int64(size) + int64(size&1) // chunks are word-aligned
			skipped += pad
			if skipped > maxWAVSkip {
				return nil, nil, fmt.Errorf("audio: wav: more than %d bytes of metadata before the data chunk", maxWAVSkip)
			}
			if _, err := io.CopyN(io.Discard, r, pad); err != nil {
				return nil, nil, wavReadErr(fmt.Sprintf("%q chunk", id), err)
			}
		}
	}
	return nil, nil, fmt.Errorf("audio: wav: no data chunk within the first %d chunks", maxWAVChunks)
}

// isPlaceholder reports whether the data size means "until EOF".
func isPlaceholder(riff string, size uint32, ds64 uint64) bool {
	if riff == "RF64" && size == sizeUntilEOF && ds64 > 0 {
		return false
	}
	return size == 0 || size == sizeUntilEOF
}

// wavData reads the samples of a WAV stream. Some speech servers stream one
// whole WAV per sentence, back to back: when a sized data chunk ends, a
// following RIFF header with the same format continues the audio, and other
// trailing chunks are skipped, instead of silently dropping the rest.
type wavData struct {
	r       io.Reader // the whole stream
	cur     io.Reader // samples of the current data chunk
	format  *wavFormat
	bounded bool // cur ends at a declared size, so more may follow
	pad     bool // the data size was odd: one pad byte follows
	skipped int64
}

func (d *wavData) Read(p []byte) (int, error) {
	for {
		n, err := d.cur.Read(p)
		if n > 0 || !errors.Is(err, io.EOF) || !d.bounded {
			return n, err
		}
		if lr, ok := d.cur.(*io.LimitedReader); ok && lr.N > 0 {
			return 0, io.EOF // the stream ended before the declared size: nothing follows
		}
		if err := d.next(); err != nil {
			return 0, err
		}
	}
}

// next moves past the end of a sized data chunk: io.EOF at the end of the
// stream, or positioned on the samples of the next WAV.
func (d *wavData) next() error {
	if d.pad {
		d.pad = false
		if _, err := io.CopyN(io.Discard, d.r, 1); err != nil {
			return io.EOF
		}
	}
	for {
		var ch [8]byte
		if _, err := io.ReadFull(d.r, ch[:]); err != nil {
			if errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) {
				return io.EOF // a few stray trailing bytes do not fail audio already delivered
			}
			return fmt.Errorf("audio: wav: read after data: %w", err)
		}
		if string(ch[0:4]) == "RIFF" || string(ch[0:4]) == "RF64" {
			return d.chain(io.MultiReader(bytes.NewReader(ch[:]), d.r))
		}
		size := int64(binary.LittleEndian.Uint32(ch[4:]))
		size += size & 1
		if d.skipped += size; d.skipped > maxWAVSkip {
			return fmt.Errorf("audio: wav: more than %d bytes of chunks after the data", maxWAVSkip)
		}
		if _, err := io.CopyN(io.Discard, d.r, size); err != nil {
			return io.EOF
		}
	}
}

// chain continues with the next WAV of a concatenated stream.
func (d *wavData) chain(r io.Reader) error {
	f, data, err := readWAVHeader(r)
	if err != nil {
		return err
	}
	if *f != *d.format {
		return fmt.Errorf("audio: wav: concatenated stream changes format (%d Hz %d ch -> %d Hz %d ch)",
			d.format.rate, d.format.channels, f.rate, f.channels)
	}
	next := data.(*wavData)
	d.r, d.cur, d.bounded, d.pad = next.r, next.cur, next.bounded, next.pad
	return nil
}

// dataSize is the declared size of the data chunk: an RF64 stream puts it in
// ds64 and 0xFFFFFFFF (odd, but not the size) in the chunk header.
func dataSize(riff string, size uint32, ds64 uint64) uint64 {
	if riff == "RF64" && size == sizeUntilEOF && ds64 > 0 {
		return ds64
	}
	return uint64(size)
}

// dataReader bounds the sample stream by the declared data size unless the
// size is a streaming placeholder.
func dataReader(r io.Reader, riff string, size uint32, ds64 uint64) io.Reader {
	if isPlaceholder(riff, size, ds64) {
		return r
	}
	return io.LimitReader(r, int64(min(dataSize(riff, size, ds64), 1<<62)))
}

func wavReadErr(what string, err error) error {
	if errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) {
		return fmt.Errorf("audio: wav: truncated %s", what)
	}
	return fmt.Errorf("audio: wav: read %s: %w", what, err)
}

// readDS64 reads the RF64 size chunk (riffSize, dataSize, sampleCount, ...).
func readDS64(r io.Reader, riff string, size uint32) (uint64, error) {
	if riff != "RF64" || size < 24 || size > maxFmtChunk {
		return 0, fmt.Errorf("audio: wav: bad ds64 chunk (size %d in a %s stream)", size, riff)
	}
	b := make([]byte, int(size)+int(size&1))
	if _, err := io.ReadFull(r, b); err != nil {
		return 0, wavReadErr("ds64 chunk", err)
	}
	return binary.LittleEndian.Uint64(b[8:16]), nil
}

// readFmt reads and validates the "fmt " chunk.
func readFmt(r io.Reader, size uint32) (*wavFormat, error) {
	if size < 16 || size > maxFmtChunk {
		return nil, fmt.Errorf("audio: wav: bad fmt chunk size %d", size)
	}
	b := make([]byte, int(size)+int(size&1))
	if _, err := io.ReadFull(r, b); err != nil {
		return nil, wavReadErr("fmt chunk", err)
	}
	f := &wavFormat{
		tag:      binary.LittleEndian.Uint16(b[0:]),
		channels: int(binary.LittleEndian.Uint16(b[2:])),
		rate:     int(binary.LittleEndian.Uint32(b[4:])),
		bits:     int(binary.LittleEndian.Uint16(b[14:])),
	}
	blockAlign := int(binary.LittleEndian.Uint16(b[12:]))
	if f.tag == wavFormatExt {
		if size < 40 || binary.LittleEndian.Uint16(b[16:]) < 22 {
			return nil, fmt.Errorf("audio: wav: WAVE_FORMAT_EXTENSIBLE fmt chunk too short (%d bytes)", size)
		}
		if !bytes.Equal(b[26:40], ksDataFormatTail) {
			return nil, fmt.Errorf("audio: wav: unsupported WAVE_FORMAT_EXTENSIBLE subformat GUID % x", b[24:40])
		}
		f.tag = binary.LittleEndian.Uint16(b[24:])
	}
	kind, err := wavSampleKind(f.tag, f.bits)
	if err != nil {
		return nil, err
	}
	f.kind = kind
	if f.channels < 1 || f.channels > maxChannels {
		return nil, fmt.Errorf("audio: wav: unsupported channel count %d (1..%d)", f.channels, maxChannels)
	}
	if want := f.channels * kind.size(); blockAlign != want {
		return nil, fmt.Errorf("audio: wav: block align %d, want %d for %d channels of %d bits",
			blockAlign, want, f.channels, f.bits)
	}
	if err := validRate(f.rate, SampleRate); err != nil {
		return nil, fmt.Errorf("audio: wav: %w", err)
	}
	return f, nil
}

// wavSampleKind maps a format tag and bit depth to a sample decoder.
func wavSampleKind(tag uint16, bits int) (sampleKind, error) {
	switch {
	case tag == wavFormatPCM && bits == 8:
		return kindU8, nil
	case tag == wavFormatPCM && bits == 16:
		return kindS16, nil
	case tag == wavFormatPCM && bits == 24:
		return kindS24, nil
	case tag == wavFormatPCM && bits == 32:
		return kindS32, nil
	case tag == wavFormatFloat && bits == 32:
		return kindF32, nil
	case tag == wavFormatFloat && bits == 64:
		return kindF64, nil
	}
	return 0, fmt.Errorf("audio: wav: unsupported format %s with %d bits per sample "+
		"(supported: PCM 8/16/24/32-bit, IEEE float 32/64-bit, also as WAVE_FORMAT_EXTENSIBLE)",
		wavTagName(tag), bits)
}

func wavTagName(tag uint16) string {
	names := map[uint16]string{
		wavFormatPCM: "PCM", 0x0002: "MS ADPCM", wavFormatFloat: "IEEE float", 0x0006: "A-law",
		0x0007: "µ-law", 0x0011: "IMA ADPCM", 0x0031: "GSM 6.10", 0x0055: "MPEG Layer III",
	}
	if n, ok := names[tag]; ok {
		return fmt.Sprintf("0x%04x (%s)", tag, n)
	}
	return fmt.Sprintf("0x%04x", tag)
}

// EncodeWAV wraps mono s16le PCM at rate in a 44-byte RIFF header (`nexy ask`
// saves answers with it; `nexy bench`'s fake speech serves it).
func EncodeWAV(rate int, pcm []byte) []byte {
	h := make([]byte, 44, 44+len(pcm))
	copy(h[0:], "RIFF")
	binary.LittleEndian.PutUint32(h[4:], uint32(36+len(pcm)))
	copy(h[8:], "WAVEfmt ")
	binary.LittleEndian.PutUint32(h[16:], 16)
	binary.LittleEndian.PutUint16(h[20:], 1) // PCM
	binary.LittleEndian.PutUint16(h[22:], 1) // mono
	binary.LittleEndian.PutUint32(h[24:], uint32(rate))
	binary.LittleEndian.PutUint32(h[28:], uint32(rate*2))
	binary.LittleEndian.PutUint16(h[32:], 2)
	binary.LittleEndian.PutUint16(h[34:], 16)
	copy(h[36:], "data")
	binary.LittleEndian.PutUint32(h[40:], uint32(len(pcm)))
	return append(h, pcm...)
}
