package audio

import "io"

// isWire reports whether samples of this rate, channel count and kind are
// already the wire format (48 kHz mono s16le).
func isWire(rate, channels int, kind sampleKind) bool {
	return rate == SampleRate && channels == Channels && kind == kindS16
}

// passthrough serves input that is already wire PCM: bytes go from the source
// straight into the caller's buffer, with no float conversion and no work per
// sample. Its output is byte for byte that of the general path (s16 → float32
// → s16 is exact): whole samples only, the odd byte of a sample split across
// source reads held for the next read, and a lone byte at the end dropped.
type passthrough struct {
	r       io.Reader
	half    byte // first byte of a sample split across source reads
	hasHalf bool
	small   [2]byte // one sample staged for a caller's 1-byte buffer
	pending []byte  // the unread part of small
	err     error   // from the source; returned once everything before it was
}

// read returns at least one byte, or (0, err) once the stream has ended: the
// source's error as it came (io.EOF at a clean end).
func (s *passthrough) read(p []byte) (int, error) {
	if len(s.pending) > 0 {
		n := copy(p, s.pending)
		s.pending = s.pending[n:]
		return n, nil
	}
	if len(p) < 2 { // too small for a sample: stage one, hand it out a byte at a time
		n, err := s.read(s.small[:])
		if err != nil {
			return 0, err
		}
		s.pending = s.small[1:n]
		p[0] = s.small[0]
		return 1, nil
	}
	for s.err == nil {
		n := 0
		if s.hasHalf {
			p[0], n = s.half, 1
		}
		m, err := s.r.Read(p[n:])
		n += m
		s.err = err
		even := n &^ 1
		if s.hasHalf = n&1 == 1; s.hasHalf {
			s.half = p[even]
		}
		if even > 0 {
			return even, nil
		}
	}
	return 0, s.err
}
