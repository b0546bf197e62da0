package server

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"time"

	"github.com/nexy-server/nexy/audio"
	pb "github.com/nexy-server/nexy/proto"
)

// outboxDepth is how many messages may wait for the sender: enough to keep
// the network busy while the next chunk is encoded, small enough that a slow
// client holds at most a few chunks of audio here.
const outboxDepth = 8

// outbox decouples an RPC's pipeline from the network. grpc-go's Send blocks
// on HTTP/2 flow control while the client does not read, and only the end of
// the RPC (the handler returning) releases it; cancelling a context derived
// from the stream does not. So the pipeline never calls Send itself: it hands
// messages to one sender goroutine through put, which always obeys the
// pipeline's context. When a single Send makes no progress for the send
// timeout, the outbox cancels the pipeline with errSendStalled; the handler
// then returns, which frees the admission slot and ends the stream, and that
// in turn releases the blocked Send.
type outbox[M any] struct {
	ctx     context.Context
	cancel  context.CancelCauseFunc
	send    func(*M) error
	recycle func(*M) // returns the pooled buffers of a message that never reached Send
	ch      chan *M
	done    chan struct{} // closed when the sender goroutine has ended
	stalled chan struct{} // closed when a Send made no progress for the send timeout
	stall   *time.Timer
	sending atomic.Bool  // the sender is inside Send
	sent    atomic.Int64 // messages Send accepted
	failure error        // why a queued message did not go out; read after done
	once    sync.Once
	closed  bool
	// attach, when set, holds the sender until a send function arrives on
	// it: a speculative turn queues its answer before there is anyone to
	// send it to (see preempt.go).
	attach chan func(*M) error
}

// newOutbox starts the sender goroutine. It ends once finish has been called
// and every queued message has been sent or dropped; a Send blocked on a
// client that does not read ends when the RPC handler returns.
func newOutbox[M any](ctx context.Context, cancel context.CancelCauseFunc, send func(*M) error, recycle func(*M), sendTimeout time.Duration) *outbox[M] {
	return startOutbox(&outbox[M]{ctx: ctx, cancel: cancel, send: send, recycle: recycle}, sendTimeout)
}

// newHeldOutbox is an outbox whose sender waits for attachSend before it
// sends anything. Until then at most outboxDepth messages queue and put
// blocks, which holds a speculative turn's pipeline at a bounded size.
func newHeldOutbox[M any](ctx context.Context, cancel context.CancelCauseFunc, recycle func(*M), sendTimeout time.Duration) *outbox[M] {
	return startOutbox(&outbox[M]{ctx: ctx, cancel: cancel, recycle: recycle, attach: make(chan func(*M) error, 1)}, sendTimeout)
}

func startOutbox[M any](o *outbox[M], sendTimeout time.Duration) *outbox[M] {
	o.ch, o.done, o.stalled = make(chan *M, outboxDepth), make(chan struct{}), make(chan struct{})
	o.stall = time.AfterFunc(time.Hour, func() {
		o.cancel(errSendStalled) // first: whoever sees stalled closed finds the cause set
		o.once.Do(func() { close(o.stalled) })
	})
	o.stall.Stop()
	go o.run(sendTimeout)
	return o
}

// attachSend releases a held outbox to send through send; once only.
func (o *outbox[M]) attachSend(send func(*M) error) { o.attach <- send }

func (o *outbox[M]) run(sendTimeout time.Duration) {
	defer close(o.done)
	if o.attach != nil {
		select {
		case o.send = <-o.attach:
		case <-o.ctx.Done():
			// Never attached: everything queued is dropped (below).
			o.failure = context.Cause(o.ctx)
		}
	}
	for m := range o.ch {
		// After a failed Send or a cancelled pipeline nothing more goes out:
		// an interrupted turn must not keep talking. A pipeline that ended
		// by itself (errTurnDone) still delivers what it queued.
		if o.failure == nil && o.ctx.Err() != nil && !errors.Is(context.Cause(o.ctx), errTurnDone) {
			o.failure = context.Cause(o.ctx)
		}
		if o.failure != nil {
			o.recycle(m)
			continue
		}
		o.sending.Store(true)
		o.stall.Reset(sendTimeout)
		err := o.send(m)
		o.stall.Stop()
		o.sending.Store(false)
		// grpc-go marshals the message into its own buffers inside Send;
		// after it returns only a stats handler could still hold the
		// message (its OutPayload event carries it). The server installs
		// one handler, instruments.grpcHandler, which reads Begin and End
		// only, so the audio buffer goes back to the pool: without it every
		// 4 KiB chunk was a new allocation, the largest part of a turn's
		// garbage. A handler or a Send that read the buffer later would show
		// as a race in the -race turn tests, where the chunker refills
		// recycled buffers at once.
		o.recycle(m)
		if err != nil {
			o.failure = fmt.Errorf("%w: %w", errClientGone, err)
			o.cancel(o.failure)
			continue
		}
		o.sent.Add(1)
	}
}

// put queues m for sending. It fails only when the pipeline's context is
// done, and never blocks beyond that: the caller always gets control back.
func (o *outbox[M]) put(m *M) error {
	if o.ctx.Err() != nil { // a cancelled pipeline queues nothing more
		o.recycle(m)
		return context.Cause(o.ctx)
	}
	select {
	case o.ch <- m:
		return nil
	case <-o.ctx.Done():
		o.recycle(m)
		return context.Cause(o.ctx)
	}
}

// sentAny reports whether any message has actually gone out to the client.
func (o *outbox[M]) sentAny() bool { return o.sent.Load() > 0 }

// finish closes the outbox and waits for the sender. It returns nil when
// every queued message went out, else why not. ended tells whether the
// sender has ended: only then may the caller send anything itself. The
// sender is left behind when it is stuck in a Send (a stall, or a
// cancellation while a Send was blocked); the caller must then return from
// the RPC handler, which releases that Send. Only the goroutine that calls
// put may call finish, once.
func (o *outbox[M]) finish() (ended bool, err error) {
	if o.closed {
		return true, o.failure
	}
	o.closed = true
	close(o.ch)
	select {
	case <-o.done:
		return true, o.failure
	case <-o.stalled:
		return o.stuck()
	case <-o.ctx.Done():
	}
	// Cancelled. A sender not inside a Send now drops what is left and ends
	// at once (or, after the pipeline's own normal end, sends it); one
	// blocked in a Send is only released by the handler's return.
	if o.sending.Load() && !errors.Is(context.Cause(o.ctx), errTurnDone) {
		return o.stuck()
	}
	select {
	case <-o.done:
		return true, o.failure
	case <-o.stalled:
		return o.stuck()
	}
}

// stuck reports a sender that did not end, unless it just did.
func (o *outbox[M]) stuck() (bool, error) {
	select {
	case <-o.done: // the Send returned as the timer fired
		return true, o.failure
	default:
	}
	if cause := context.Cause(o.ctx); cause != nil && !errors.Is(cause, errTurnDone) {
		return false, cause
	}
	return false, errSendStalled
}

// recycleStream returns the audio buffer of a StreamAudio message that was
// never sent to the pool.
func recycleStream(m *pb.StreamResponse) {
	if a := m.GetAudioChunk(); a != nil {
		audio.Recycle(a.AudioData)
	}
}

// recycleWelcome returns the audio buffer of a welcome message that was
// never sent to the pool.
func recycleWelcome(m *pb.WelcomeResponse) {
	if a := m.GetAudioChunk(); a != nil {
		audio.Recycle(a.AudioData)
	}
}
