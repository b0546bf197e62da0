package server

import (
	"context"
	"errors"
	"sync/atomic"
	"testing"
	"time"
)

// TestOutbox covers the sender's contract with a send function the test
// controls: what went out is counted, a blocked Send is reported as a stall
// and never waited for, and a cancelled pipeline's queue is dropped, with
// every message that never reached Send recycled exactly once (and none that
// did: a stats handler may still hold it).
func TestOutbox(t *testing.T) {
	type msg struct{ n int }
	t.Run("delivers in order after the pipeline's own end", func(t *testing.T) {
		ctx, cancel := context.WithCancelCause(context.Background())
		var got []int
		var recycled atomic.Int32
		o := newOutbox(ctx, cancel, func(m *msg) error { got = append(got, m.n); return nil }, func(*msg) { recycled.Add(1) }, time.Minute)
		for i := range 20 {
			if err := o.put(&msg{i}); err != nil {
				t.Fatal(err)
			}
		}
		cancel(errTurnDone)
		if ended, err := o.finish(); !ended || err != nil {
			t.Fatalf("finish = %v, %v", ended, err)
		}
		if len(got) != 20 || got[19] != 19 || recycled.Load() != 0 || !o.sentAny() {
			t.Fatalf("sent %v, recycled %d", got, recycled.Load())
		}
	})
	t.Run("a blocked Send is a stall", func(t *testing.T) {
		ctx, cancel := context.WithCancelCause(context.Background())
		release := make(chan struct{})
		var recycled atomic.Int32
		o := newOutbox(ctx, cancel, func(m *msg) error {
			if m.n == 1 {
				<-release // a client that stopped reading, until the RPC ends
				return errors.New("stream done")
			}
			return nil
		}, func(*msg) { recycled.Add(1) }, 20*time.Millisecond)
		for i := range 4 {
			_ = o.put(&msg{i})
		}
		ended, err := o.finish()
		if ended || !errors.Is(err, errSendStalled) || !errors.Is(context.Cause(ctx), errSendStalled) {
			t.Fatalf("finish = %v, %v (cause %v)", ended, err, context.Cause(ctx))
		}
		close(release) // what returning from the handler does
		waitClosed(t, o.done, "the sender to end")
		// 0 and 1 reached Send; 2 and 3 were dropped after the stall.
		if recycled.Load() != 2 || o.sent.Load() != 1 {
			t.Fatalf("recycled %d, sent %d", recycled.Load(), o.sent.Load())
		}
	})
	t.Run("an interrupted pipeline drops its queue", func(t *testing.T) {
		ctx, cancel := context.WithCancelCause(context.Background())
		var sent, recycled atomic.Int32
		o := newOutbox(ctx, cancel, func(*msg) error { sent.Add(1); return nil }, func(*msg) { recycled.Add(1) }, time.Minute)
		cancel(errInterrupted)
		if err := o.put(&msg{1}); !errors.Is(err, errInterrupted) {
			t.Fatalf("put after cancel = %v", err)
		}
		ended, err := o.finish()
		if !ended || err != nil && !errors.Is(err, errInterrupted) || sent.Load() != 0 || recycled.Load() != 1 || o.sentAny() {
			t.Fatalf("finish = %v, %v; sent %d, recycled %d", ended, err, sent.Load(), recycled.Load())
		}
	})
	t.Run("a failed Send cancels the pipeline", func(t *testing.T) {
		ctx, cancel := context.WithCancelCause(context.Background())
		o := newOutbox(ctx, cancel, func(*msg) error { return errors.New("rst") }, func(*msg) {}, time.Minute)
		_ = o.put(&msg{1})
		waitClosed(t, ctx.Done(), "the pipeline to be cancelled")
		ended, err := o.finish()
		if !ended || !errors.Is(err, errClientGone) || o.sentAny() {
			t.Fatalf("finish = %v, %v", ended, err)
		}
		if te := classify(ctx, err); te.kind != "cancelled_by_user" {
			t.Fatalf("classified as %s", te.kind)
		}
	})
}
