package loadgen

import (
	"context"
	"fmt"
	"io"
	"math"
	"net"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/keepalive"

	"github.com/nexy-server/nexy/audio"
	pb "github.com/nexy-server/nexy/proto"
)

// The server's fixed replies (server/service.go, server/turn.go): the floor
// sends the same bytes.
const (
	collectAccepted = "COLLECT_ACCEPTED"
	endMessage      = "Обработка завершена"
)

// Floor is the least a server can do for the same load: a StreamingService
// that answers COLLECT at once and, for each COMMIT, sleeps what the fake
// providers would make the real server wait (the first token, the tokens
// of each sentence, the TTS first byte) and streams the same answer: each
// sentence's text_chunk and the audio chunks of a pre-rendered 48 kHz tone
// of the same length, then end_message. No prompt, no parsing, no HTTP, no
// store: what remains is gRPC and the timing.
type Floor struct {
	pb.UnimplementedStreamingServiceServer
	timing   Timing
	textDone []time.Duration
	texts    []*pb.StreamResponse
	audio    []*pb.StreamResponse
	collect  *pb.StreamResponse
	end      *pb.StreamResponse
}

// NewFloor pre-renders the answer for t.
func NewFloor(t Timing) *Floor {
	a := NewAnswer(t.Sentences)
	f := &Floor{timing: t,
		collect: &pb.StreamResponse{Content: &pb.StreamResponse_EndMessage{EndMessage: collectAccepted}},
		end:     &pb.StreamResponse{Content: &pb.StreamResponse_EndMessage{EndMessage: endMessage}},
	}
	f.textDone, _ = t.Schedule(a)
	for _, s := range a.Sentences {
		f.texts = append(f.texts, &pb.StreamResponse{Content: &pb.StreamResponse_TextChunk{TextChunk: s}})
	}
	pcm := Tone(wireRate, int(math.Round(t.AudioSec*wireRate)))
	for len(pcm) > 0 {
		n := min(len(pcm), audio.MaxChunkBytes) // the server's chunk size: the same bytes
		f.audio = append(f.audio, &pb.StreamResponse{Content: &pb.StreamResponse_AudioChunk{AudioChunk: &pb.AudioChunk{
			AudioData: pcm[:n], Dtype: wireDType, SampleRate: wireRate, Channels: 1}}})
		pcm = pcm[n:]
	}
	return f
}

// StreamAudio implements the service. Sentence k's audio starts at
// max(its text complete + TTS first byte, end of sentence k-1's audio).
func (f *Floor) StreamAudio(req *pb.StreamRequest, stream grpc.ServerStreamingServer[pb.StreamResponse]) error {
	if req.GetPhase() == pb.RequestPhase_REQUEST_PHASE_COLLECT {
		return stream.Send(f.collect)
	}
	start := time.Now()
	ctx := stream.Context()
	var prevEnd time.Duration
	for k, done := range f.textDone {
		if !sleepCtx(ctx, max(done+f.timing.TTSFirstByte, prevEnd)-time.Since(start)) {
			return ctx.Err()
		}
		if err := stream.Send(f.texts[k]); err != nil {
			return err
		}
		for _, m := range f.audio {
			if err := stream.Send(m); err != nil {
				return err
			}
		}
		prevEnd = time.Since(start)
	}
	return stream.Send(f.end)
}

// ServeFloor runs a floor server on addr until ctx is done, after writing
// "floor listening on ADDR" to ready.
func ServeFloor(ctx context.Context, addr string, t Timing, ready io.Writer) error {
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return err
	}
	srv := grpc.NewServer(
		grpc.KeepaliveEnforcementPolicy(keepalive.EnforcementPolicy{MinTime: 20 * time.Second, PermitWithoutStream: true}),
		grpc.MaxRecvMsgSize(4<<20))
	pb.RegisterStreamingServiceServer(srv, NewFloor(t))
	errc := make(chan error, 1)
	go func() { errc <- srv.Serve(ln) }()
	fmt.Fprintf(ready, "floor listening on %s\n", ln.Addr())
	select {
	case err = <-errc:
		return err
	case <-ctx.Done():
	}
	stopped := make(chan struct{})
	go func() { srv.GracefulStop(); close(stopped) }()
	select {
	case <-stopped:
	case <-time.After(2 * time.Second):
		srv.Stop()
		<-stopped
	}
	return nil
}
