package server

import (
	"context"
	"log/slog"
	"time"

	"golang.org/x/sync/semaphore"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/peer"
	"google.golang.org/grpc/stats"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"

	pb "github.com/nexy-server/nexy/proto"
)

// requestBudget bounds the bytes of streaming requests (StreamAudio,
// GenerateWelcomeAudio) held in memory at once: limits.request_bytes_in_flight.
//
// grpc-go hands a request to its handler only whole, and the size of a
// message is not known before it has been read. So a request reserves
// limits.max_message_bytes before it is read (at most budget/max requests are
// read at once; the rest wait, their bytes held back by HTTP/2 flow control),
// and once read keeps only its real size until its RPC ends. A request that
// cannot get a reservation, or whose bytes do not arrive within
// limits.receive_timeout, is refused, so a client trickling a large message
// cannot hold a reservation for long.
type requestBudget struct {
	sem     *semaphore.Weighted
	max     int64
	timeout time.Duration
}

func newRequestBudget(total, perMessage int, timeout time.Duration) *requestBudget {
	return &requestBudget{sem: semaphore.NewWeighted(int64(total)), max: int64(perMessage), timeout: timeout}
}

// streamInterceptor applies the budget to every streaming RPC.
func (s *service) streamInterceptor(srv any, ss grpc.ServerStream, info *grpc.StreamServerInfo, handler grpc.StreamHandler) error {
	bs := &budgetStream{ServerStream: ss, svc: s, method: shortMethod(info.FullMethod)}
	defer bs.releaseAll()
	return handler(srv, bs)
}

// budgetStream is a server stream whose request is read under the budget.
type budgetStream struct {
	grpc.ServerStream
	svc    *service
	method string
	held   int64
}

func (bs *budgetStream) releaseAll() {
	if bs.held > 0 {
		bs.svc.budget.sem.Release(bs.held)
		bs.held = 0
	}
}

// RecvMsg reads the request (once per RPC: every streaming RPC here is
// server-streaming) within the budget and receive timeout.
func (bs *budgetStream) RecvMsg(m any) error {
	b, start := bs.svc.budget, bs.svc.now()
	ctx, cancel := context.WithTimeout(bs.Context(), b.timeout)
	defer cancel()
	if err := b.sem.Acquire(ctx, b.max); err != nil {
		return bs.refuse(start, exhausted("stream_limit_exceeded",
			"the server is receiving too many large requests at once (limits.request_bytes_in_flight); retry in a moment"))
	}
	bs.held += b.max
	// Read in another goroutine so the timeout can end the RPC: returning
	// from the handler is the only way to stop grpc-go's read, and ending the
	// RPC also ends that goroutine.
	got := make(chan error, 1)
	go func() { got <- bs.ServerStream.RecvMsg(m) }()
	select {
	case err := <-got:
		return bs.received(m, start, err)
	case <-ctx.Done():
		select {
		case err := <-got: // a failed read also ends the stream's context
			return bs.received(m, start, err)
		default:
		}
		if bs.Context().Err() != nil {
			return bs.Context().Err()
		}
		return bs.refuse(start, &turnError{code: codes.DeadlineExceeded, kind: "timeout",
			msg: "the request did not arrive in full within limits.receive_timeout"})
	}
}

// received settles a finished read: on success the reservation shrinks to
// the message's real size; a read grpc-go refused (over
// limits.max_message_bytes, malformed) is logged, since nothing else will.
func (bs *budgetStream) received(m any, start time.Time, err error) error {
	if err != nil {
		// grpc-go ends the stream itself when a read fails, so the context
		// cannot tell a refusal from a client that left; the status code can.
		if code := status.Code(err); code != codes.Canceled && code != codes.DeadlineExceeded {
			bs.svc.decision(slog.LevelInfo, bs.method, "reject", start, slog.String("code", code.String()),
				slog.String("reason", truncate(status.Convert(err).Message(), 200)), peerAttr(bs.Context()))
		}
		return err
	}
	if size := int64(proto.Size(m.(proto.Message))); size < bs.held {
		bs.svc.budget.sem.Release(bs.held - size)
		bs.held = size
	}
	return nil
}

// refuse answers a request refused before it was read: one error_message of
// the RPC's own type, then the status (SPEC §2).
func (bs *budgetStream) refuse(start time.Time, te *turnError) error {
	bs.svc.decision(slog.LevelInfo, bs.method, "reject", start, slog.String("error_type", te.kind), slog.String("reason", te.msg), peerAttr(bs.Context()))
	var msg any
	switch bs.method {
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

// shortMethod is the RPC name without its service: "/streaming.StreamingService/StreamAudio" → "StreamAudio".
func shortMethod(full string) string {
	for i := len(full) - 1; i >= 0; i-- {
		if full[i] == '/' {
			return full[i+1:]
		}
	}
	return full
}

// peerAttr names the client's address, for refusals that have no ids to log.
func peerAttr(ctx context.Context) slog.Attr {
	if p, ok := peer.FromContext(ctx); ok && p.Addr != nil {
		return slog.String("peer", p.Addr.String())
	}
	return slog.String("peer", "")
}

// unaryInterceptor marks that a unary request was read and reached its
// handler, so refusedLogger can tell the requests grpc-go refused before.
func (s *service) unaryInterceptor(ctx context.Context, req any, info *grpc.UnaryServerInfo, handler grpc.UnaryHandler) (any, error) {
	if r, ok := ctx.Value(rpcKey{}).(*rpcRecord); ok {
		r.reached = true
	}
	return handler(ctx, req)
}

// refusedLogger is a stats handler that writes a decision line for unary
// requests grpc-go refused before any handler ran (a message over
// limits.max_message_bytes, a malformed message): those leave no other trace.
// Streaming requests are logged by budgetStream. It keeps no reference to any
// message, so sent audio buffers may be recycled as soon as Send returns.
type refusedLogger struct{ svc *service }

type rpcKey struct{}

type rpcRecord struct {
	method  string
	start   time.Time
	reached bool
}

func (l refusedLogger) TagRPC(ctx context.Context, info *stats.RPCTagInfo) context.Context {
	return context.WithValue(ctx, rpcKey{}, &rpcRecord{method: shortMethod(info.FullMethodName), start: l.svc.now()})
}

func (l refusedLogger) HandleRPC(ctx context.Context, st stats.RPCStats) {
	end, ok := st.(*stats.End)
	if !ok || end.Error == nil || end.IsClient() {
		return
	}
	r, ok := ctx.Value(rpcKey{}).(*rpcRecord)
	if !ok || r.reached || r.method == "StreamAudio" || r.method == "GenerateWelcomeAudio" {
		return
	}
	l.svc.decision(slog.LevelInfo, r.method, "reject", r.start, slog.String("code", status.Code(end.Error).String()),
		slog.String("reason", truncate(status.Convert(end.Error).Message(), 200)), peerAttr(ctx))
}

func (refusedLogger) TagConn(ctx context.Context, _ *stats.ConnTagInfo) context.Context { return ctx }

func (refusedLogger) HandleConn(context.Context, stats.ConnStats) {}
