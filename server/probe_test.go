package server

import (
	"context"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// TestVersionProbe: concurrent requests share reads, and each gets a read
// that started after it arrived: a change made before a request is seen.
func TestVersionProbe(t *testing.T) {
	p := newVersionProbe()
	var version, calls atomic.Int64
	read := func(context.Context) (int64, error) {
		calls.Add(1)
		v := version.Load()
		time.Sleep(2 * time.Millisecond) // a read takes a while
		return v, nil
	}
	ctx, cancel := context.WithTimeout(context.Background(), waitLimit)
	defer cancel()
	var wg sync.WaitGroup
	var stale atomic.Int64
	for i := range 200 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			want := version.Add(1) // a change committed before this request
			if i%7 == 0 {
				time.Sleep(time.Millisecond)
			}
			v, err := p.read(ctx, read)
			if err != nil || v < want {
				stale.Add(1)
			}
		}()
	}
	wg.Wait()
	if stale.Load() != 0 {
		t.Fatalf("%d requests got a read older than their own change", stale.Load())
	}
	if n := calls.Load(); n >= 100 {
		t.Fatalf("200 concurrent requests made %d reads; they should share", n)
	}
	t.Logf("200 requests, %d reads", calls.Load())

	// A caller that gives up does not fail the round it was leading.
	gone, stop := context.WithCancel(context.Background())
	stop()
	if v, err := p.read(gone, read); err != nil || v != version.Load() {
		t.Fatalf("a cancelled caller's own read: %d, %v", v, err)
	}
}
