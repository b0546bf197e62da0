package audio

import (
	"errors"
	"fmt"
	"io"
	"sync"
)

// chunkPool recycles chunk buffers: every turn sends ~100 KiB of audio per
// second of speech, and without reuse each chunk is garbage once sent.
// It holds array pointers, so neither Get nor Put allocates a slice header.
var chunkPool = sync.Pool{New: func() any { return new([MaxChunkBytes]byte) }}

// Recycle gives a chunk returned by Next back for reuse. Call it only when
// nothing refers to the chunk any more: a chunk that never reached a gRPC
// Send, a silent one that was skipped, or one whose Send has returned while
// no stats handler keeps messages (the server's outbox does the last).
// Never recycling is always correct.
func Recycle(chunk []byte) {
	if cap(chunk) != MaxChunkBytes {
		return
	}
	chunkPool.Put((*[MaxChunkBytes]byte)(chunk[:MaxChunkBytes]))
}

// Chunker cuts a PCM stream into wire chunks.
type Chunker struct {
	r     io.Reader
	odd   []byte // 0 or 1 byte: half a sample carried to the next chunk
	err   error  // sticky error from the reader, returned after the data
	empty int
}

// NewChunker returns a Chunker reading wire PCM (48 kHz mono s16le) from r.
func NewChunker(r io.Reader) *Chunker {
	return &Chunker{r: r, odd: make([]byte, 0, 1)}
}

// Next returns the next chunk: even length, 1..MaxChunkBytes bytes, sent as soon as data is
// available (does not wait to fill 4096 bytes when the source pauses); io.EOF at the end. A
// trailing odd byte at EOF is dropped (half a sample is never sent). The returned slice is
// owned by the caller (it may come from the pool fed by Recycle; it is never shared).
// Errors of the reader other than io.EOF are returned wrapped, after the data read before them.
func (c *Chunker) Next() ([]byte, error) {
	// Read straight into the chunk handed out: no scratch buffer, no copy.
	buf := chunkPool.Get().(*[MaxChunkBytes]byte)[:]
	n := copy(buf, c.odd)
	c.odd = c.odd[:0]
	// One Read is enough unless it brought less than a whole sample.
	for n < 2 && c.err == nil {
		m, err := c.r.Read(buf[n:])
		n += m
		switch {
		case err != nil:
			c.err = err
		case m == 0:
			if c.empty++; c.empty >= maxEmptyReads {
				c.err = io.ErrNoProgress
			}
		default:
			c.empty = 0
		}
	}
	if even := n &^ 1; even > 0 {
		c.odd = append(c.odd, buf[even:n]...)
		return buf[:even], nil
	}
	Recycle(buf)
	// Here n < 2 and the reader has failed or ended; a lone byte is dropped.
	if errors.Is(c.err, io.EOF) {
		return nil, io.EOF
	}
	return nil, fmt.Errorf("audio: chunker: %w", c.err)
}
