package server

import (
	"context"
	"errors"
	"testing"
	"time"
)

func TestChunkQueue(t *testing.T) {
	q := newChunkQueue()
	ctx := context.Background()
	for i := range audioQueue {
		if err := q.push(ctx, []byte{byte(i)}); err != nil {
			t.Fatal(err)
		}
	}
	// Full: the next push waits for room, and gives up with its context.
	short, cancel := context.WithCancelCause(ctx)
	stop := errors.New("turn over")
	time.AfterFunc(10*time.Millisecond, func() { cancel(stop) })
	if err := q.push(short, []byte{1}); !errors.Is(err, stop) {
		t.Fatalf("push into a full queue: %v", err)
	}
	// A pop makes room for a waiting push.
	pushed := make(chan error, 1)
	go func() { pushed <- q.push(ctx, []byte{0xAA}) }()
	if c, ok := q.pop(); !ok || c[0] != 0 {
		t.Fatalf("first pop: %v %v", c, ok)
	}
	select {
	case err := <-pushed:
		if err != nil {
			t.Fatal(err)
		}
	case <-time.After(waitLimit):
		t.Fatal("push did not get the room a pop made")
	}
	q.close()
	n := 0
	var last byte
	for {
		c, ok := q.pop()
		if !ok {
			break
		}
		n, last = n+1, c[0]
	}
	if n != audioQueue || last != 0xAA {
		t.Fatalf("drained %d chunks, last %x: order or count lost", n, last)
	}
	// A waiting pop wakes up at close.
	q2 := newChunkQueue()
	done := make(chan bool, 1)
	go func() { _, ok := q2.pop(); done <- ok }()
	q2.close()
	select {
	case ok := <-done:
		if ok {
			t.Fatal("pop on a closed empty queue returned a chunk")
		}
	case <-time.After(waitLimit):
		t.Fatal("pop did not wake at close")
	}
}
