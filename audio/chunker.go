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
	r       io.Reader
	buf     *[readSize]byte // scratch the reads land in; back to its pool at the end
	pending []byte          // read, not handed out yet (a window of buf)
	full    bool            // the last Read filled its room: more is likely waiting
	err     error           // sticky error from the reader, returned after the data
	empty   int
}

// readSize is what every Read asks for: at least the 4 KiB buffer of the
// HTTP client's connection. A smaller Read makes that buffer fill 4 KiB and
// keep the rest, and the next Read returns only the rest: with chunks of
// MaxChunkBytes that was a 24-byte chunk after every full one.
const readSize = 2 << 12

var scratchPool = sync.Pool{New: func() any { return new([readSize]byte) }}

// NewChunker returns a Chunker reading wire PCM (48 kHz mono s16le) from r.
func NewChunker(r io.Reader) *Chunker { return &Chunker{r: r} }

// Next returns the next chunk: even length, 1..MaxChunkBytes bytes; io.EOF at
// the end. A chunk goes out as soon as a Read brought a whole sample and the
// source had nothing more at that moment (a short Read): it never waits to
// fill a chunk while the source pauses, but bytes left over from a Read that
// filled its room wait for the next Read, which returns at once. A trailing
// odd byte at EOF is dropped (half a sample is never sent). The returned slice
// is owned by the caller (it may come from the pool fed by Recycle; it is
// never shared). Errors of the reader other than io.EOF are returned wrapped,
// after the data read before them.
func (c *Chunker) Next() ([]byte, error) {
	for c.err == nil && (len(c.pending) < 2 || len(c.pending) < MaxChunkBytes && c.full) {
		c.read()
	}
	even := min(len(c.pending), MaxChunkBytes) &^ 1
	if even == 0 {
		// Fewer than 2 bytes and the reader has failed or ended; a lone
		// byte is dropped.
		c.release()
		if errors.Is(c.err, io.EOF) {
			return nil, io.EOF
		}
		return nil, fmt.Errorf("audio: chunker: %w", c.err)
	}
	chunk := chunkPool.Get().(*[MaxChunkBytes]byte)[:even]
	copy(chunk, c.pending)
	c.pending = c.pending[even:]
	return chunk, nil
}

// read moves what is pending to the front of the scratch and reads after it.
func (c *Chunker) read() {
	if c.buf == nil {
		c.buf = scratchPool.Get().(*[readSize]byte)
	}
	n := copy(c.buf[:], c.pending)
	m, err := c.r.Read(c.buf[n:])
	c.pending = c.buf[:n+m]
	c.full = m == readSize-n
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

// release gives the scratch back once the stream has ended.
func (c *Chunker) release() {
	if c.buf != nil {
		scratchPool.Put(c.buf)
		c.buf, c.pending = nil, nil
	}
}
