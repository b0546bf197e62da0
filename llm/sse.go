package llm

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"regexp"
	"strings"
	"sync"
	"sync/atomic"
	"time"
	"unicode/utf8"

	"github.com/nexy-server/nexy/internal/fault"
)

// maxSSEEventBytes bounds one SSE line and one event's joined data. A single
// streamed chunk from either provider is a few KiB; 1 MiB leaves room for
// grounding metadata while stopping a broken or hostile server from making us
// buffer without end.
const maxSSEEventBytes = 1 << 20

// errSSETooLarge is returned when a line or an event exceeds the reader's limit.
var errSSETooLarge = errors.New("sse: event too large")

// sseEvent is one dispatched Server-Sent Event.
type sseEvent struct {
	Type string // the "event:" field; empty means "message"
	Data string // "data:" lines joined by "\n"
	ID   string // the "id:" field, if any
}

// sseReader parses a text/event-stream as the WHATWG HTML spec describes it:
// lines end with CRLF, LF or a lone CR; "field: value" lines fill an event; a
// blank line dispatches it; lines starting with ':' are comments. Both Gemini
// (CRLF) and OpenAI-compatible servers (LF) are covered by the same code.
type sseReader struct {
	r          io.Reader
	buf        []byte // buf[rpos:wpos] is read from r but not consumed yet
	rpos, wpos int
	rerr       error // r's error, returned once the buffered bytes are used up
	max        int   // bound of one line and of one event's data
	skipLF     bool  // the previous line ended in '\r': a '\n' right after it belongs to it
	started    bool  // the optional leading BOM has been handled
}

// sseInitialBuffer is the reader's first buffer: a streamed chunk is a few
// hundred bytes, so most streams never need more. A longer line grows the
// buffer (doubling) up to the line bound.
const sseInitialBuffer = 4 << 10

// sseMaxEmptyReads is how many reads returning nothing (and no error) in a
// row are taken as a broken reader, as bufio does.
const sseMaxEmptyReads = 100

// newSSEReader reads events from r; max bounds a line and an event's data (<=0: default).
func newSSEReader(r io.Reader, max int) *sseReader {
	if max <= 0 {
		max = maxSSEEventBytes
	}
	return &sseReader{r: r, buf: make([]byte, sseInitialBuffer), max: max}
}

// Next returns the next event that carries data. It returns io.EOF at a clean
// end of stream, and io.ErrUnexpectedEOF (wrapped) when the stream stops in
// the middle of an event, so a cut-off answer is never mistaken for a whole one.
func (s *sseReader) Next() (sseEvent, error) {
	var (
		ev      sseEvent
		data    strings.Builder
		hasData bool
		pending bool // some field was seen since the last dispatch
	)
	for {
		line, err := s.readLine()
		if err != nil {
			if errors.Is(err, io.EOF) && pending {
				return sseEvent{}, fmt.Errorf("sse: stream ended inside an event: %w", io.ErrUnexpectedEOF)
			}
			return sseEvent{}, err
		}
		if len(line) == 0 {
			if hasData {
				ev.Data = data.String()
				return ev, nil
			}
			// A blank line without data dispatches nothing and resets the type.
			ev, pending = sseEvent{}, false
			continue
		}
		if line[0] == ':' {
			continue // comment, e.g. a keep-alive ": ping"
		}
		field, value := line, []byte(nil)
		if i := bytes.IndexByte(line, ':'); i >= 0 {
			field, value = line[:i], line[i+1:]
			if len(value) > 0 && value[0] == ' ' {
				value = value[1:]
			}
		}
		pending = true
		switch string(field) {
		case "data":
			n := data.Len() + len(value)
			if hasData {
				n++ // the "\n" that joins data lines
			}
			if n > s.max {
				return sseEvent{}, fmt.Errorf("%w: data exceeds %d bytes", errSSETooLarge, s.max)
			}
			if hasData {
				data.WriteByte('\n')
			}
			data.Write(value)
			hasData = true
		case "event":
			ev.Type = string(value)
		case "id":
			if bytes.IndexByte(value, 0) < 0 {
				ev.ID = string(value)
			}
		}
		// "retry" and unknown fields are ignored, as the spec requires.
	}
}

// readLine returns the next line without its terminator. The returned slice
// points into the buffer and is valid until the next call. A final line
// without terminator is returned before io.EOF.
func (s *sseReader) readLine() ([]byte, error) {
	if !s.started {
		s.started = true
		for s.wpos-s.rpos < 3 && s.rerr == nil {
			s.fill()
		}
		if bytes.HasPrefix(s.buf[s.rpos:s.wpos], []byte("\xEF\xBB\xBF")) {
			s.rpos += 3
		}
	}
	scanned := 0 // s.buf[s.rpos:][:scanned] holds no line end
	for {
		b := s.buf[s.rpos:s.wpos]
		if s.skipLF && len(b) > 0 {
			s.skipLF = false
			if b[0] == '\n' {
				s.rpos++
				continue
			}
		}
		if i := bytes.IndexAny(b[scanned:], "\r\n"); i >= 0 {
			i += scanned
			if i > s.max {
				return nil, fmt.Errorf("%w: line exceeds %d bytes", errSSETooLarge, s.max)
			}
			s.skipLF = b[i] == '\r'
			s.rpos += i + 1
			return b[:i], nil
		}
		scanned = len(b)
		if len(b) > s.max {
			return nil, fmt.Errorf("%w: line exceeds %d bytes", errSSETooLarge, s.max)
		}
		if s.rerr != nil {
			if errors.Is(s.rerr, io.EOF) && len(b) > 0 {
				s.rpos = s.wpos
				return b, nil
			}
			return nil, s.rerr
		}
		s.fill()
	}
}

// fill reads more input after the unconsumed bytes, growing the buffer when
// they fill it (one unfinished line; readLine has checked it against max).
func (s *sseReader) fill() {
	if s.rpos > 0 {
		s.wpos = copy(s.buf, s.buf[s.rpos:s.wpos])
		s.rpos = 0
	}
	if s.wpos == len(s.buf) {
		grown := make([]byte, min(2*len(s.buf), s.max+1))
		copy(grown, s.buf[:s.wpos])
		s.buf = grown
	}
	for range sseMaxEmptyReads {
		n, err := s.r.Read(s.buf[s.wpos:])
		s.wpos += n
		if err != nil {
			s.rerr = err
			return
		}
		if n > 0 {
			return
		}
	}
	s.rerr = io.ErrNoProgress
}

// drain reads and drops the rest of the input, at most limit bytes beyond
// what is buffered; it reports whether the input ended cleanly.
func (s *sseReader) drain(limit int64) bool {
	limit -= int64(s.wpos - s.rpos)
	s.rpos = s.wpos
	if s.rerr == nil && limit >= 0 {
		// One byte past the limit tells "ended at the limit" from "goes on".
		n, err := io.Copy(io.Discard, io.LimitReader(s.r, limit+1))
		switch {
		case err != nil:
			s.rerr = err
		case n <= limit:
			s.rerr = io.EOF
		}
	}
	return errors.Is(s.rerr, io.EOF)
}

// ---------------------------------------------------------------------------
// Streaming HTTP call shared by the Gemini and OpenAI-compatible providers.

const (
	// maxStreamBytes bounds a whole streamed response; an answer is a few KiB.
	maxStreamBytes = 64 << 20
	// maxErrorBodyBytes bounds how much of a non-200 body is read for its message.
	maxErrorBodyBytes = 64 << 10
	// maxErrorMessage bounds the provider message kept in an *Error (it goes to logs).
	maxErrorMessage = 512
)

// errCallTimeout is the cause of the per-call deadline, to tell it apart from
// the caller's own cancellation or deadline.
var errCallTimeout = errors.New("llm: per-call timeout")

// errStreamClosed is returned by Recv after Close.
var errStreamClosed = errors.New("llm: stream closed")

// chunkDecoder turns a provider's SSE events into text deltas.
type chunkDecoder interface {
	// event appends the text deltas carried by ev to out; done reports the
	// provider's explicit end-of-stream marker.
	event(ev sseEvent, out []string) (deltas []string, done bool, err error)
	// end is called once at the end of the stream (done tells whether the
	// marker was seen) and reports a stream that was cut short.
	end(done bool) error
	// usage is what the provider reported so far.
	usage() Usage
}

// httpCall is everything one streaming POST needs.
type httpCall struct {
	provider string
	client   *http.Client
	timeout  time.Duration // 0: no per-call limit (the caller's ctx still applies)
	url      string
	header   http.Header
	body     []byte
	apiKey   string // only to scrub it from provider messages
	parseErr func(status int, body []byte) *Error
}

// start sends the request and returns a stream over the SSE response, or an
// *Error for a non-200 answer, a network failure or the per-call timeout.
func (c *httpCall) start(parent context.Context, dec chunkDecoder) (Stream, error) {
	var (
		ctx    context.Context
		cancel context.CancelFunc
	)
	if c.timeout > 0 {
		ctx, cancel = context.WithTimeoutCause(parent, c.timeout, errCallTimeout)
	} else {
		ctx, cancel = context.WithCancel(parent)
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, c.url, bytes.NewReader(c.body))
	if err != nil {
		cancel()
		return nil, &Error{Provider: c.provider, Kind: KindBadRequest, Message: "build request", Err: err}
	}
	req.Header = c.header
	resp, err := c.client.Do(req)
	if err != nil {
		cancel()
		return nil, classifyTransport(c.provider, parent, ctx, c.timeout, err)
	}
	if resp.StatusCode != http.StatusOK {
		defer cancel()
		defer resp.Body.Close()
		body, rerr := io.ReadAll(io.LimitReader(resp.Body, maxErrorBodyBytes))
		if rerr != nil && ctx.Err() != nil {
			return nil, classifyTransport(c.provider, parent, ctx, c.timeout, rerr)
		}
		e := c.parseErr(resp.StatusCode, body)
		e.Message = scrubMessage(e.Message, c.apiKey)
		return nil, e
	}
	if ct := resp.Header.Get("Content-Type"); strings.HasPrefix(ct, "application/json") {
		resp.Body.Close()
		cancel()
		return nil, &Error{Provider: c.provider, Kind: KindUnavailable, Status: resp.StatusCode,
			Message: "expected text/event-stream, got " + ct}
	}
	return &sseStream{
		provider: c.provider,
		timeout:  c.timeout,
		apiKey:   c.apiKey,
		parent:   parent,
		ctx:      ctx,
		cancel:   cancel,
		body:     resp.Body,
		events:   newSSEReader(&cappedReader{r: resp.Body, left: maxStreamBytes}, maxSSEEventBytes),
		dec:      dec,
	}, nil
}

// sseStream implements Stream over one SSE response body.
type sseStream struct {
	provider string
	timeout  time.Duration
	apiKey   string
	parent   context.Context // the caller's context
	ctx      context.Context // parent plus the per-call timeout; bound to the request
	cancel   context.CancelFunc
	body     io.ReadCloser
	events   *sseReader
	dec      chunkDecoder

	queue     []string // deltas decoded but not yet returned
	err       error    // sticky terminal result (io.EOF after a clean end)
	closeOnce sync.Once
	closed    atomic.Bool
}

// Recv returns the next non-empty delta, io.EOF after the last, or an error.
func (s *sseStream) Recv() (string, error) {
	if s.closed.Load() {
		return "", fmt.Errorf("llm %s: %w", s.provider, errStreamClosed)
	}
	// A cancelled caller must see the cancellation at once, even if data is
	// still buffered: the turn is over.
	if s.err == nil && s.ctx.Err() != nil {
		s.finish(classifyTransport(s.provider, s.parent, s.ctx, s.timeout, s.ctx.Err()))
	}
	for {
		if s.err == nil || s.err == io.EOF {
			if len(s.queue) > 0 {
				d := s.queue[0]
				s.queue = s.queue[1:]
				return d, nil
			}
		}
		if s.err != nil {
			return "", s.err
		}
		s.step()
	}
}

// step reads one SSE event and queues its deltas, or records the end.
func (s *sseStream) step() {
	ev, err := s.events.Next()
	if err != nil {
		switch {
		case s.closed.Load():
			s.finish(fmt.Errorf("llm %s: %w", s.provider, errStreamClosed))
		case errors.Is(err, io.EOF):
			s.finish(s.endErr(s.dec.end(false)))
		case s.ctx.Err() != nil:
			s.finish(classifyTransport(s.provider, s.parent, s.ctx, s.timeout, err))
		default:
			s.finish(&Error{Provider: s.provider, Kind: KindUnavailable, Message: "read stream", Err: err})
		}
		return
	}
	deltas, done, err := s.dec.event(ev, s.queue[:0])
	s.queue = dropEmptyDeltas(deltas)
	if err != nil {
		// An error event (blocked answer, provider error) carries no text
		// worth speaking; the error ends the stream.
		s.queue = nil
		s.finish(s.scrubbed(err))
		return
	}
	if done {
		s.drain()
		s.finish(s.endErr(s.dec.end(true)))
	}
}

// drainMaxBytes and drainWait bound how much of a body is read after the
// provider's end marker: normally only the end of the HTTP response (the last
// empty chunk) is left, and it arrives with the marker or right after it.
const drainMaxBytes = 4 << 10

var drainWait = 20 * time.Millisecond // a variable for tests

// drain reads the body to its end after the end marker, so that an HTTP/1.1
// connection goes back to the pool instead of being closed (which costs the
// next call a new connection, and a TLS handshake). A server that keeps the
// body open or sends more is cut off after drainWait or drainMaxBytes.
func (s *sseStream) drain() {
	t := time.AfterFunc(drainWait, s.cancel)
	defer t.Stop()
	s.events.drain(drainMaxBytes)
}

// endErr maps a decoder's end verdict to the stream's terminal result.
func (s *sseStream) endErr(err error) error {
	if err == nil {
		return io.EOF
	}
	return s.scrubbed(err)
}

// scrubbed removes the API key from a provider message before it travels on.
func (s *sseStream) scrubbed(err error) error {
	var e *Error
	if errors.As(err, &e) {
		e.Message = scrubMessage(e.Message, s.apiKey)
	}
	return err
}

// finish records the terminal result and releases the connection.
func (s *sseStream) finish(err error) {
	s.err = err
	s.release()
}

func (s *sseStream) release() {
	s.closeOnce.Do(func() {
		s.body.Close()
		s.cancel()
	})
}

// Usage is what the provider reported; complete after Recv returned io.EOF.
func (s *sseStream) Usage() Usage { return s.dec.usage() }

// Close aborts the request if still running and releases the body. It is
// idempotent and may be called while another goroutine is blocked in Recv.
func (s *sseStream) Close() error {
	s.closed.Store(true)
	s.release()
	return nil
}

// dropEmptyDeltas removes empty deltas in place: Recv never returns "".
func dropEmptyDeltas(ds []string) []string {
	out := ds[:0]
	for _, d := range ds {
		if d != "" {
			out = append(out, d)
		}
	}
	return out
}

// classifyTransport maps a failure of the HTTP exchange to the right error:
// the caller's cancellation stays a context.Canceled, deadlines become
// KindTimeout, everything else is KindUnavailable.
func classifyTransport(provider string, parent, ctx context.Context, timeout time.Duration, err error) error {
	switch {
	case errors.Is(parent.Err(), context.Canceled):
		return fmt.Errorf("llm %s: call cancelled: %w", provider, parent.Err())
	case parent.Err() != nil:
		return &Error{Provider: provider, Kind: KindTimeout, Message: "caller deadline exceeded", Err: parent.Err()}
	case errors.Is(context.Cause(ctx), errCallTimeout):
		return &Error{Provider: provider, Kind: KindTimeout,
			Message: fmt.Sprintf("no complete answer within %s", timeout), Err: context.DeadlineExceeded}
	}
	return &Error{Provider: provider, Kind: KindUnavailable, Message: "request failed", Err: err}
}

// httpStatusKind maps an HTTP status to an ErrorKind; authInvalid marks a 400
// that the provider flagged as a bad key.
func httpStatusKind(status int, authInvalid bool) ErrorKind {
	return fault.FromHTTPStatus(status, authInvalid)
}

// keyLikeToken matches API-key shaped tokens (OpenAI "sk-…", Google "AIza…") that
// providers sometimes echo, partly masked, in their error messages.
var keyLikeToken = regexp.MustCompile(`sk-[A-Za-z0-9_*\-]{4,}|AIza[0-9A-Za-z_\-]{8,}`)

// scrubMessage makes a provider message safe for logs: no key, no control
// characters, bounded length.
func scrubMessage(msg, key string) string {
	if key != "" {
		msg = strings.ReplaceAll(msg, key, "[redacted]")
	}
	msg = keyLikeToken.ReplaceAllString(msg, "[redacted]")
	msg = strings.Map(func(r rune) rune {
		if r < ' ' || r == 0x7f {
			return ' '
		}
		return r
	}, msg)
	msg = strings.TrimSpace(msg)
	if len(msg) > maxErrorMessage {
		cut := maxErrorMessage
		for cut > 0 && !utf8.RuneStart(msg[cut]) {
			cut--
		}
		msg = msg[:cut] + "…"
	}
	return msg
}

// errorBodyText is the message used when an error body is not the provider's JSON.
func errorBodyText(status int, body []byte) string {
	s := strings.TrimSpace(string(body))
	if s == "" {
		return http.StatusText(status)
	}
	return s
}

// cappedReader fails (rather than ending quietly) once more than left bytes were read.
type cappedReader struct {
	r    io.Reader
	left int64
}

func (c *cappedReader) Read(p []byte) (int, error) {
	if c.left <= 0 {
		return 0, fmt.Errorf("response exceeds %d bytes", maxStreamBytes)
	}
	if int64(len(p)) > c.left {
		p = p[:c.left]
	}
	n, err := c.r.Read(p)
	c.left -= int64(n)
	return n, err
}

// checkBaseURL checks an API root and returns it without a trailing slash.
func checkBaseURL(raw string) (string, error) {
	u, err := url.Parse(raw)
	if err != nil {
		return "", fmt.Errorf("base URL %q: %w", raw, err)
	}
	if u.Scheme != "http" && u.Scheme != "https" {
		return "", fmt.Errorf("base URL %q: scheme must be http or https", raw)
	}
	if u.Host == "" {
		return "", fmt.Errorf("base URL %q: missing host", raw)
	}
	if u.RawQuery != "" || u.Fragment != "" {
		return "", fmt.Errorf("base URL %q: must not have a query or fragment", raw)
	}
	return strings.TrimRight(raw, "/"), nil
}

// checkAPIKey trims surrounding whitespace (key files end in a newline) and
// rejects keys that could not travel in a header.
func checkAPIKey(key string) (string, error) {
	key = strings.TrimSpace(key)
	for _, r := range key {
		if r <= ' ' || r == 0x7f {
			return "", errors.New("api key contains whitespace or control characters")
		}
	}
	return key, nil
}

// checkImage checks the parts of an Image a provider relies on; the data
// itself is passed through untouched.
func checkImage(img *Image) error {
	if img == nil {
		return nil
	}
	if !strings.HasPrefix(img.MIME, "image/") {
		return fmt.Errorf("image MIME type %q is not image/*", img.MIME)
	}
	if img.Base64 == "" {
		return errors.New("image data is empty")
	}
	return nil
}
