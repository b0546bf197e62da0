package server

import (
	"context"
	"errors"
	"sync/atomic"
	"testing"
	"time"

	"google.golang.org/protobuf/proto"

	"github.com/nexy-server/nexy/audio"
)

// TestOutbox covers the sender's contract with a send function the test
// controls: what went out is counted, a blocked Send is reported as a stall
// and never waited for, and a cancelled pipeline's queue is dropped. Every
// message is recycled exactly once: when its Send has returned, or when it
// is dropped unsent.
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
		if len(got) != 20 || got[19] != 19 || recycled.Load() != 20 || !o.sentAny() {
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
		// 0 went out, 1's Send failed once released, 2 and 3 were dropped
		// after the stall: each recycled once.
		if recycled.Load() != 4 || o.sent.Load() != 1 {
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

// TestHeldOutbox: a held outbox sends nothing until attached, then sends
// what it holds in order; never attached, it drops (and recycles) it all.
func TestHeldOutbox(t *testing.T) {
	type msg struct{ n int }
	ctx, cancel := context.WithCancelCause(context.Background())
	o := newHeldOutbox(ctx, cancel, func(*msg) {}, time.Minute)
	for i := range outboxDepth {
		if err := o.put(&msg{i}); err != nil {
			t.Fatal(err)
		}
	}
	if o.sentAny() {
		t.Fatal("a held outbox sent before it was attached")
	}
	var got []int
	o.attachSend(func(m *msg) error { got = append(got, m.n); return nil })
	_ = o.put(&msg{outboxDepth})
	cancel(errTurnDone)
	if ended, err := o.finish(); !ended || err != nil || len(got) != outboxDepth+1 || got[outboxDepth] != outboxDepth {
		t.Fatalf("finish = %v, %v; sent %v", ended, err, got)
	}

	ctx2, cancel2 := context.WithCancelCause(context.Background())
	var recycled atomic.Int32
	never := newHeldOutbox(ctx2, cancel2, func(*msg) { recycled.Add(1) }, time.Minute)
	for i := range 3 {
		_ = never.put(&msg{i})
	}
	cancel2(errSpeculationDropped)
	if ended, err := never.finish(); !ended || !errors.Is(err, errSpeculationDropped) || never.sentAny() || recycled.Load() != 3 {
		t.Fatalf("finish = %v, %v; sent %v, recycled %d", ended, err, never.sentAny(), recycled.Load())
	}
}

// TestAudioMessageFitsFourKiB: a full audio message marshals to at most
// 4096 bytes, so gRPC holds it in a 4 KiB pooled buffer, not a 16 KiB one
// (see audio.MaxChunkBytes).
func TestAudioMessageFitsFourKiB(t *testing.T) {
	m := audioResponse(make([]byte, audio.MaxChunkBytes))
	if n := proto.Size(m); n > 4096 {
		t.Fatalf("a full audio message is %d bytes marshalled", n)
	}
}
