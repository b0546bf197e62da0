package server

import (
	"context"
	"log/slog"
	"net"
	"sync"
	"time"

	"golang.org/x/sync/semaphore"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/peer"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"

	pb "github.com/nexy-server/nexy/proto"
)

// requestBudget bounds the bytes of requests held in memory at once:
// limits.request_bytes_in_flight, for every RPC, unary ones included.
//
// grpc-go hands a request to its handler only whole, and the size of a
// message is not known before it has been read. So a read reserves
// limits.max_message_bytes first (at most budget/max requests are read at
// once; the rest wait, their bytes held back by HTTP/2 flow control), and
// once read the request keeps only its real size until its RPC ends.
//
// A stream is started by its headers, before any of its data, so a client
// could hold reservations by opening streams and sending nothing. Two bounds
// stop that: one peer (IP address) may have at most a quarter of the reads
// in progress, and a request whose bytes do not arrive within
// limits.receive_timeout is refused and gives its reservation back.
type requestBudget struct {
	sem     *semaphore.Weighted
	max     int64
	timeout time.Duration
	peers   *peerReads
}

func newRequestBudget(total, perMessage int, timeout time.Duration) *requestBudget {
	reads := total / perMessage
	return &requestBudget{sem: semaphore.NewWeighted(int64(total)), max: int64(perMessage), timeout: timeout,
		peers: &peerReads{perPeer: max(2, reads/4), m: map[string]*peerSlots{}}}
}

// peerReads caps the reads one peer may have in progress.
type peerReads struct {
	perPeer int
	mu      sync.Mutex
	m       map[string]*peerSlots // only peers with a read in progress or waiting
}

type peerSlots struct {
	ch    chan struct{}
	users int
}

// acquire takes one of ip's read slots, waiting until ctx is done.
func (p *peerReads) acquire(ctx context.Context, ip string) (release func(), err error) {
	p.mu.Lock()
	s := p.m[ip]
	if s == nil {
		s = &peerSlots{ch: make(chan struct{}, p.perPeer)}
		p.m[ip] = s
	}
	s.users++
	p.mu.Unlock()
	leave := func() {
		p.mu.Lock()
		if s.users--; s.users == 0 {
			delete(p.m, ip)
		}
		p.mu.Unlock()
	}
	select {
	case s.ch <- struct{}{}:
		var once sync.Once
		return func() { once.Do(func() { <-s.ch; leave() }) }, nil
	case <-ctx.Done():
		leave()
		return nil, ctx.Err()
	}
}

// requestRead is one RPC's request under the budget.
type requestRead struct {
	svc    *service
	ctx    context.Context // the RPC's
	method string
	held   int64
}

func (s *service) newRead(ctx context.Context, method string) *requestRead {
	return &requestRead{svc: s, ctx: ctx, method: method}
}

// release gives back what the request holds; call it when the RPC ends.
func (r *requestRead) release() {
	if r.held > 0 {
		r.svc.budget.sem.Release(r.held)
		r.held = 0
	}
}

// recv reads the request into m with recv (grpc-go's own read) within the
// budget, the peer's share and limits.receive_timeout. A refusal is a
// *turnError; the caller answers it.
func (r *requestRead) recv(m any, recv func(any) error) error {
	b, start := r.svc.budget, r.svc.now()
	wait, cancel := context.WithTimeout(r.ctx, b.timeout)
	defer cancel()
	ip := peerIP(r.ctx)
	leave, err := b.peers.acquire(wait, ip)
	if err == nil {
		defer leave()
		err = b.sem.Acquire(wait, b.max)
	}
	if err != nil {
		if r.ctx.Err() != nil {
			return status.FromContextError(r.ctx.Err()).Err() // the client left while waiting
		}
		return r.refused(start, exhausted("stream_limit_exceeded",
			"the server is receiving too many large requests at once (limits.request_bytes_in_flight); retry in a moment"))
	}
	r.held += b.max
	// Read in another goroutine so the timeout can end the RPC: returning
	// from the handler is the only way to stop grpc-go's read, and ending the
	// RPC also ends that goroutine.
	got := make(chan error, 1)
	go func() { got <- recv(m) }()
	select {
	case err := <-got:
		return r.received(m, start, err)
	case <-wait.Done():
	}
	if r.ctx.Err() != nil {
		// The RPC ended: the client left, or grpc-go refused the read (too
		// large) and ended it itself. Either way the read returns at once,
		// and its error tells which.
		return r.received(m, start, <-got)
	}
	select {
	case err := <-got: // it arrived just as the time ran out
		return r.received(m, start, err)
	default:
	}
	return r.refused(start, &turnError{code: codes.DeadlineExceeded, kind: "timeout",
		msg: "the request did not arrive in full within limits.receive_timeout"})
}

// received settles a finished read: on success the reservation shrinks to
// the message's real size; a read grpc-go refused (over
// limits.max_message_bytes, malformed) is logged, since nothing else will.
func (r *requestRead) received(m any, start time.Time, err error) error {
	if err != nil {
		// grpc-go ends the stream itself when a read fails, so the context
		// cannot tell a refusal from a client that left; the status code can.
		if code := status.Code(err); code != codes.Canceled && code != codes.DeadlineExceeded {
			r.svc.decision(slog.LevelInfo, r.method, "reject", start, slog.String("code", code.String()),
				slog.String("reason", truncate(status.Convert(err).Message(), 200)), slog.String("peer", peerIP(r.ctx)))
		}
		return err
	}
	if size := int64(proto.Size(m.(proto.Message))); size < r.held {
		r.svc.budget.sem.Release(r.held - size)
		r.held = size
	}
	return nil
}

func (r *requestRead) refused(start time.Time, te *turnError) error {
	r.svc.decision(slog.LevelInfo, r.method, "reject", start, slog.String("error_type", te.kind), slog.String("reason", te.msg),
		slog.String("peer", peerIP(r.ctx)))
	return te
}

// streamInterceptor reads every streaming RPC's request under the budget.
func (s *service) streamInterceptor(srv any, ss grpc.ServerStream, info *grpc.StreamServerInfo, handler grpc.StreamHandler) error {
	bs := &budgetStream{ServerStream: ss, read: s.newRead(ss.Context(), shortMethod(info.FullMethod))}
	defer bs.read.release()
	return handler(srv, bs)
}

// budgetStream is a server stream whose request is read under the budget.
type budgetStream struct {
	grpc.ServerStream
	read *requestRead
}

// RecvMsg reads the request (once per RPC: the streaming RPCs here are all
// server-streaming). A refusal gets one error_message of the RPC's own type,
// then its status (SPEC §2).
func (bs *budgetStream) RecvMsg(m any) error {
	err := bs.read.recv(m, bs.ServerStream.RecvMsg)
	te, ok := err.(*turnError)
	if !ok {
		return err
	}
	var msg any
	switch bs.read.method {
	case "StreamAudio":
		msg = &pb.StreamResponse{Content: &pb.StreamResponse_ErrorMessage{ErrorMessage: te.msg}}
	case "GenerateWelcomeAudio":
		msg = &pb.WelcomeResponse{Content: &pb.WelcomeResponse_ErrorMessage{ErrorMessage: te.msg}}
	}
	if msg != nil {
		_ = bs.ServerStream.SendMsg(msg)
	}
	return te.status()
}

// serviceDesc is the generated service description with every unary method
// reading its request under the budget too: grpc-go reads a unary request
// before any interceptor runs, but lazily, through the decode function its
// handler is given, so wrapping that function is the one place to do it.
func (s *service) serviceDesc() *grpc.ServiceDesc {
	desc := pb.StreamingService_ServiceDesc
	desc.Methods = append([]grpc.MethodDesc(nil), desc.Methods...)
	for i := range desc.Methods {
		handler, method := desc.Methods[i].Handler, desc.Methods[i].MethodName
		desc.Methods[i].Handler = func(srv any, ctx context.Context, dec func(any) error, interceptor grpc.UnaryServerInterceptor) (any, error) {
			read := s.newRead(ctx, method)
			defer read.release()
			return handler(srv, ctx, func(m any) error {
				if err := read.recv(m, dec); err != nil {
					if te, ok := err.(*turnError); ok {
						return te.status()
					}
					return err
				}
				return nil
			}, interceptor)
		}
	}
	return &desc
}

// shortMethod is the RPC name without its service: "/streaming.StreamingService/StreamAudio" → "StreamAudio".
func shortMethod(full string) string {
	for i := len(full) - 1; i >= 0; i-- {
		if full[i] == '/' {
			return full[i+1:]
		}
	}
	return full
}

// peerIP is the client's IP address (without the port: one host, one share).
func peerIP(ctx context.Context) string {
	p, ok := peer.FromContext(ctx)
	if !ok || p.Addr == nil {
		return ""
	}
	if host, _, err := net.SplitHostPort(p.Addr.String()); err == nil {
		return host
	}
	return p.Addr.String()
}
