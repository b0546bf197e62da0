package main

import (
	"context"
	"crypto/rand"
	"encoding/base64"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"strings"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/status"

	"github.com/nexy-server/nexy/audio"
	pb "github.com/nexy-server/nexy/proto"
)

// askOptions are the flags of `nexy ask`.
type askOptions struct {
	addr       string
	hardwareID string
	sessionID  string
	screenshot string
	out        string
	welcome    bool
	timeout    time.Duration
	prompt     string
}

// parseAsk parses the flags of `nexy ask`; when ok is false the command
// stops with code (0 after -h, 2 after a usage error, both already printed).
func parseAsk(args []string, stdout, stderr io.Writer) (o askOptions, code int, ok bool) {
	fs := flag.NewFlagSet("ask", flag.ContinueOnError)
	fs.StringVar(&o.addr, "addr", "127.0.0.1:50051", "server gRPC address (plaintext)")
	fs.StringVar(&o.hardwareID, "hardware-id", "NEXY-ASK-CLI", "hardware_id to send")
	fs.StringVar(&o.sessionID, "session", "", "session_id to send (default: a new UUID v4)")
	fs.StringVar(&o.screenshot, "screenshot", "", "image file (WebP, PNG or JPEG) to attach")
	fs.StringVar(&o.out, "out", "answer.wav", "WAV file for the spoken answer (empty = do not write)")
	fs.BoolVar(&o.welcome, "welcome", false, "call GenerateWelcomeAudio with the text instead of asking a question")
	fs.DurationVar(&o.timeout, "timeout", 5*time.Minute, "give up after this long (the app waits 300 s)")
	fs.Usage = func() {
		fmt.Fprint(fs.Output(), "usage: nexy ask [flags] \"question\"\n\nSends COLLECT + COMMIT like the macOS app and prints what comes back.\n\n")
		fs.PrintDefaults()
	}
	if code, ok := parseFlags(fs, args, stdout, stderr); !ok {
		return o, code, false
	}
	o.prompt = strings.TrimSpace(strings.Join(fs.Args(), " "))
	if o.prompt == "" && !o.welcome {
		fmt.Fprint(stderr, "nexy ask: a question is required\n\n")
		fs.Usage()
		return o, 2, false
	}
	if o.sessionID == "" {
		o.sessionID = newUUID()
	}
	return o, 0, true
}

// ask is a small client of our own: it talks to a server exactly like the app
// does, so users can try their server and tests can drive it.
func ask(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	o, code, ok := parseAsk(args, stdout, stderr)
	if !ok {
		return code
	}
	ctx, cancel := context.WithTimeout(ctx, o.timeout)
	defer cancel()
	conn, err := grpc.NewClient(o.addr, grpc.WithTransportCredentials(insecure.NewCredentials()),
		grpc.WithDefaultCallOptions(grpc.MaxCallRecvMsgSize(50<<20), grpc.MaxCallSendMsgSize(50<<20)))
	if err != nil {
		fmt.Fprintln(stderr, "nexy ask:", err)
		return 1
	}
	defer conn.Close()
	client := pb.NewStreamingServiceClient(conn)
	var res *answer
	if o.welcome {
		res, err = askWelcome(ctx, client, o)
	} else {
		res, err = askTurn(ctx, client, o)
	}
	if res != nil {
		res.print(stdout)
		if o.out != "" && len(res.pcm) > 0 {
			if werr := writeWAV(o.out, res.pcm); werr != nil {
				fmt.Fprintln(stderr, "nexy ask:", werr)
				return 1
			}
			fmt.Fprintf(stdout, "audio: %s (%.2f s, 48000 Hz mono int16)\n", o.out, float64(len(res.pcm))/96000)
		}
	}
	if err != nil {
		fmt.Fprintln(stderr, "nexy ask:", err)
		return 1
	}
	return 0
}

// answer is what a turn returned, with client-side timings from the COMMIT.
type answer struct {
	texts      []string
	action     string
	end        string
	pcm        []byte
	chunks     int
	badChunks  []string
	collectAck time.Duration
	firstText  time.Duration
	firstAudio time.Duration
	lastAudio  time.Duration
	actionAt   time.Duration
	endAt      time.Duration
}

func (a *answer) print(w io.Writer) {
	for _, t := range a.texts {
		fmt.Fprintf(w, "text: %s\n", t)
	}
	if a.action != "" {
		fmt.Fprintf(w, "action: %s\n", a.action)
	}
	if a.end != "" {
		// The app's end-of-answer marker; its text carries no meaning.
		fmt.Fprintf(w, "end_message: %q (the server's end-of-answer marker)\n", a.end)
	}
	fmt.Fprintf(w, "audio chunks: %d\n", a.chunks)
	for _, b := range a.badChunks {
		fmt.Fprintf(w, "BAD AUDIO CHUNK: %s\n", b)
	}
	ms := func(d time.Duration) string {
		if d == 0 {
			return "-"
		}
		return fmt.Sprintf("%.1f ms", float64(d.Microseconds())/1000)
	}
	fmt.Fprintf(w, "timings: collect_ack %s, first_text %s, first_audio %s, last_audio %s, action %s, end %s\n",
		ms(a.collectAck), ms(a.firstText), ms(a.firstAudio), ms(a.lastAudio), ms(a.actionAt), ms(a.endAt))
}

func askTurn(ctx context.Context, client pb.StreamingServiceClient, o askOptions) (*answer, error) {
	shot := ""
	if o.screenshot != "" {
		b, err := os.ReadFile(o.screenshot)
		if err != nil {
			return nil, err
		}
		shot = base64.StdEncoding.EncodeToString(b)
	}
	res := &answer{}
	// COLLECT: the app sends the interim transcript while the key is held (3 s deadline).
	start := time.Now()
	cctx, ccancel := context.WithTimeout(ctx, 3*time.Second)
	err := collect(cctx, client, &pb.StreamRequest{Prompt: "", Screenshot: &shot, HardwareId: o.hardwareID, SessionId: o.sessionID,
		Phase: pb.RequestPhase_REQUEST_PHASE_COLLECT, ChunkSeq: 1, ChunkText: &o.prompt})
	ccancel()
	if err != nil {
		return nil, fmt.Errorf("COLLECT: %w", err)
	}
	res.collectAck = time.Since(start)
	// COMMIT: optional strings present but empty, exactly like the app.
	empty := ""
	start = time.Now()
	stream, err := client.StreamAudio(ctx, &pb.StreamRequest{Prompt: o.prompt, Screenshot: &shot, HardwareId: o.hardwareID,
		SessionId: o.sessionID, Phase: pb.RequestPhase_REQUEST_PHASE_COMMIT, ChunkText: &empty})
	if err != nil {
		return nil, err
	}
	return res, res.read(stream, start)
}

func collect(ctx context.Context, client pb.StreamingServiceClient, req *pb.StreamRequest) error {
	stream, err := client.StreamAudio(ctx, req)
	if err != nil {
		return err
	}
	msg, err := stream.Recv()
	if err != nil {
		return grpcErr(err)
	}
	switch {
	case msg.GetErrorMessage() != "":
		return errors.New(msg.GetErrorMessage())
	case msg.GetEndMessage() != "COLLECT_ACCEPTED":
		return fmt.Errorf("unexpected reply %v", msg)
	}
	return nil
}

// read consumes a COMMIT stream and checks the answer grammar as it goes.
func (a *answer) read(stream grpc.ServerStreamingClient[pb.StreamResponse], start time.Time) error {
	for {
		msg, err := stream.Recv()
		if errors.Is(err, io.EOF) {
			if a.end == "" {
				return errors.New("stream ended without end_message (the app treats this as a failure)")
			}
			return nil
		}
		if err != nil {
			return grpcErr(err)
		}
		if a.end != "" {
			return fmt.Errorf("message after end_message: %v", msg)
		}
		if err := a.take(msg, time.Since(start)); err != nil {
			return err
		}
	}
}

func (a *answer) take(msg *pb.StreamResponse, at time.Duration) error {
	switch c := msg.Content.(type) {
	case *pb.StreamResponse_TextChunk:
		if a.action != "" {
			return errors.New("text_chunk after action_message")
		}
		a.texts = append(a.texts, c.TextChunk)
		setOnce(&a.firstText, at)
	case *pb.StreamResponse_AudioChunk:
		if a.action != "" {
			return errors.New("audio_chunk after action_message")
		}
		a.checkChunk(c.AudioChunk)
		a.pcm = append(a.pcm, c.AudioChunk.GetAudioData()...)
		a.chunks++
		setOnce(&a.firstAudio, at)
		a.lastAudio = at
	case *pb.StreamResponse_ActionMessage:
		if a.action != "" {
			return errors.New("second action_message")
		}
		a.action = c.ActionMessage.GetActionJson()
		a.actionAt = at
	case *pb.StreamResponse_EndMessage:
		a.end = c.EndMessage
		a.endAt = at
	case *pb.StreamResponse_ErrorMessage:
		return fmt.Errorf("server error: %s", c.ErrorMessage)
	default:
		return fmt.Errorf("unexpected message %T", c)
	}
	return nil
}

// checkChunk applies the shipped client's rules (it drops anything else).
func (a *answer) checkChunk(c *pb.AudioChunk) {
	n := len(c.GetAudioData())
	if c.GetSampleRate() != 48000 || c.GetChannels() != 1 || c.GetDtype() != "int16" || n == 0 || n%2 != 0 || n > 4096 {
		a.badChunks = append(a.badChunks, fmt.Sprintf("#%d: %d bytes, %d Hz, %d ch, dtype %q", a.chunks, n, c.GetSampleRate(), c.GetChannels(), c.GetDtype()))
	}
}

func askWelcome(ctx context.Context, client pb.StreamingServiceClient, o askOptions) (*answer, error) {
	start := time.Now()
	stream, err := client.GenerateWelcomeAudio(ctx, &pb.WelcomeRequest{Text: o.prompt, SessionId: fmt.Sprintf("welcome_%d", time.Now().Unix())})
	if err != nil {
		return nil, err
	}
	res := &answer{}
	for {
		msg, err := stream.Recv()
		if errors.Is(err, io.EOF) {
			if res.end == "" {
				return res, errors.New("stream ended without end_message")
			}
			return res, nil
		}
		if err != nil {
			return res, grpcErr(err)
		}
		switch c := msg.Content.(type) {
		case *pb.WelcomeResponse_Metadata:
			res.texts = append(res.texts, fmt.Sprintf("[metadata] method=%s duration=%.2fs rate=%d channels=%d dtype=%s",
				c.Metadata.GetMethod(), c.Metadata.GetDurationSec(), c.Metadata.GetSampleRate(), c.Metadata.GetChannels(), c.Metadata.GetDtype()))
		case *pb.WelcomeResponse_AudioChunk:
			res.checkChunk(c.AudioChunk)
			res.pcm = append(res.pcm, c.AudioChunk.GetAudioData()...)
			res.chunks++
			setOnce(&res.firstAudio, time.Since(start))
			res.lastAudio = time.Since(start)
		case *pb.WelcomeResponse_EndMessage:
			res.end, res.endAt = c.EndMessage, time.Since(start)
		case *pb.WelcomeResponse_ErrorMessage:
			return res, fmt.Errorf("server error: %s", c.ErrorMessage)
		}
	}
}

func setOnce(d *time.Duration, v time.Duration) {
	if *d == 0 {
		*d = v
	}
}

func grpcErr(err error) error {
	if st, ok := status.FromError(err); ok {
		return fmt.Errorf("%s: %s", st.Code(), st.Message())
	}
	return err
}

// writeWAV saves 48 kHz mono s16le PCM as a WAV file.
func writeWAV(path string, pcm []byte) error {
	return os.WriteFile(path, audio.EncodeWAV(audio.SampleRate, pcm), 0o644)
}

// newUUID returns a random RFC 4122 version 4 UUID, like the app's session ids.
func newUUID() string {
	var b [16]byte
	_, _ = rand.Read(b[:])
	b[6] = b[6]&0x0f | 0x40
	b[8] = b[8]&0x3f | 0x80
	return fmt.Sprintf("%x-%x-%x-%x-%x", b[0:4], b[4:6], b[6:8], b[8:10], b[10:16])
}
