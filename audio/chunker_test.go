package audio

import (
	"bytes"
	"errors"
	"io"
	"math/rand/v2"
	"testing"
	"time"
)

// scriptReader returns the scripted results in order, one per Read, and fails
// the test if read past the script.
type scriptReader struct {
	t     *testing.T
	steps []step
}

type step struct {
	data []byte
	err  error
}

func (s *scriptReader) Read(b []byte) (int, error) {
	if len(s.steps) == 0 {
		s.t.Fatal("Read called after the script ended")
	}
	st := s.steps[0]
	s.steps = s.steps[1:]
	if len(st.data) > len(b) {
		s.t.Fatalf("script step of %d bytes does not fit a %d-byte read", len(st.data), len(b))
	}
	return copy(b, st.data), st.err
}

func TestChunkerSizesAndContent(t *testing.T) {
	rng := rand.New(rand.NewPCG(3, 4))
	data := make([]byte, 100001) // odd: the last byte is half a sample
	for i := range data {
		data[i] = byte(rng.IntN(256))
	}
	for _, maxPiece := range []int{1, 3, 1000, 4097, 20000} {
		c := NewChunker(&pieceReader{data: data, rng: rand.New(rand.NewPCG(5, uint64(maxPiece))), max: maxPiece})
		var got []byte
		for {
			ch, err := c.Next()
			if err == io.EOF {
				break
			}
			if err != nil {
				t.Fatal(err)
			}
			if len(ch) == 0 || len(ch)%2 != 0 || len(ch) > MaxChunkBytes {
				t.Fatalf("chunk of %d bytes", len(ch))
			}
			got = append(got, ch...)
		}
		if !bytes.Equal(got, data[:len(data)-1]) {
			t.Fatalf("pieces ≤ %d: reassembled stream differs (%d vs %d bytes)", maxPiece, len(got), len(data)-1)
		}
	}
}

// TestChunkerDoesNotWait: a chunk goes out as soon as one Read brings a whole
// sample, and an odd byte waits for its other half.
func TestChunkerDoesNotWait(t *testing.T) {
	r := &scriptReader{t: t, steps: []step{
		{data: []byte{1, 2, 3}},
		{data: []byte{4}},
		{data: []byte{5}},
		{data: []byte{6, 7, 8, 9}},
		{err: io.EOF},
	}}
	c := NewChunker(r)
	want := [][]byte{{1, 2}, {3, 4}, {5, 6, 7, 8}}
	for i, w := range want {
		got, err := c.Next()
		if err != nil || !bytes.Equal(got, w) {
			t.Fatalf("chunk %d: %v %v, want %v", i, got, err, w)
		}
	}
	if _, err := c.Next(); err != io.EOF { // byte 9 is half a sample: dropped
		t.Fatalf("got %v, want io.EOF", err)
	}
	if _, err := c.Next(); err != io.EOF {
		t.Fatalf("EOF not sticky: %v", err)
	}
}

func TestChunkerErrors(t *testing.T) {
	boom := errors.New("boom")
	c := NewChunker(&scriptReader{t: t, steps: []step{{data: []byte{1, 2, 3, 4}, err: boom}}})
	if ch, err := c.Next(); err != nil || len(ch) != 4 {
		t.Fatalf("data before the error: %v %v", ch, err)
	}
	if _, err := c.Next(); !errors.Is(err, boom) {
		t.Fatalf("got %v, want boom", err)
	}
	stuck := make([]step, maxEmptyReads)
	c = NewChunker(&scriptReader{t: t, steps: stuck})
	if _, err := c.Next(); !errors.Is(err, io.ErrNoProgress) {
		t.Fatalf("got %v, want io.ErrNoProgress", err)
	}
}

func TestChunkerOwnsNothing(t *testing.T) {
	c := NewChunker(bytes.NewReader(make([]byte, 3*MaxChunkBytes)))
	a, _ := c.Next()
	b, _ := c.Next()
	a[0] = 1
	if b[0] != 0 || len(a) != MaxChunkBytes || cap(a) != len(a) {
		t.Fatal("chunks share memory or are oversized")
	}
}

func TestIsSilent(t *testing.T) {
	for n := 0; n < 40; n++ {
		z := make([]byte, n)
		if !IsSilent(z) {
			t.Fatalf("%d zero bytes not silent", n)
		}
		for i := 0; i < n; i++ {
			z[i] = 1
			if IsSilent(z) {
				t.Fatalf("byte %d of %d set but silent", i, n)
			}
			z[i] = 0
		}
	}
}

func TestDuration(t *testing.T) {
	cases := map[int]time.Duration{
		0: 0, -5: 0, 1: 0, 2: time.Second / 48000, 96000: time.Second,
		MaxChunkBytes: MaxChunkBytes / 2 * time.Second / 48000,
		617472:        6432 * time.Millisecond, // upstream's measured welcome: 617 472 bytes ≈ 6.4 s
		1 << 40:       time.Duration(1<<39/48000)*time.Second + time.Duration(1<<39%48000)*time.Second/48000,
	}
	for n, want := range cases {
		if got := Duration(n); got != want {
			t.Errorf("Duration(%d) = %v, want %v", n, got, want)
		}
	}
}
