package server

import (
	"context"
	"sync"
)

// versionProbe shares one store read among the requests that arrive while
// another read of the same thing is running. Every request still gets the
// result of a read that started after it arrived, so a change committed
// before the request (a revoke from the CLI) is never missed; under load the
// store answers one read per round instead of one per request, and the
// read pool stays free for the turns' own reads.
type versionProbe struct {
	mu      sync.Mutex
	idle    sync.Cond // signalled when a read ends
	running bool
	next    *probeRound // the round requests arriving now will share
}

type probeRound struct {
	done chan struct{}
	v    int64
	err  error
}

func newVersionProbe() *versionProbe {
	p := &versionProbe{}
	p.idle.L = &p.mu
	return p
}

// read returns read's result from a call that started after read was
// called. The first request of a round waits for the running read and then
// makes the round's call; the others wait for it (or for their ctx).
func (p *versionProbe) read(ctx context.Context, read func(context.Context) (int64, error)) (int64, error) {
	p.mu.Lock()
	var round *probeRound
	if p.running {
		if p.next != nil {
			r := p.next
			p.mu.Unlock()
			select {
			case <-r.done:
				return r.v, r.err
			case <-ctx.Done():
				return 0, context.Cause(ctx)
			}
		}
		round = &probeRound{done: make(chan struct{})}
		p.next = round
		for p.running { // reads are bounded by their own timeout
			p.idle.Wait()
		}
		p.next = nil
	}
	p.running = true
	p.mu.Unlock()
	// The round's call answers others too: one caller's cancel must not
	// fail theirs; its deadline still bounds the call.
	rctx := context.WithoutCancel(ctx)
	if deadline, ok := ctx.Deadline(); ok {
		var cancel context.CancelFunc
		rctx, cancel = context.WithDeadline(rctx, deadline)
		defer cancel()
	}
	v, err := read(rctx)
	p.mu.Lock()
	p.running = false
	p.idle.Broadcast()
	p.mu.Unlock()
	if round != nil {
		round.v, round.err = v, err
		close(round.done)
	}
	return v, err
}
