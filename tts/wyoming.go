package tts

// Wyoming is the event protocol of Home Assistant and Rhasspy voice services
// (wyoming-piper, wyoming-openai, …). Every event is a JSON header line,
// optionally followed by data_length bytes of JSON data merged over the
// header's "data", then payload_length bytes of binary payload. A synthesis
// is: → synthesize {text, voice?}; ← audio-start {rate, width, channels},
// audio-chunk {rate, width, channels} + PCM, …, audio-stop; or ← error
// {text, code}.

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/netip"
	"regexp"
	"strconv"
	"strings"
	"time"
	"unicode"
	"unicode/utf8"

	"github.com/nexy-server/nexy/audio"
)

const (
	wyomingName = "wyoming"
	// wyomingMaxLine bounds a header line including its "\n". The reference
	// servers read lines with asyncio's default 64 KiB limit, so no real
	// server sends longer ones.
	wyomingMaxLine = 64 << 10
	// wyomingMaxData bounds one event's extra JSON data.
	wyomingMaxData = 64 << 10
	// wyomingMaxPayload bounds one event's binary payload; wyoming-piper
	// sends 2 KiB chunks (1024 samples).
	wyomingMaxPayload = 1 << 20
	wyomingMaxVoice   = 256
)

// Event types this provider acts on; any other type is skipped.
const (
	wyomingSynthesize = "synthesize"
	wyomingAudioStart = "audio-start"
	wyomingAudioChunk = "audio-chunk"
	wyomingAudioStop  = "audio-stop"
	wyomingError      = "error"
)

var wyomingHostRe = regexp.MustCompile(`^[A-Za-z0-9_][A-Za-z0-9_.-]{0,252}$`)

// WyomingConfig configures a Wyoming text-to-speech server such as wyoming-piper.
type WyomingConfig struct {
	Address       string        // "tcp://host:port", e.g. "tcp://127.0.0.1:10200" (wyoming-piper's port)
	Voice         string        // default voice, e.g. "en_US-lessac-medium"; "" = the server's default
	Timeout       time.Duration // whole call incl. reading the stream; 0 = 30 s
	MaxAudioBytes int64         // PCM bytes (as the server sends them) accepted per call; 0 = 32 MiB
}

// wyomingTTS speaks through a Wyoming server, one TCP connection per call.
type wyomingTTS struct {
	cfg  WyomingConfig
	addr string // host:port to dial
}

// NewWyoming validates cfg, fills defaults and returns the provider.
func NewWyoming(cfg WyomingConfig) (Synthesizer, error) {
	addr, err := wyomingHostPort(cfg.Address)
	if err != nil {
		return nil, errorf(wyomingName, "Address: %w", err)
	}
	if err := checkWyomingVoice(cfg.Voice); err != nil {
		return nil, errorf(wyomingName, "Voice: %w", err)
	}
	if err := commonLimits(wyomingName, &cfg.Timeout, &cfg.MaxAudioBytes); err != nil {
		return nil, err
	}
	return &wyomingTTS{cfg: cfg, addr: addr}, nil
}

// CheckWyomingAddress accepts a Wyoming server address: "tcp://host:port",
// where host is a name, an IPv4 address or a bracketed IPv6 address.
func CheckWyomingAddress(v string) error {
	_, err := wyomingHostPort(v)
	return err
}

// wyomingHostPort turns "tcp://host:port" into the "host:port" to dial.
// Wyoming also knows unix:// and stdio:// URIs; a server is only ever
// reached over TCP here, so those are refused with the rest.
func wyomingHostPort(v string) (string, error) {
	bad := fmt.Errorf("%q: want \"tcp://host:port\", e.g. \"tcp://127.0.0.1:10200\" or \"tcp://[::1]:10200\"", truncate(v, 120))
	rest, ok := strings.CutPrefix(v, "tcp://")
	if !ok {
		return "", bad
	}
	host, port, err := net.SplitHostPort(rest)
	if err != nil || !validPort(port) {
		return "", bad
	}
	if strings.HasPrefix(rest, "[") {
		// Brackets only make sense around an IPv6 literal.
		if a, err := netip.ParseAddr(host); err != nil || !a.Is6() || a.Is4In6() {
			return "", bad
		}
		return rest, nil
	}
	if !wyomingHostRe.MatchString(host) {
		return "", bad
	}
	return rest, nil
}

func validPort(p string) bool {
	n, err := strconv.Atoi(p)
	return err == nil && n >= 1 && n <= 65535 && p[0] != '0' && p[0] != '+'
}

// checkWyomingVoice accepts "" (the server's default) or a voice name. Any
// text is safe inside JSON; control characters, surrounding spaces and huge
// names are refused because they are never a voice, only a mistake.
func checkWyomingVoice(v string) error {
	ok := len(v) <= wyomingMaxVoice && utf8.ValidString(v) && strings.TrimSpace(v) == v
	for _, r := range v {
		ok = ok && !unicode.IsControl(r)
	}
	if !ok {
		return fmt.Errorf("%q: want a voice name like \"en_US-lessac-medium\" (no control characters or surrounding spaces, at most %d bytes)", truncate(v, 80), wyomingMaxVoice)
	}
	return nil
}

// Name implements Synthesizer.
func (w *wyomingTTS) Name() string { return wyomingName }

// Synthesize implements Synthesizer. It returns once the server has declared
// its audio format (wyoming-piper does so with the first sentence's audio),
// so a refused request (unknown voice, connection refused) is an error here,
// before any audio, and the caller may retry it.
func (w *wyomingTTS) Synthesize(ctx context.Context, req Request) (io.ReadCloser, error) {
	if strings.TrimSpace(req.Text) == "" {
		return nil, badRequestf(wyomingName, "empty text")
	}
	voice := req.Voice
	if voice == "" {
		voice = w.cfg.Voice
	}
	if err := checkWyomingVoice(voice); err != nil {
		return nil, badRequestf(wyomingName, "voice: %w", err)
	}
	callCtx, cancel := context.WithTimeout(ctx, w.cfg.Timeout)
	conn, err := w.dial(callCtx)
	if err != nil {
		cancel()
		return nil, err
	}
	c := newWyomingCall(callCtx, cancel, w.cfg, conn)
	first, err := c.start(req.Text, voice)
	if err != nil {
		err = c.explain(err) // before abort, which cancels the context
		c.abort()
		return nil, err
	}
	pcm, err := audio.Decode(c.pr, audio.PCM16, audio.Format{SampleRate: c.format.Rate, Channels: c.format.Channels})
	if err != nil {
		c.abort()
		return nil, errorf(wyomingName, "%s declares %s: %w", first.Type, c.format, err)
	}
	go c.run(first)
	s := newPCMStream(wyomingName, &ctxErrReader{r: pcm, ctx: callCtx, name: wyomingName, timeout: w.cfg.Timeout},
		cancel, c.release, c.prod.wait, c.prod.cause)
	s.gone = c.prod.done
	return s, nil
}

// dial opens the call's connection. The dialer's own error already names the
// address and the reason ("dial tcp …: connect: connection refused"); when
// ctx ended the dial, ctx's error replaces it so errors.Is sees it.
func (w *wyomingTTS) dial(ctx context.Context) (net.Conn, error) {
	conn, err := (&net.Dialer{}).DialContext(ctx, "tcp", w.addr)
	if err != nil {
		if cerr := ctx.Err(); cerr != nil {
			err = fmt.Errorf("dial tcp %s: %w", w.addr, cerr)
		}
		return nil, timeoutErr(wyomingName, ctx, w.cfg.Timeout, err)
	}
	return conn, nil
}

// wyomingCall is one synthesis: its connection, the events read from it and
// the pipe that carries the server's PCM to the decoder.
type wyomingCall struct {
	ctx      context.Context
	cancel   context.CancelFunc
	timeout  time.Duration
	maxAudio int64
	conn     net.Conn
	events   *wyomingReader
	pr       *io.PipeReader
	pw       *io.PipeWriter
	prod     *producer
	format   wyomingFormat
	audio    int64 // payload bytes received so far
	// stopWatch and watched undo the context watch: reads and writes on a
	// socket or pipe do not see ctx, so its end closes both.
	stopWatch func() bool
	watched   chan struct{}
}

func newWyomingCall(ctx context.Context, cancel context.CancelFunc, cfg WyomingConfig, conn net.Conn) *wyomingCall {
	pr, pw := io.Pipe()
	c := &wyomingCall{
		ctx: ctx, cancel: cancel, timeout: cfg.Timeout, maxAudio: cfg.MaxAudioBytes,
		conn: conn, events: newWyomingReader(conn), pr: pr, pw: pw,
		prod: newProducer(), watched: make(chan struct{}),
	}
	c.stopWatch = context.AfterFunc(ctx, func() {
		defer close(c.watched)
		conn.Close()
		pw.CloseWithError(timeoutErr(wyomingName, ctx, c.timeout, ctx.Err()))
	})
	return c
}

// start sends the request and reads up to the event that fixes the audio
// format (audio-start, or a first audio-chunk from a server that skips it).
func (c *wyomingCall) start(text, voice string) (wyomingEvent, error) {
	if err := writeWyomingEvent(c.conn, wyomingSynthesize, synthesizeData(text, voice), nil); err != nil {
		return wyomingEvent{}, fmt.Errorf("send synthesize: %w", err)
	}
	for {
		ev, err := c.events.next()
		if err == io.EOF {
			return ev, errors.New("server closed the connection without sending audio")
		}
		if err != nil {
			return ev, err
		}
		switch ev.Type {
		case wyomingAudioStart, wyomingAudioChunk:
			c.format, err = ev.format()
			return ev, err
		case wyomingAudioStop:
			return ev, errors.New("provider returned no audio (audio-stop before audio-start)")
		case wyomingError:
			return ev, ev.serverError()
		}
	}
}

type wyomingVoice struct {
	Name string `json:"name"`
}

type wyomingSynthesizeData struct {
	Text  string        `json:"text"`
	Voice *wyomingVoice `json:"voice,omitempty"`
}

func synthesizeData(text, voice string) wyomingSynthesizeData {
	d := wyomingSynthesizeData{Text: text}
	if voice != "" {
		d.Voice = &wyomingVoice{Name: voice}
	}
	return d
}

// run is the producer goroutine: it feeds PCM to the pipe until audio-stop
// and records any failure before closing the pipe, so Read reports the cause.
func (c *wyomingCall) run(first wyomingEvent) {
	defer close(c.prod.done)
	defer c.unwatch()
	defer c.prod.settle()
	if err := c.pump(first); err != nil {
		err = c.explain(err)
		c.prod.fail(err)
		c.pw.CloseWithError(err)
	}
}

// pump handles first and then every following event until audio-stop.
func (c *wyomingCall) pump(first wyomingEvent) error {
	ev := first
	for {
		stop, err := c.handle(ev)
		if err != nil || stop {
			return err
		}
		if ev, err = c.events.next(); err == io.EOF {
			return errors.New("server closed the connection before audio-stop")
		} else if err != nil {
			return err
		}
	}
}

// handle acts on one event and reports whether the audio has ended.
func (c *wyomingCall) handle(ev wyomingEvent) (bool, error) {
	switch ev.Type {
	case wyomingAudioStart:
		return false, c.sameFormat(ev)
	case wyomingAudioChunk:
		if err := c.sameFormat(ev); err != nil {
			return false, err
		}
		return false, c.feed(ev.Payload)
	case wyomingAudioStop:
		// The reader sees EOF; pcmStream turns zero bytes into "no audio".
		c.pw.Close()
		c.prod.settle()
		return true, nil
	case wyomingError:
		return false, ev.serverError()
	}
	return false, nil
}

// sameFormat refuses a format change: the decoder was set up for the first
// one, and wyoming-piper never changes format within a synthesis.
func (c *wyomingCall) sameFormat(ev wyomingEvent) error {
	f, err := ev.format()
	if err != nil {
		return err
	}
	if f != c.format {
		return fmt.Errorf("%s declares %s after %s; a format change within one synthesis is not supported", ev.Type, f, c.format)
	}
	return nil
}

func (c *wyomingCall) feed(pcm []byte) error {
	if len(pcm) == 0 {
		return nil // an empty pipe write would wait for a reader that gets nothing
	}
	if c.audio += int64(len(pcm)); c.audio > c.maxAudio {
		return fmt.Errorf("audio exceeds MaxAudioBytes (%d)", c.maxAudio)
	}
	if _, err := c.pw.Write(pcm); err != nil {
		return fmt.Errorf("feed decoder: %w", err)
	}
	return nil
}

// explain makes err the provider's error, naming the context's end (deadline
// or cancel) rather than its echo (a closed socket) when that is the cause.
func (c *wyomingCall) explain(err error) error {
	if cerr := c.ctx.Err(); cerr != nil {
		err = cerr
	}
	return timeoutErr(wyomingName, c.ctx, c.timeout, err)
}

// unwatch ends the context watch and closes the socket; afterwards no
// goroutine of this call is left but the caller's.
func (c *wyomingCall) unwatch() {
	if !c.stopWatch() {
		<-c.watched
	}
	c.conn.Close()
}

// release unblocks a producer writing to the pipe (stream Close).
func (c *wyomingCall) release() { c.pr.Close() }

// abort undoes a call that never started its producer.
func (c *wyomingCall) abort() {
	c.unwatch()
	c.pr.Close()
	c.cancel()
}

// ---- events ----

// wyomingFormat is the audio format audio-start and audio-chunk declare.
type wyomingFormat struct {
	Rate     int `json:"rate"`
	Width    int `json:"width"`
	Channels int `json:"channels"`
}

func (f wyomingFormat) String() string {
	return fmt.Sprintf("%d Hz, %d-byte samples, %d channel(s)", f.Rate, f.Width, f.Channels)
}

// wyomingEvent is one decoded event. Payload is only valid until the next
// read from the same wyomingReader.
type wyomingEvent struct {
	Type    string
	Data    map[string]json.RawMessage // header "data" with the data section merged over it
	Payload []byte
}

// decode fills v from the event's data.
func (e wyomingEvent) decode(v any) error {
	b, err := json.Marshal(e.Data)
	if err == nil {
		err = json.Unmarshal(b, v)
	}
	if err != nil {
		return fmt.Errorf("%s: bad data: %w", e.Type, err)
	}
	return nil
}

// format validates the declared format: 16-bit PCM, mono or stereo (the
// decoder averages stereo to mono); the decoder checks the rate.
func (e wyomingEvent) format() (wyomingFormat, error) {
	var f wyomingFormat
	if err := e.decode(&f); err != nil {
		return f, err
	}
	switch {
	case f.Rate <= 0:
		return f, fmt.Errorf("%s declares rate %d; want a sample rate in hertz", e.Type, f.Rate)
	case f.Width != 2:
		return f, fmt.Errorf("%s declares width %d; only 16-bit PCM (width 2) is supported", e.Type, f.Width)
	case f.Channels != 1 && f.Channels != 2:
		return f, fmt.Errorf("%s declares %d channels; want 1 (mono) or 2 (stereo)", e.Type, f.Channels)
	}
	return f, nil
}

// serverError turns an error event into the provider's error.
func (e wyomingEvent) serverError() error {
	var d struct {
		Text string `json:"text"`
		Code string `json:"code"`
	}
	if err := e.decode(&d); err != nil {
		return err
	}
	msg := truncate(strings.Join(strings.Fields(d.Text), " "), 300)
	if d.Code != "" {
		return fmt.Errorf("server error %s: %s", truncate(strings.Join(strings.Fields(d.Code), " "), 80), msg)
	}
	return fmt.Errorf("server error: %s", msg)
}

// wyomingHeader is the JSON header line. The reference writer also sends
// "version"; nothing depends on it, so it is neither read nor sent.
type wyomingHeader struct {
	Type          string          `json:"type"`
	Data          json.RawMessage `json:"data,omitempty"`
	DataLength    int64           `json:"data_length,omitempty"`
	PayloadLength int64           `json:"payload_length,omitempty"`
}

// wyomingReader reads events with every length bounded before anything is
// allocated for it, so a hostile or broken server costs at most
// wyomingMaxLine + wyomingMaxData + wyomingMaxPayload bytes of memory.
type wyomingReader struct {
	br      *bufio.Reader
	payload []byte // reused for every event's payload
}

func newWyomingReader(r io.Reader) *wyomingReader {
	return &wyomingReader{br: bufio.NewReaderSize(r, wyomingMaxLine)}
}

// next reads one event. It returns io.EOF only when the stream ends cleanly
// between events; an event cut short is io.ErrUnexpectedEOF.
func (r *wyomingReader) next() (wyomingEvent, error) {
	h, err := r.header()
	if err != nil {
		return wyomingEvent{}, err
	}
	ev := wyomingEvent{Type: h.Type}
	if ev.Data, err = jsonObject(h.Data, "header data"); err != nil {
		return ev, fmt.Errorf("event %q: %w", truncate(h.Type, 40), err)
	}
	if err := r.mergeData(&ev, h.DataLength); err != nil {
		return ev, fmt.Errorf("event %q: %w", truncate(h.Type, 40), err)
	}
	if ev.Payload, err = r.readPayload(h.PayloadLength); err != nil {
		return ev, fmt.Errorf("event %q: %w", truncate(h.Type, 40), err)
	}
	return ev, nil
}

// header reads and checks one header line.
func (r *wyomingReader) header() (wyomingHeader, error) {
	var h wyomingHeader
	line, err := r.br.ReadSlice('\n')
	switch {
	case err == io.EOF && len(line) == 0:
		return h, io.EOF
	case err == io.EOF:
		return h, fmt.Errorf("event header cut short: %w", io.ErrUnexpectedEOF)
	case errors.Is(err, bufio.ErrBufferFull):
		return h, fmt.Errorf("event header longer than %d bytes", wyomingMaxLine)
	case err != nil:
		return h, err
	}
	if err := json.Unmarshal(line, &h); err != nil {
		return h, fmt.Errorf("malformed event header %q: %w", truncate(string(bytes.TrimSpace(line)), 80), err)
	}
	switch {
	case h.Type == "":
		return h, fmt.Errorf("event header without a type: %q", truncate(string(bytes.TrimSpace(line)), 80))
	case h.DataLength < 0 || h.DataLength > wyomingMaxData:
		return h, fmt.Errorf("event %q: data_length %d out of range (0…%d)", truncate(h.Type, 40), h.DataLength, wyomingMaxData)
	case h.PayloadLength < 0 || h.PayloadLength > wyomingMaxPayload:
		return h, fmt.Errorf("event %q: payload_length %d out of range (0…%d)", truncate(h.Type, 40), h.PayloadLength, wyomingMaxPayload)
	}
	return h, nil
}

// mergeData reads the data section and merges it over the header's data,
// as the reference reader does (the section's keys win).
func (r *wyomingReader) mergeData(ev *wyomingEvent, n int64) error {
	if n == 0 {
		return nil
	}
	b := make([]byte, n)
	if _, err := io.ReadFull(r.br, b); err != nil {
		return fmt.Errorf("data cut short: %w", eofIsUnexpected(err))
	}
	extra, err := jsonObject(b, "data")
	if err != nil {
		return err
	}
	if ev.Data == nil {
		ev.Data = extra
		return nil
	}
	for k, v := range extra {
		ev.Data[k] = v
	}
	return nil
}

func (r *wyomingReader) readPayload(n int64) ([]byte, error) {
	if n == 0 {
		return nil, nil
	}
	if int64(cap(r.payload)) < n {
		r.payload = make([]byte, n)
	}
	p := r.payload[:n]
	if _, err := io.ReadFull(r.br, p); err != nil {
		return nil, fmt.Errorf("payload cut short: %w", eofIsUnexpected(err))
	}
	return p, nil
}

// jsonObject parses an optional JSON object ("" and null are empty).
func jsonObject(b []byte, what string) (map[string]json.RawMessage, error) {
	if len(bytes.TrimSpace(b)) == 0 {
		return nil, nil
	}
	var m map[string]json.RawMessage
	if err := json.Unmarshal(b, &m); err != nil {
		return nil, fmt.Errorf("%s is not a JSON object: %w", what, err)
	}
	return m, nil
}

func eofIsUnexpected(err error) error {
	if err == io.EOF {
		return io.ErrUnexpectedEOF
	}
	return err
}

// writeWyomingEvent sends one event in a single write, framed as the
// reference writer frames it: the data travels in the data section, so a
// long text cannot push the header line past a server's line limit.
func writeWyomingEvent(w io.Writer, typ string, data any, payload []byte) error {
	var body []byte
	if data != nil {
		var err error
		if body, err = json.Marshal(data); err != nil {
			return err
		}
		if string(body) == "{}" || string(body) == "null" {
			body = nil
		}
	}
	h := wyomingHeader{Type: typ, DataLength: int64(len(body)), PayloadLength: int64(len(payload))}
	line, err := json.Marshal(h)
	if err != nil {
		return err
	}
	msg := make([]byte, 0, len(line)+1+len(body)+len(payload))
	msg = append(append(append(append(msg, line...), '\n'), body...), payload...)
	_, err = w.Write(msg)
	return err
}
