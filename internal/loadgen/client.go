package loadgen

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"net"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/connectivity"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/credentials/insecure"

	pb "github.com/nexy-server/nexy/proto"
)

// Hard bounds of one run, whatever the flags say.
const (
	MaxDevices  = 2000
	MaxTurns    = 1_000_000
	MaxDuration = 10 * time.Minute
)

// Load is what the simulated devices do. Each device has its own hardware
// id and gRPC connection (like a Mac running the app) and a new session per
// turn: COLLECTs with a growing transcript while the key is held, then the
// COMMIT, then a pause.
type Load struct {
	Devices         int
	Turns           int           // total turns to start; 0 = until Duration
	Duration        time.Duration // stop starting turns after this; 0 = MaxDuration
	Think           time.Duration // pause between a device's turns
	Collects        int           // interim COLLECTs before each COMMIT (0 = none)
	CollectInterval time.Duration // between COLLECTs
	Hold            time.Duration // from the last COLLECT's answer to the COMMIT
	TurnTimeout     time.Duration // one COMMIT at most this long (0 = 60 s)
	DeviceTag       string        // part of the hardware ids, so runs do not share devices
}

// Validate checks the load against the hard bounds.
func (l Load) Validate() error {
	switch {
	case l.Devices < 1 || l.Devices > MaxDevices:
		return fmt.Errorf("--devices %d: want 1..%d", l.Devices, MaxDevices)
	case l.Turns < 0 || l.Turns > MaxTurns:
		return fmt.Errorf("--turns %d: want 0 (until --duration) .. %d", l.Turns, MaxTurns)
	case l.Duration < 0 || l.Duration > MaxDuration:
		return fmt.Errorf("--duration %s: want 0 (until --turns) .. %s", l.Duration, MaxDuration)
	case l.Think < 0 || l.Think > time.Minute:
		return fmt.Errorf("--think %s: want 0..1m", l.Think)
	case l.Collects < 0 || l.Collects > 100:
		return fmt.Errorf("--collects %d: want 0..100", l.Collects)
	case l.CollectInterval < 0 || l.CollectInterval > 10*time.Second:
		return fmt.Errorf("--collect-interval %s: want 0..10s", l.CollectInterval)
	case l.Hold < 0 || l.Hold > time.Minute:
		return fmt.Errorf("--hold %s: want 0..1m", l.Hold)
	case l.TurnTimeout < 0 || l.TurnTimeout > 5*time.Minute:
		return fmt.Errorf("--turn-timeout %s: want 0..5m", l.TurnTimeout)
	}
	return nil
}

// Stage names, in the order a turn reaches them.
const (
	StageCollectAck  = "collect_ack" // from the COLLECT send
	StageFirstText   = "first_text"  // the rest from the COMMIT send
	StageFirstAudio  = "first_audio"
	StageLastAudio   = "last_audio"
	StageLastMessage = "last_message"
)

// Stages lists the stage names in report order.
var Stages = []string{StageCollectAck, StageFirstText, StageFirstAudio, StageLastAudio, StageLastMessage}

// LoadResult is what the devices measured.
type LoadResult struct {
	Samples   map[string][]time.Duration
	OK        int               // turns answered in full and by the rules
	Failed    int               // turns with an error (by class in Errors)
	Errors    map[string]int    // class → turns
	Examples  map[string]string // class → one message
	Chunks    int64
	BadChunks int64
	Elapsed   time.Duration // first turn start to last turn end
}

// Live counts a running load, for the progress line.
type Live struct {
	// OnStart, if set, is called when every device is connected, just
	// before the first turn (the bench samples the server's CPU there).
	OnStart  func()
	start    atomic.Int64 // unix ns
	OK       atomic.Int64
	Failed   atomic.Int64
	InFlight atomic.Int64
}

// started is when the first turn started (zero before).
func (l *Live) started() time.Time {
	if ns := l.start.Load(); ns != 0 {
		return time.Unix(0, ns)
	}
	return time.Time{}
}

// pinnedTLS is a TLS config accepting only the certificate whose SHA-256
// fingerprint is pin (hex, colons optional), as the app pins a self-signed server.
func pinnedTLS(pin string) (*tls.Config, error) {
	want := strings.ToLower(strings.NewReplacer(":", "", " ", "").Replace(pin))
	if _, err := hex.DecodeString(want); err != nil || len(want) != 64 {
		return nil, fmt.Errorf("--tls-pin: want the certificate's SHA-256 as 64 hex digits (colons allowed)")
	}
	return &tls.Config{
		MinVersion:         tls.VersionTLS12,
		NextProtos:         []string{"h2"},
		InsecureSkipVerify: true, // the pin below is the check, as in the app
		VerifyPeerCertificate: func(raw [][]byte, _ [][]*x509.Certificate) error {
			if len(raw) == 0 {
				return errors.New("no certificate")
			}
			sum := sha256.Sum256(raw[0])
			if got := hex.EncodeToString(sum[:]); got != want {
				var colons []string
				for i := 0; i < len(got); i += 2 {
					colons = append(colons, strings.ToUpper(got[i:i+2]))
				}
				return fmt.Errorf("the server's certificate has fingerprint %s, not the --tls-pin", strings.Join(colons, ":"))
			}
			return nil
		},
	}, nil
}

// Dial opens a client connection to addr: plaintext, or TLS pinned to pin.
func Dial(addr, pin string) (*grpc.ClientConn, error) {
	creds := insecure.NewCredentials()
	if pin != "" {
		conf, err := pinnedTLS(pin)
		if err != nil {
			return nil, err
		}
		creds = credentials.NewTLS(conf)
	}
	return grpc.NewClient(addr, grpc.WithTransportCredentials(creds),
		grpc.WithDefaultCallOptions(grpc.MaxCallRecvMsgSize(64<<20)))
}

// probe connects once (TCP, and the TLS handshake when pinned) so that an
// unreachable server or a wrong pin is reported at once and by name.
func probe(ctx context.Context, addr, pin string) error {
	d := &net.Dialer{Timeout: 10 * time.Second}
	if pin == "" {
		c, err := d.DialContext(ctx, "tcp", addr)
		if err == nil {
			c.Close()
		}
		return err
	}
	conf, err := pinnedTLS(pin)
	if err != nil {
		return err
	}
	td := &tls.Dialer{NetDialer: d, Config: conf}
	c, err := td.DialContext(ctx, "tcp", addr)
	if err == nil {
		c.Close()
	}
	return err
}

// waitReady waits until c is connected.
func waitReady(ctx context.Context, c *grpc.ClientConn) error {
	c.Connect()
	for s := c.GetState(); s != connectivity.Ready; s = c.GetState() {
		if !c.WaitForStateChange(ctx, s) {
			return fmt.Errorf("%w (last state %s)", ctx.Err(), s)
		}
	}
	return nil
}

// RunLoad runs l against addr and returns what it measured. It returns
// when every device has finished its last turn; ctx ends it early (turns
// cut short then are not counted).
func RunLoad(ctx context.Context, addr, pin string, l Load, live *Live) (*LoadResult, error) {
	if l.TurnTimeout == 0 {
		l.TurnTimeout = time.Minute
	}
	if l.DeviceTag == "" {
		l.DeviceTag = randomHex(3)
	}
	if err := probe(ctx, addr, pin); err != nil {
		return nil, err
	}
	// Connect every device first, so connection setup is not measured.
	conns := make([]*grpc.ClientConn, l.Devices)
	defer func() {
		for _, c := range conns {
			if c != nil {
				c.Close()
			}
		}
	}()
	connCtx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	for i := range conns {
		c, err := Dial(addr, pin)
		if err != nil {
			return nil, err
		}
		conns[i] = c
		c.Connect()
	}
	for _, c := range conns {
		if err := waitReady(connCtx, c); err != nil {
			return nil, fmt.Errorf("connecting to %s: %w", addr, err)
		}
	}
	if live == nil {
		live = &Live{}
	}
	if live.OnStart != nil {
		live.OnStart()
	}
	started := time.Now()
	live.start.Store(started.UnixNano())
	deadline := started.Add(MaxDuration)
	if l.Duration > 0 {
		deadline = started.Add(l.Duration)
	}
	var tickets atomic.Int64
	devs := make([]*device, l.Devices)
	var wg sync.WaitGroup
	for i := range devs {
		d := &device{load: &l, client: pb.NewStreamingServiceClient(conns[i]), live: live,
			hw: fmt.Sprintf("NEXY-BENCH-%s-%04d", l.DeviceTag, i), samples: map[string][]time.Duration{},
			errors: map[string]int{}, examples: map[string]string{}}
		devs[i] = d
		wg.Add(1)
		go func() {
			defer wg.Done()
			for ctx.Err() == nil && time.Now().Before(deadline) {
				if l.Turns > 0 && tickets.Add(1) > int64(l.Turns) {
					return
				}
				d.turn(ctx)
				d.end = time.Now()
				if !sleepCtx(ctx, l.Think) {
					return
				}
			}
		}()
	}
	wg.Wait()
	res := &LoadResult{Samples: map[string][]time.Duration{}, Errors: map[string]int{}, Examples: map[string]string{}}
	var last time.Time
	for _, d := range devs {
		for k, v := range d.samples {
			res.Samples[k] = append(res.Samples[k], v...)
		}
		for k, v := range d.errors {
			res.Errors[k] += v
			if res.Examples[k] == "" {
				res.Examples[k] = d.examples[k]
			}
		}
		res.OK += d.ok
		res.Failed += d.failed
		res.Chunks += d.chunks
		res.BadChunks += d.badChunks
		if d.end.After(last) {
			last = d.end
		}
	}
	if !last.IsZero() {
		res.Elapsed = last.Sub(started)
	}
	return res, nil
}

// device is one simulated Mac; its records are its own, merged at the end.
type device struct {
	load      *Load
	client    pb.StreamingServiceClient
	live      *Live
	hw        string
	turns     int
	samples   map[string][]time.Duration
	errors    map[string]int
	examples  map[string]string
	ok        int
	failed    int
	chunks    int64
	badChunks int64
	end       time.Time
}

// transcript is what the simulated user says; COLLECTs carry growing
// prefixes of it, the last one and the COMMIT all of it.
var transcript = strings.Fields("what will the weather be like in Berlin today and tomorrow")

func (d *device) turn(ctx context.Context) {
	d.live.InFlight.Add(1)
	defer d.live.InFlight.Add(-1)
	d.turns++
	session := newUUID()
	full := strings.Join(transcript, " ") + fmt.Sprintf(" (turn %d)", d.turns)
	n := d.load.Collects
	for c := 1; c <= n; c++ {
		text := full
		if c < n {
			text = strings.Join(transcript[:max(1, c*len(transcript)/n)], " ")
		}
		ack, err := d.collect(ctx, session, int32(c), text)
		if ctx.Err() != nil {
			return
		}
		if err != nil {
			d.record("collect: "+errClass(err), err.Error())
			return
		}
		d.samples[StageCollectAck] = append(d.samples[StageCollectAck], ack)
		if c < n && !sleepCtx(ctx, d.load.CollectInterval) {
			return
		}
	}
	if !sleepCtx(ctx, d.load.Hold) {
		return
	}
	tctx, cancel := context.WithTimeout(ctx, d.load.TurnTimeout)
	defer cancel()
	empty := ""
	var chk turnCheck
	start := time.Now()
	err := func() error {
		stream, err := d.client.StreamAudio(tctx, &pb.StreamRequest{Prompt: full, Screenshot: &empty, HardwareId: d.hw,
			SessionId: session, Phase: pb.RequestPhase_REQUEST_PHASE_COMMIT, ChunkText: &empty})
		if err != nil {
			return err
		}
		for {
			msg, err := stream.Recv()
			if errors.Is(err, io.EOF) {
				return nil
			}
			if err != nil {
				return err
			}
			chk.take(msg, time.Since(start))
		}
	}()
	if ctx.Err() != nil {
		return // the run stopped: not the server's failure
	}
	if err != nil && errors.Is(tctx.Err(), context.DeadlineExceeded) {
		err = errTimeout(fmt.Sprintf("COMMIT not finished within --turn-timeout %s", d.load.TurnTimeout))
	}
	d.chunks += int64(chk.chunks)
	d.badChunks += int64(chk.badChunks)
	if class := chk.finish(err); class != "" {
		example := chk.violation
		if err != nil {
			example = err.Error()
		} else if chk.errorMessage != "" {
			example = chk.errorMessage
		}
		d.record(class, example)
		return
	}
	d.ok++
	d.live.OK.Add(1)
	// A good answer has text before its audio and an end: every stage was reached.
	d.samples[StageFirstText] = append(d.samples[StageFirstText], chk.firstText)
	d.samples[StageFirstAudio] = append(d.samples[StageFirstAudio], chk.firstAudio)
	d.samples[StageLastAudio] = append(d.samples[StageLastAudio], chk.lastAudio)
	d.samples[StageLastMessage] = append(d.samples[StageLastMessage], chk.endAt)
}

func (d *device) record(class, example string) {
	d.failed++
	d.live.Failed.Add(1)
	d.errors[class]++
	if d.examples[class] == "" {
		d.examples[class] = example
	}
}

// collect sends one COLLECT and expects exactly one end_message
// "COLLECT_ACCEPTED" back, within the app's 3 s deadline.
func (d *device) collect(ctx context.Context, session string, seq int32, text string) (time.Duration, error) {
	ctx, cancel := context.WithTimeout(ctx, 3*time.Second)
	defer cancel()
	empty := ""
	start := time.Now()
	stream, err := d.client.StreamAudio(ctx, &pb.StreamRequest{Prompt: "", Screenshot: &empty, HardwareId: d.hw, SessionId: session,
		Phase: pb.RequestPhase_REQUEST_PHASE_COLLECT, ChunkSeq: seq, ChunkText: &text})
	if err != nil {
		return 0, err
	}
	msg, err := stream.Recv()
	if err != nil {
		if errors.Is(ctx.Err(), context.DeadlineExceeded) {
			return 0, errTimeout("COLLECT not answered within the app's 3 s deadline")
		}
		return 0, err
	}
	ack := time.Since(start)
	if msg.GetEndMessage() != collectAccepted {
		return 0, errProtocol("COLLECT answered with something else than end_message COLLECT_ACCEPTED")
	}
	if _, err := stream.Recv(); !errors.Is(err, io.EOF) {
		if err != nil {
			return 0, err
		}
		return 0, errProtocol("COLLECT answered with more than one message")
	}
	return ack, nil
}

// errTimeout is the bench giving up on a call; its class is its text.
type errTimeout string

func (e errTimeout) Error() string { return string(e) }

// errProtocol is a broken rule of the wire contract; its class is its text.
type errProtocol string

func (e errProtocol) Error() string { return string(e) }

func randomHex(n int) string {
	b := make([]byte, n)
	_, _ = rand.Read(b)
	return strings.ToUpper(hex.EncodeToString(b))
}

// newUUID returns a random version 4 UUID, like the app's session ids.
func newUUID() string {
	var b [16]byte
	_, _ = rand.Read(b[:])
	b[6] = b[6]&0x0f | 0x40
	b[8] = b[8]&0x3f | 0x80
	return fmt.Sprintf("%x-%x-%x-%x-%x", b[0:4], b[4:6], b[6:8], b[8:10], b[10:16])
}
