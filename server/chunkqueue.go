package server

import (
	"context"
	"sync"
)

// chunkQueue carries one segment's audio from its synthesis to the sender.
// It holds up to audioQueue chunks, like the buffered channel it replaces,
// but its memory grows with the chunks actually waiting: a channel of 768
// slots allocated 18 KiB per segment up front, most of it never used.
type chunkQueue struct {
	mu     sync.Mutex
	items  [][]byte
	head   int
	closed bool
	ready  chan struct{} // a chunk or the close arrived (cap 1)
	room   chan struct{} // the receiver took a chunk (cap 1)
}

func newChunkQueue() *chunkQueue {
	return &chunkQueue{ready: make(chan struct{}, 1), room: make(chan struct{}, 1)}
}

// push queues c, waiting while audioQueue chunks are queued; it fails only
// when ctx is done.
func (q *chunkQueue) push(ctx context.Context, c []byte) error {
	for {
		q.mu.Lock()
		if len(q.items)-q.head < audioQueue {
			q.items = append(q.items, c)
			q.mu.Unlock()
			wake(q.ready)
			return nil
		}
		q.mu.Unlock()
		select {
		case <-q.room:
		case <-ctx.Done():
			return context.Cause(ctx)
		}
	}
}

// close ends the queue: the receiver gets what is queued, then false.
func (q *chunkQueue) close() {
	q.mu.Lock()
	q.closed = true
	q.mu.Unlock()
	wake(q.ready)
}

// pop returns the next chunk, waiting for one; false once closed and empty.
func (q *chunkQueue) pop() ([]byte, bool) {
	for {
		q.mu.Lock()
		if q.head < len(q.items) {
			c := q.items[q.head]
			q.items[q.head] = nil
			q.head++
			if q.head == len(q.items) { // empty: reuse the backing array
				q.items, q.head = q.items[:0], 0
			}
			q.mu.Unlock()
			wake(q.room)
			return c, true
		}
		closed := q.closed
		q.mu.Unlock()
		if closed {
			return nil, false
		}
		<-q.ready
	}
}

// wake wakes the other side without blocking (a cap-1 channel holds one
// pending wake-up; more would say nothing new).
func wake(ch chan struct{}) {
	select {
	case ch <- struct{}{}:
	default:
	}
}
