package audio

import (
	"errors"
	"fmt"
	"io"
)

// blockFor is how many source samples one fill step reads at most: as many
// as make one full wire chunk (MaxChunkBytes) at 48 kHz, so a fast source
// yields well-filled chunks and a slow one yields whatever has arrived.
func blockFor(rate int) int {
	return max(1, MaxChunkBytes/2*rate/SampleRate)
}

// Decode returns a stream of 48 kHz mono s16le PCM produced incrementally from r.
// For PCM16 the input format is `in`; for WAV and MP3 it is read from the stream
// (in is ignored). Decode does not block: headers are parsed on the first Read.
// Errors (bad header, unsupported WAV format, corrupt MP3) surface from Read with
// a clear message; errors of r itself are wrapped, so errors.Is still sees them.
// Every Read of the result reads r at most as far as needed to return some
// bytes, so audio flows as the provider produces it. Not safe for concurrent use.
func Decode(r io.Reader, enc Encoding, in Format) (io.Reader, error) {
	if r == nil {
		return nil, errors.New("audio: decode: nil reader")
	}
	switch enc {
	case PCM16:
		if in.Channels < 1 || in.Channels > maxChannels {
			return nil, fmt.Errorf("audio: decode pcm16: unsupported channel count %d (1..%d)", in.Channels, maxChannels)
		}
		if err := validRate(in.SampleRate, SampleRate); err != nil {
			return nil, fmt.Errorf("audio: decode pcm16: %w", err)
		}
	case WAV, MP3:
	default:
		return nil, fmt.Errorf("audio: decode: unknown encoding %v", enc)
	}
	return newDecoder(r, enc, in, true), nil
}

// newDecoder is Decode after the argument checks; passthrough false forces
// the general (float) path, which tests use as the reference.
func newDecoder(r io.Reader, enc Encoding, in Format, passthrough bool) *decoder {
	return &decoder{r: &progressReader{r: r}, enc: enc, in: in, allowPass: passthrough}
}

// decoder pulls source samples, resamples them to 48 kHz and serialises them.
// Input already in the wire format skips all of that (see passthrough.go).
type decoder struct {
	r         io.Reader
	enc       Encoding
	in        Format
	allowPass bool
	opened    bool
	pass      *passthrough // non-nil: the input is wire PCM, copied as is
	src       source
	rs        *resampler // nil when the source is already 48 kHz
	samples   []float32  // source block
	out       []float32  // resampled block
	bytes     []byte     // serialised output; pending is the unread tail
	pending   []byte
	err       error // sticky; returned once pending is drained
}

// Read implements io.Reader.
func (d *decoder) Read(p []byte) (int, error) {
	if len(p) == 0 {
		return 0, nil
	}
	if !d.opened && d.err == nil {
		d.err = d.open()
	}
	if d.pass != nil && d.err == nil {
		n, err := d.pass.read(p)
		if err == nil {
			return n, nil
		}
		d.err = d.streamErr(err) // sticky, returned below from now on
	}
	// Each fill consumes input or fails, so this loop ends.
	for len(d.pending) == 0 {
		if d.err != nil {
			return 0, d.err
		}
		d.err = d.fill()
	}
	n := copy(p, d.pending)
	d.pending = d.pending[n:]
	return n, nil
}

// open parses the stream header and sets up the passthrough or the
// general path with its resampler.
func (d *decoder) open() error {
	d.opened = true
	var rate int
	var err error
	switch d.enc {
	case WAV:
		var f *wavFormat
		var data io.Reader
		if f, data, err = readWAVHeader(d.r); err != nil {
			return err
		}
		if d.allowPass && isWire(f.rate, f.channels, f.kind) {
			d.pass = &passthrough{r: data}
			return nil
		}
		d.src, rate = newPCMSource(data, f.channels, f.kind, blockFor(f.rate)), f.rate
	case MP3:
		if d.src, rate, err = openMP3(d.r); err != nil {
			return err
		}
	default:
		if d.allowPass && isWire(d.in.SampleRate, d.in.Channels, kindS16) {
			d.pass = &passthrough{r: d.r}
			return nil
		}
		d.src, rate = newPCMSource(d.r, d.in.Channels, kindS16, blockFor(d.in.SampleRate)), d.in.SampleRate
	}
	if rate != SampleRate {
		if d.rs, err = newResampler(rate, SampleRate); err != nil {
			return fmt.Errorf("audio: %v: %w", d.enc, err)
		}
	}
	d.samples = make([]float32, blockFor(rate))
	d.out = make([]float32, MaxChunkBytes/2)
	return nil
}

// fill reads one block from the source and leaves its output in pending.
// It returns the error that ends the stream, if any.
func (d *decoder) fill() error {
	n, err := d.src.read(d.samples)
	d.bytes = d.bytes[:0]
	if d.rs == nil {
		d.bytes = appendS16(d.bytes, d.samples[:n])
	} else {
		d.rs.write(d.samples[:n])
		if errors.Is(err, io.EOF) {
			d.rs.flush()
		}
		d.drainResampler()
	}
	d.pending = d.bytes
	if err == nil {
		return nil
	}
	return d.streamErr(err)
}

// streamErr is the error that ends the stream, given what the source returned.
func (d *decoder) streamErr(err error) error {
	switch {
	case errors.Is(err, io.EOF):
		return io.EOF
	case errors.Is(err, io.ErrNoProgress):
		return fmt.Errorf("audio: decode %v: source keeps returning no data: %w", d.enc, err)
	}
	return fmt.Errorf("audio: decode %v: %w", d.enc, err)
}

func (d *decoder) drainResampler() {
	for {
		m := d.rs.read(d.out)
		if m == 0 {
			return
		}
		d.bytes = appendS16(d.bytes, d.out[:m])
	}
}
