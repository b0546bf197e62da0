package llm

import (
	"errors"
	"io"
	"strings"
	"testing"
	"testing/iotest"
)

// TestSSEReaderGrowsToLineBound: the buffer starts small, grows for a long
// line up to the line bound, and the bound is exact (max bytes pass, one
// more fails) whether the input comes whole or byte by byte.
func TestSSEReaderGrowsToLineBound(t *testing.T) {
	const max = 3*sseInitialBuffer + 17
	for _, n := range []int{sseInitialBuffer - 1, sseInitialBuffer, sseInitialBuffer + 1, max - len("data: "), max - len("data: ") + 1} {
		payload := strings.Repeat("é", n/2) + strings.Repeat("x", n%2)
		in := "data: a\n\ndata: " + payload + "\r\n\r\ndata: b\n\n"
		for _, mode := range []string{"whole", "one byte"} {
			var r io.Reader = strings.NewReader(in)
			if mode == "one byte" {
				r = iotest.OneByteReader(r)
			}
			s := newSSEReader(r, max)
			var got []string
			var err error
			for {
				var ev sseEvent
				if ev, err = s.Next(); err != nil {
					break
				}
				got = append(got, ev.Data)
			}
			if len(s.buf) > max+1 {
				t.Errorf("n=%d %s: buffer grew to %d, past the bound %d", n, mode, len(s.buf), max+1)
			}
			if len("data: ")+len(payload) > max {
				if !errors.Is(err, errSSETooLarge) {
					t.Errorf("n=%d %s: err %v, want too large", n, mode, err)
				}
				continue
			}
			if err != io.EOF || len(got) != 3 || got[1] != payload {
				t.Errorf("n=%d %s: %d events, %v", n, mode, len(got), err)
			}
		}
	}
	if s := newSSEReader(strings.NewReader("data: a\n\n"), 0); len(s.buf) != sseInitialBuffer {
		t.Errorf("initial buffer %d, want %d", len(s.buf), sseInitialBuffer)
	}
}

type emptyReader struct{}

func (emptyReader) Read([]byte) (int, error) { return 0, nil }

// TestSSEReaderNoProgress: a reader that returns nothing forever is an error,
// not a busy loop.
func TestSSEReaderNoProgress(t *testing.T) {
	_, err := newSSEReader(io.MultiReader(strings.NewReader("data: a\n"), emptyReader{}), 0).Next()
	if !errors.Is(err, io.ErrNoProgress) {
		t.Fatalf("err = %v, want io.ErrNoProgress", err)
	}
}

// TestSSEReaderDrain: drain counts buffered bytes against its limit and
// reports whether the input ended within it.
func TestSSEReaderDrain(t *testing.T) {
	for _, c := range []struct {
		rest  int
		limit int64
		ended bool
	}{{0, 10, true}, {10, 10, true}, {11, 10, false}, {9000, 4096, false}, {4000, 4096, true}} {
		in := "data: [DONE]\n\n" + strings.Repeat("z", c.rest)
		for _, mode := range []string{"whole", "one byte"} {
			var r io.Reader = strings.NewReader(in)
			if mode == "one byte" {
				r = iotest.OneByteReader(r)
			}
			s := newSSEReader(r, 0)
			if ev, err := s.Next(); err != nil || ev.Data != "[DONE]" {
				t.Fatalf("%v %v", ev, err)
			}
			if got := s.drain(c.limit); got != c.ended {
				t.Errorf("%d bytes left, limit %d, %s: ended %v, want %v", c.rest, c.limit, mode, got, c.ended)
			}
		}
	}
	// An error stays an error.
	s := newSSEReader(iotest.ErrReader(errors.New("boom")), 0)
	if s.drain(10) {
		t.Error("drain reported a clean end on a failed reader")
	}
}
