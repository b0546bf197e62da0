// Package ttstest holds local fakes of the TTS services, speaking their real
// wire formats and replaying recorded-format fixtures, for tests of package
// tts and of the server.
package ttstest

import (
	"bufio"
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"encoding/xml"
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/coder/websocket"
)

// Edge protocol values the fake insists on. They are spelled out here rather
// than imported so the fake checks the client against the protocol, not
// against itself.
const (
	edgeToken        = "6A5AA1D4EAFF4E9FB37E23D68491D6F4"
	edgeOrigin       = "chrome-extension://jdiccldimpdaibmpdkjnbmckianbfold"
	edgeOutputFormat = "audio-24khz-48kbitrate-mono-mp3"
	// EdgePath is the path of the read-aloud endpoint on the fake.
	EdgePath = "/consumer/speech/synthesize/readaloud/edge/v1"
)

var hex32 = regexp.MustCompile(`^[0-9a-f]{32}$`)

// EdgeFrame is one server frame of a recorded Edge session (one JSON line of
// testdata/tts/edge_session.jsonl).
type EdgeFrame struct {
	Frame string `json:"frame"` // "text", "audio" or "audio_end"
	Path  string `json:"path"`  // text frames: turn.start, response, audio.metadata, turn.end
	Body  string `json:"body"`  // text frames: JSON body with {serviceTag} {streamId} {text} {textLength}
	Bytes int    `json:"bytes"` // audio frames: the next Bytes of the MP3; -1 = the rest
}

// LoadEdgeSession reads a JSON-lines session recording.
func LoadEdgeSession(path string) ([]EdgeFrame, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	var frames []EdgeFrame
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 64*1024), 1<<20)
	for sc.Scan() {
		if len(bytes.TrimSpace(sc.Bytes())) == 0 {
			continue
		}
		var fr EdgeFrame
		if err := json.Unmarshal(sc.Bytes(), &fr); err != nil {
			return nil, fmt.Errorf("%s: %w", path, err)
		}
		frames = append(frames, fr)
	}
	return frames, sc.Err()
}

// EdgeOptions configures the fake Edge service.
type EdgeOptions struct {
	Session []EdgeFrame // frames replayed after the client's SSML request
	MP3     []byte      // audio the "audio" frames carry
	// StopAfter > 0 ends the connection after that many session frames,
	// as a server failing mid-turn would (no turn.end).
	StopAfter int
	// HoldAfter > 0 stops sending after that many frames and waits for the
	// client to go away; Gone is closed when it does.
	HoldAfter int
	// ClockSkew shifts the fake's clock; Sec-MS-GEC is checked against it and
	// a 403 carries the shifted time in its Date header, like the real service.
	ClockSkew time.Duration
}

// EdgeRequest is what the fake saw from one client connection.
type EdgeRequest struct {
	Query       url.Values
	Header      http.Header
	Config      string // speech.config body
	SSML        string // raw SSML body
	RequestID   string
	Lang, Voice string
	Rate, Pitch string
	Volume      string
	Text        string // the spoken text after XML unescaping
}

// EdgeServer is a local fake of the Edge read-aloud WebSocket service.
type EdgeServer struct {
	URL  string        // ws:// URL of the endpoint
	Gone chan struct{} // closed when the fake sees a client leave mid-session

	opts     EdgeOptions
	srv      *httptest.Server
	mu       sync.Mutex
	reqs     []EdgeRequest
	errs     []error
	rejected int
	goneOnce sync.Once
}

// NewEdgeServer starts the fake; it is stopped by t.Cleanup.
func NewEdgeServer(t testing.TB, opts EdgeOptions) *EdgeServer {
	t.Helper()
	s := &EdgeServer{opts: opts, Gone: make(chan struct{})}
	s.srv = httptest.NewServer(http.HandlerFunc(s.handle))
	t.Cleanup(s.srv.Close)
	s.URL = "ws" + strings.TrimPrefix(s.srv.URL, "http") + EdgePath
	return s
}

// Requests returns the client requests seen so far.
func (s *EdgeServer) Requests() []EdgeRequest {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]EdgeRequest(nil), s.reqs...)
}

// Rejected counts handshakes refused with 403 for a stale Sec-MS-GEC.
func (s *EdgeServer) Rejected() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.rejected
}

// Err returns every protocol violation the fake observed, joined.
func (s *EdgeServer) Err() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	return errors.Join(s.errs...)
}

func (s *EdgeServer) fail(format string, args ...any) error {
	err := fmt.Errorf(format, args...)
	s.mu.Lock()
	s.errs = append(s.errs, err)
	s.mu.Unlock()
	return err
}

// SecMSGEC is the fake's own derivation of the token for time t.
func SecMSGEC(t time.Time) string {
	ticks := (t.Unix() + 11644473600) / 300 * 300 * 10_000_000
	sum := sha256.Sum256([]byte(strconv.FormatInt(ticks, 10) + edgeToken))
	return strings.ToUpper(hex.EncodeToString(sum[:]))
}

func (s *EdgeServer) handle(w http.ResponseWriter, r *http.Request) {
	now := time.Now().Add(s.opts.ClockSkew)
	if !s.checkHandshake(w, r, now) {
		return
	}
	// The fake checks Origin itself (above); the library would refuse a
	// chrome-extension origin as cross-site.
	conn, err := websocket.Accept(w, r, &websocket.AcceptOptions{InsecureSkipVerify: true})
	if err != nil {
		s.fail("accept: %v", err)
		return
	}
	defer conn.CloseNow()
	conn.SetReadLimit(1 << 20)
	ctx := r.Context()
	req, err := s.readRequest(ctx, conn, r)
	if err != nil {
		conn.Close(websocket.StatusPolicyViolation, "bad request")
		return
	}
	s.mu.Lock()
	s.reqs = append(s.reqs, req)
	s.mu.Unlock()
	s.replay(ctx, conn, req)
}

func (s *EdgeServer) checkHandshake(w http.ResponseWriter, r *http.Request, now time.Time) bool {
	q := r.URL.Query()
	var bad []string
	if q.Get("TrustedClientToken") != edgeToken {
		bad = append(bad, "TrustedClientToken")
	}
	if !hex32.MatchString(q.Get("ConnectionId")) {
		bad = append(bad, "ConnectionId")
	}
	if !regexp.MustCompile(`^1-\d+\.\d+\.\d+\.\d+$`).MatchString(q.Get("Sec-MS-GEC-Version")) {
		bad = append(bad, "Sec-MS-GEC-Version")
	}
	if r.Header.Get("Origin") != edgeOrigin {
		bad = append(bad, "Origin")
	}
	if !strings.Contains(r.Header.Get("User-Agent"), "Edg/") {
		bad = append(bad, "User-Agent")
	}
	if !regexp.MustCompile(`^muid=[0-9A-F]{32};$`).MatchString(r.Header.Get("Cookie")) {
		bad = append(bad, "Cookie")
	}
	if len(bad) > 0 {
		s.fail("handshake: bad %v", bad)
		http.Error(w, "bad handshake", http.StatusBadRequest)
		return false
	}
	gec := q.Get("Sec-MS-GEC")
	// Accept the neighbouring windows too, so a test straddling a 5-minute
	// boundary does not flake; the real service is at least this lenient.
	if gec != SecMSGEC(now) && gec != SecMSGEC(now.Add(-5*time.Minute)) && gec != SecMSGEC(now.Add(5*time.Minute)) {
		s.mu.Lock()
		s.rejected++
		s.mu.Unlock()
		w.Header().Set("Date", now.UTC().Format(http.TimeFormat))
		http.Error(w, "", http.StatusForbidden)
		return false
	}
	return true
}

// readRequest reads and checks speech.config then the SSML request.
func (s *EdgeServer) readRequest(ctx context.Context, conn *websocket.Conn, r *http.Request) (EdgeRequest, error) {
	req := EdgeRequest{Query: r.URL.Query(), Header: r.Header.Clone()}
	h, body, err := s.readText(ctx, conn)
	if err != nil {
		return req, err
	}
	if h["Path"] != "speech.config" || h["X-Timestamp"] == "" || !strings.HasPrefix(h["Content-Type"], "application/json") {
		return req, s.fail("first frame: want speech.config with X-Timestamp and JSON, got headers %v", h)
	}
	var cfg struct {
		Context struct {
			Synthesis struct {
				Audio struct {
					OutputFormat string `json:"outputFormat"`
				} `json:"audio"`
			} `json:"synthesis"`
		} `json:"context"`
	}
	if err := json.Unmarshal(bytes.TrimSpace(body), &cfg); err != nil || cfg.Context.Synthesis.Audio.OutputFormat != edgeOutputFormat {
		return req, s.fail("speech.config: want outputFormat %s, got %q (%v)", edgeOutputFormat, body, err)
	}
	req.Config = string(body)
	h, body, err = s.readText(ctx, conn)
	if err != nil {
		return req, err
	}
	if h["Path"] != "ssml" || !hex32.MatchString(h["X-RequestId"]) || h["Content-Type"] != "application/ssml+xml" || !strings.HasSuffix(h["X-Timestamp"], "Z") {
		return req, s.fail("second frame: want ssml with X-RequestId, ssml+xml and X-Timestamp…Z, got headers %v", h)
	}
	req.RequestID, req.SSML = h["X-RequestId"], string(body)
	return req, s.parseSSML(&req)
}

func (s *EdgeServer) readText(ctx context.Context, conn *websocket.Conn) (map[string]string, []byte, error) {
	typ, msg, err := conn.Read(ctx)
	if err != nil {
		return nil, nil, s.fail("read client frame: %v", err)
	}
	if typ != websocket.MessageText {
		return nil, nil, s.fail("client sent a binary frame")
	}
	head, body, ok := bytes.Cut(msg, []byte("\r\n\r\n"))
	if !ok {
		return nil, nil, s.fail("client frame without header terminator: %q", msg)
	}
	h := map[string]string{}
	for _, line := range strings.Split(string(head), "\r\n") {
		k, v, ok := strings.Cut(line, ":")
		if !ok {
			return nil, nil, s.fail("client frame header line %q", line)
		}
		h[k] = v
	}
	return h, body, nil
}

func (s *EdgeServer) parseSSML(req *EdgeRequest) error {
	var doc struct {
		XMLName xml.Name `xml:"http://www.w3.org/2001/10/synthesis speak"`
		Version string   `xml:"version,attr"`
		Lang    string   `xml:"http://www.w3.org/XML/1998/namespace lang,attr"`
		Voice   struct {
			Name    string `xml:"name,attr"`
			Prosody struct {
				Pitch  string `xml:"pitch,attr"`
				Rate   string `xml:"rate,attr"`
				Volume string `xml:"volume,attr"`
				Text   string `xml:",chardata"`
				Inner  []byte `xml:",innerxml"`
			} `xml:"prosody"`
		} `xml:"voice"`
	}
	if err := xml.Unmarshal([]byte(req.SSML), &doc); err != nil {
		return s.fail("SSML is not well-formed XML: %v: %s", err, req.SSML)
	}
	p := doc.Voice.Prosody
	if bytes.ContainsRune(p.Inner, '<') {
		return s.fail("SSML text contains markup (unescaped?): %s", p.Inner)
	}
	if doc.Version != "1.0" || doc.Voice.Name == "" {
		return s.fail("SSML: want version 1.0 and a voice name: %s", req.SSML)
	}
	req.Lang, req.Voice, req.Rate, req.Pitch, req.Volume, req.Text = doc.Lang, doc.Voice.Name, p.Rate, p.Pitch, p.Volume, p.Text
	return nil
}

// replay sends the recorded session, addressed to this request.
func (s *EdgeServer) replay(ctx context.Context, conn *websocket.Conn, req EdgeRequest) {
	streamID := strings.ToUpper(req.RequestID)
	textJSON, _ := json.Marshal(req.Text)
	sub := strings.NewReplacer("{serviceTag}", req.RequestID, "{streamId}", streamID,
		"{text}", string(textJSON[1:len(textJSON)-1]), "{textLength}", strconv.Itoa(len([]rune(req.Text))))
	mp3 := s.opts.MP3
	for i, fr := range s.opts.Session {
		if s.opts.StopAfter > 0 && i == s.opts.StopAfter {
			conn.Close(websocket.StatusInternalError, "synthesis failed")
			return
		}
		if s.opts.HoldAfter > 0 && i == s.opts.HoldAfter {
			s.hold(ctx, conn)
			return
		}
		var err error
		switch fr.Frame {
		case "text":
			msg := "X-RequestId:" + req.RequestID + "\r\nContent-Type:application/json; charset=utf-8\r\nPath:" + fr.Path + "\r\n\r\n" + sub.Replace(fr.Body)
			err = conn.Write(ctx, websocket.MessageText, []byte(msg))
		case "audio":
			n := fr.Bytes
			if n < 0 || n > len(mp3) {
				n = len(mp3)
			}
			err = conn.Write(ctx, websocket.MessageBinary, binaryFrame(req.RequestID, streamID, "audio/mpeg", mp3[:n]))
			mp3 = mp3[n:]
		case "audio_end":
			err = conn.Write(ctx, websocket.MessageBinary, binaryFrame(req.RequestID, streamID, "", nil))
		default:
			s.fail("session frame %d: unknown kind %q", i, fr.Frame)
			return
		}
		if err != nil {
			s.markGone() // the client went away; not a protocol error
			return
		}
	}
	// Like the service, wait for the client to close the connection.
	cctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	conn.Read(cctx)
}

// hold keeps the connection open until the client closes it.
func (s *EdgeServer) hold(ctx context.Context, conn *websocket.Conn) {
	for {
		if _, _, err := conn.Read(ctx); err != nil {
			s.markGone()
			return
		}
	}
}

func (s *EdgeServer) markGone() { s.goneOnce.Do(func() { close(s.Gone) }) }

// binaryFrame builds an Edge audio frame: 2-byte big-endian header length,
// the header block, then the payload.
func binaryFrame(requestID, streamID, contentType string, payload []byte) []byte {
	head := "X-RequestId:" + requestID + "\r\n"
	if contentType != "" {
		head += "Content-Type:" + contentType + "\r\n"
	}
	head += "X-StreamId:" + streamID + "\r\nPath:audio\r\n"
	out := make([]byte, 0, 2+len(head)+len(payload))
	out = append(out, byte(len(head)>>8), byte(len(head)))
	out = append(out, head...)
	return append(out, payload...)
}
