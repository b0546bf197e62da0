package server

import (
	"context"
	"sync"
)

// segmentQueue hands segments from the reader to the dispatcher without ever
// blocking the reader: the model is drained at its own speed. It holds text
// only, bounded by the model's output limit (llm.max_output_tokens).
type segmentQueue struct {
	mu    sync.Mutex
	items []string
	done  bool
	ready chan struct{} // signalled (capacity 1) on push and close
}

func newSegmentQueue() *segmentQueue { return &segmentQueue{ready: make(chan struct{}, 1)} }

func (q *segmentQueue) signal() {
	select {
	case q.ready <- struct{}{}:
	default:
	}
}

func (q *segmentQueue) push(seg string) {
	q.mu.Lock()
	q.items = append(q.items, seg)
	q.mu.Unlock()
	q.signal()
}

// close marks the end; queued segments are still handed out.
func (q *segmentQueue) close() {
	q.mu.Lock()
	q.done = true
	q.mu.Unlock()
	q.signal()
}

// pop returns the next segment, waiting for one; false at the end or when ctx is done.
func (q *segmentQueue) pop(ctx context.Context) (string, bool) {
	for {
		q.mu.Lock()
		if len(q.items) > 0 {
			seg := q.items[0]
			q.items = q.items[1:]
			q.mu.Unlock()
			return seg, true
		}
		done := q.done
		q.mu.Unlock()
		if done {
			return "", false
		}
		select {
		case <-q.ready:
		case <-ctx.Done():
			return "", false
		}
	}
}
