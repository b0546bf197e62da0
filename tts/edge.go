package tts

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"regexp"
	"strconv"
	"strings"
	"sync/atomic"
	"time"
	"unicode/utf8"

	"github.com/coder/websocket"

	"github.com/nexy-server/nexy/audio"
)

// Edge read-aloud protocol constants, as the Python edge-tts package sends them.
const (
	// EdgeURL is the real Edge read-aloud WebSocket endpoint.
	EdgeURL = "wss://speech.platform.bing.com/consumer/speech/synthesize/readaloud/edge/v1"
	// EdgeTrustedClientToken is the public token the Edge browser embeds.
	EdgeTrustedClientToken = "6A5AA1D4EAFF4E9FB37E23D68491D6F4"
	// EdgeChromiumVersion is the Edge build whose headers we reproduce; the
	// service rejects Sec-MS-GEC-Version values it considers too old.
	EdgeChromiumVersion = "143.0.3650.75"
	// EdgeOutputFormat is the audio format requested in speech.config.
	EdgeOutputFormat = "audio-24khz-48kbitrate-mono-mp3"

	edgeOrigin     = "chrome-extension://jdiccldimpdaibmpdkjnbmckianbfold"
	edgeMP3Rate    = 24000
	edgeWinEpoch   = 11644473600 // seconds between 1601-01-01 and 1970-01-01
	edgeGECWindow  = 300         // Sec-MS-GEC changes every 5 minutes
	edgeMaxMessage = 64 * 1024   // the service refuses larger client messages
	edgeReadLimit  = 1 << 20     // largest server frame we accept
	edgeHeaderMax  = 8 * 1024    // largest header block inside a frame
	defaultTimeout = 30 * time.Second
	// defaultMaxAudioBytes bounds the encoded audio one call may receive.
	defaultMaxAudioBytes = 32 << 20
)

var (
	edgeUserAgent = "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/" +
		edgeMajor() + ".0.0.0 Safari/537.36 Edg/" + edgeMajor() + ".0.0.0"
	edgeRateRe   = regexp.MustCompile(`^[+-]\d{1,3}%$`)
	edgePitchRe  = regexp.MustCompile(`^[+-]\d{1,4}Hz$`)
	edgeShortRe  = regexp.MustCompile(`^([a-z]{2,3})-([A-Z]{2})-(.+Neural)$`)
	edgeLongRe   = regexp.MustCompile(`^Microsoft Server Speech Text to Speech Voice \([a-z]{2,3}-[A-Za-z]{2}(-[A-Za-z]+)?, [A-Za-z0-9]+\)$`)
	edgeLocaleRe = regexp.MustCompile(`^[a-z]{2,3}-[A-Z]{2}`)
)

func edgeMajor() string { return strings.SplitN(EdgeChromiumVersion, ".", 2)[0] }

// EdgeConfig configures the Microsoft Edge read-aloud provider (free, no key).
type EdgeConfig struct {
	URL           string        // WebSocket endpoint; "" = EdgeURL (tests point it at a local fake)
	Voice         string        // default voice; "" = "en-US-AriaNeural"
	Rate          string        // Edge syntax "+0%"; "" = "+0%"
	Pitch         string        // Edge syntax "+0Hz"; "" = "+0Hz"
	Volume        string        // Edge syntax "+0%"; "" = "+0%"
	Timeout       time.Duration // whole call incl. reading the stream; 0 = 30 s
	MaxAudioBytes int64         // MP3 bytes accepted per call; 0 = 32 MiB
}

// Edge speaks through Microsoft Edge's read-aloud WebSocket service.
type Edge struct {
	cfg  EdgeConfig
	base *url.URL
	now  func() time.Time
	// skew is the server clock minus ours in seconds, learnt from the Date
	// header of a 403, so the Sec-MS-GEC token matches the server's window.
	skew atomic.Int64
}

// NewEdge validates cfg, fills defaults and returns the provider.
func NewEdge(cfg EdgeConfig) (*Edge, error) {
	cfg = edgeDefaults(cfg)
	base, err := url.Parse(cfg.URL)
	if err != nil || (base.Scheme != "wss" && base.Scheme != "ws") || base.Host == "" {
		return nil, errorf("edge", "URL %q: want a ws:// or wss:// URL", cfg.URL)
	}
	if _, err := edgeVoiceName(cfg.Voice); err != nil {
		return nil, errorf("edge", "Voice: %w", err)
	}
	if !edgeRateRe.MatchString(cfg.Rate) {
		return nil, errorf("edge", "Rate %q: want a signed percentage like \"+0%%\" or \"-10%%\"", cfg.Rate)
	}
	if !edgeRateRe.MatchString(cfg.Volume) {
		return nil, errorf("edge", "Volume %q: want a signed percentage like \"+0%%\"", cfg.Volume)
	}
	if !edgePitchRe.MatchString(cfg.Pitch) {
		return nil, errorf("edge", "Pitch %q: want signed hertz like \"+0Hz\" or \"-5Hz\"", cfg.Pitch)
	}
	if cfg.Timeout < 0 {
		return nil, errorf("edge", "Timeout %v: must not be negative", cfg.Timeout)
	}
	if cfg.MaxAudioBytes < 0 {
		return nil, errorf("edge", "MaxAudioBytes %d: must not be negative", cfg.MaxAudioBytes)
	}
	return &Edge{cfg: cfg, base: base, now: time.Now}, nil
}

func edgeDefaults(cfg EdgeConfig) EdgeConfig {
	if cfg.URL == "" {
		cfg.URL = EdgeURL
	}
	if cfg.Voice == "" {
		cfg.Voice = "en-US-AriaNeural"
	}
	if cfg.Rate == "" {
		cfg.Rate = "+0%"
	}
	if cfg.Pitch == "" {
		cfg.Pitch = "+0Hz"
	}
	if cfg.Volume == "" {
		cfg.Volume = "+0%"
	}
	if cfg.Timeout == 0 {
		cfg.Timeout = defaultTimeout
	}
	if cfg.MaxAudioBytes == 0 {
		cfg.MaxAudioBytes = defaultMaxAudioBytes
	}
	return cfg
}

// Name implements Synthesizer.
func (e *Edge) Name() string { return "edge" }

// Synthesize implements Synthesizer. The first connection is opened before it
// returns, so handshake failures (403, DNS, refused) are returned here and a
// caller may retry before any audio was sent.
func (e *Edge) Synthesize(ctx context.Context, req Request) (io.ReadCloser, error) {
	text := edgeCleanText(req.Text)
	if strings.TrimSpace(text) == "" {
		return nil, badRequestf("edge", "empty text")
	}
	voice := req.Voice
	if voice == "" {
		voice = e.cfg.Voice
	}
	long, err := edgeVoiceName(voice)
	if err != nil {
		return nil, badRequestf("edge", "voice: %w", err)
	}
	lang, err := ssmlLang(req.Language, voice)
	if err != nil {
		return nil, badRequestf("edge", "%w", err)
	}
	p := edgeParams{voice: long, lang: lang, rate: e.cfg.Rate, pitch: e.cfg.Pitch, volume: e.cfg.Volume}
	chunks := edgeSplit(text, edgeMaxText(p))

	callCtx, cancel := context.WithTimeout(ctx, e.cfg.Timeout)
	conn, err := e.dial(callCtx)
	if err != nil {
		cancel()
		return nil, timeoutErr("edge", callCtx, e.cfg.Timeout, err)
	}
	pr, pw := io.Pipe()
	// A deadline or cancel must also unblock a producer stuck writing to a
	// slow reader; closing the writer with the cause does both.
	stop := context.AfterFunc(callCtx, func() {
		pw.CloseWithError(timeoutErr("edge", callCtx, e.cfg.Timeout, callCtx.Err()))
	})
	prod := newProducer()
	go func() {
		defer close(prod.done)
		defer stop()
		defer prod.settle()
		if err := e.run(callCtx, conn, chunks, p, pw, prod.settle); err != nil {
			if cerr := callCtx.Err(); cerr != nil {
				err = cerr // the root cause, not its echo (closed pipe/socket)
			}
			err = timeoutErr("edge", callCtx, e.cfg.Timeout, err)
			prod.fail(err)
			pw.CloseWithError(err)
		}
	}()
	pcm, err := audio.Decode(pr, audio.MP3, audio.Format{SampleRate: edgeMP3Rate, Channels: 1})
	if err != nil {
		cancel()
		pr.Close()
		<-prod.done
		return nil, errorf("edge", "decoder: %w", err)
	}
	s := newPCMStream("edge", pcm, cancel, func() { pr.Close() }, prod.wait, prod.cause)
	s.gone = prod.done
	return s, nil
}

// edgeParams is what one SSML request needs besides the text.
type edgeParams struct{ voice, lang, rate, pitch, volume string }

// run speaks every chunk on its own connection (the service handles one turn
// per connection) and feeds the MP3 payloads to w in arrival order. When the
// last turn ends, w is closed and ended is called before the close
// handshake, so the reader sees the end of audio without a network wait.
func (e *Edge) run(ctx context.Context, conn *websocket.Conn, chunks []string, p edgeParams, w *io.PipeWriter, ended func()) error {
	budget := e.cfg.MaxAudioBytes
	for i, chunk := range chunks {
		if i > 0 {
			var err error
			if conn, err = e.dial(ctx); err != nil {
				return err
			}
		}
		if err := edgeTurn(ctx, conn, chunk, p, w, &budget); err != nil {
			conn.CloseNow()
			return err
		}
		if i == len(chunks)-1 {
			w.Close()
			ended()
		}
		// The turn is complete: drop the socket without the close handshake,
		// which could hold the segment (and Close) for the library's 5 s
		// whenever the service does not answer it.
		conn.CloseNow()
	}
	return nil
}

// dial opens one WebSocket with the query and headers edge-tts sends. On a
// 403 whose Date header shows clock skew, it corrects the clock and retries
// once, as edge-tts does.
func (e *Edge) dial(ctx context.Context) (*websocket.Conn, error) {
	conn, resp, err := e.dialOnce(ctx)
	if err == nil {
		return conn, nil
	}
	if resp != nil && resp.StatusCode == http.StatusForbidden {
		if d, perr := http.ParseTime(resp.Header.Get("Date")); perr == nil {
			old := e.skew.Swap(int64(d.Sub(e.now()).Seconds()))
			if newSkew := e.skew.Load(); absDiff(old, newSkew) >= 1 {
				conn, resp, err = e.dialOnce(ctx)
				if err == nil {
					return conn, nil
				}
			}
		}
	}
	switch {
	case resp != nil && resp.StatusCode != http.StatusSwitchingProtocols:
		return nil, edgeStatusErr(resp.StatusCode, err)
	case resp != nil: // upgraded, but the handshake did not verify
		return nil, errorf("edge", "connect: HTTP %d: %w", resp.StatusCode, err)
	}
	return nil, errorf("edge", "connect: %w", err)
}

// edgeStatusErr explains a refused handshake. The kind comes from the status
// like every HTTP provider's (httpError): 401/403 Auth, 429 RateLimited,
// other 4xx BadRequest, 5xx Unavailable. Edge has no key of ours: a 403 that
// survives the clock-skew retry means the service no longer accepts the
// token this build derives (Sec-MS-GEC, its version header), which only a
// newer nexy fixes. So it is Auth (retrying cannot help), but the message
// must not send the operator to tts.api_key.
func edgeStatusErr(status int, err error) error {
	var what string
	switch {
	case status == http.StatusUnauthorized || status == http.StatusForbidden:
		what = "the Edge service refused the connection (its token check failed); if this persists, upgrading nexy may be needed"
	case status == http.StatusTooManyRequests:
		what = "the Edge service is rate limiting this server"
	case status >= 500:
		what = "the Edge service is failing"
	default:
		what = "the Edge service refused the handshake (check tts.base_url if you set it)"
	}
	return httpError("edge", status, "connect: HTTP %d: %s: %w", status, what, err)
}

func absDiff(a, b int64) int64 {
	if a > b {
		return a - b
	}
	return b - a
}

func (e *Edge) dialOnce(ctx context.Context) (*websocket.Conn, *http.Response, error) {
	u := *e.base
	q := u.Query()
	if q.Get("TrustedClientToken") == "" {
		q.Set("TrustedClientToken", EdgeTrustedClientToken)
	}
	q.Set("ConnectionId", randomHex(16, false))
	q.Set("Sec-MS-GEC", EdgeSecMSGEC(e.now().Add(time.Duration(e.skew.Load())*time.Second)))
	q.Set("Sec-MS-GEC-Version", "1-"+EdgeChromiumVersion)
	u.RawQuery = q.Encode()
	h := http.Header{}
	h.Set("Pragma", "no-cache")
	h.Set("Cache-Control", "no-cache")
	h.Set("Origin", edgeOrigin)
	h.Set("User-Agent", edgeUserAgent)
	h.Set("Accept-Encoding", "gzip, deflate, br")
	h.Set("Accept-Language", "en-US,en;q=0.9")
	h.Set("Cookie", "muid="+randomHex(16, true)+";")
	conn, resp, err := websocket.Dial(ctx, u.String(), &websocket.DialOptions{HTTPHeader: h})
	if err != nil {
		return nil, resp, err
	}
	conn.SetReadLimit(edgeReadLimit)
	return conn, resp, nil
}

// EdgeSecMSGEC returns the Sec-MS-GEC token for time t: the uppercase hex
// SHA-256 of the Windows file time (100 ns ticks since 1601) rounded down to
// 5 minutes, followed by the trusted client token.
func EdgeSecMSGEC(t time.Time) string {
	secs := t.Unix() + edgeWinEpoch
	secs -= secs % edgeGECWindow
	sum := sha256.Sum256([]byte(strconv.FormatInt(secs, 10) + "0000000" + EdgeTrustedClientToken))
	return strings.ToUpper(hex.EncodeToString(sum[:]))
}

// edgeTurn sends speech.config and the SSML request, then copies audio to w
// until turn.end. Anything else ending the turn is an error.
func edgeTurn(ctx context.Context, conn *websocket.Conn, text string, p edgeParams, w io.Writer, budget *int64) error {
	stamp := edgeTimestamp(time.Now())
	if err := conn.Write(ctx, websocket.MessageText, []byte(edgeConfigMessage(stamp))); err != nil {
		return fmt.Errorf("send speech.config: %w", err)
	}
	if err := conn.Write(ctx, websocket.MessageText, []byte(edgeSSMLMessage(randomHex(16, false), stamp, edgeSSML(text, p)))); err != nil {
		return fmt.Errorf("send ssml: %w", err)
	}
	gotAudio := false
	for {
		typ, msg, err := conn.Read(ctx)
		if err != nil {
			if st := websocket.CloseStatus(err); st != -1 {
				return fmt.Errorf("server closed the connection before turn.end (status %d)", st)
			}
			return fmt.Errorf("read frame: %w", err)
		}
		if typ == websocket.MessageBinary {
			payload, err := edgeAudioPayload(msg)
			if err != nil {
				return err
			}
			if len(payload) == 0 {
				continue
			}
			if *budget -= int64(len(payload)); *budget < 0 {
				return errors.New("audio exceeds MaxAudioBytes")
			}
			gotAudio = true
			if _, err := w.Write(payload); err != nil {
				return fmt.Errorf("feed decoder: %w", err)
			}
			continue
		}
		end, err := edgeControl(msg)
		if err != nil {
			return err
		}
		if end {
			if !gotAudio {
				return errors.New("turn ended without audio (check voice and prosody settings)")
			}
			return nil
		}
	}
}

// edgeAudioPayload validates a binary frame and returns its MP3 bytes. The
// service ends a stream with an empty Path:audio frame without Content-Type.
func edgeAudioPayload(msg []byte) ([]byte, error) {
	h, payload, err := parseEdgeBinary(msg)
	if err != nil {
		return nil, err
	}
	if h.path != "audio" {
		return nil, fmt.Errorf("binary frame with unexpected Path %q", h.path)
	}
	switch h.contentType {
	case "audio/mpeg":
		if len(payload) == 0 {
			return nil, errors.New("audio frame without audio data")
		}
		return payload, nil
	case "":
		if len(payload) != 0 {
			return nil, errors.New("audio frame with data but no Content-Type")
		}
		return nil, nil
	default:
		return nil, fmt.Errorf("audio frame with unexpected Content-Type %q", h.contentType)
	}
}

// edgeControl handles a text frame and reports whether the turn ended.
func edgeControl(msg []byte) (bool, error) {
	h, _, err := parseEdgeText(msg)
	if err != nil {
		return false, err
	}
	switch h.path {
	case "turn.end":
		return true, nil
	case "turn.start", "response", "audio.metadata":
		return false, nil
	default:
		return false, fmt.Errorf("unexpected text frame Path %q", h.path)
	}
}

// edgeHeaders are the frame headers we act on.
type edgeHeaders struct{ path, contentType, requestID string }

// parseEdgeText splits a text frame ("K:V\r\n…\r\n\r\nbody") into headers and body.
func parseEdgeText(msg []byte) (edgeHeaders, []byte, error) {
	i := bytes.Index(msg, []byte("\r\n\r\n"))
	if i < 0 {
		return edgeHeaders{}, nil, errors.New("text frame without header terminator")
	}
	h, err := parseEdgeHeaderBlock(msg[:i])
	return h, msg[i+4:], err
}

// parseEdgeBinary splits a binary frame (2-byte big-endian header length,
// header block, payload) into headers and payload.
func parseEdgeBinary(msg []byte) (edgeHeaders, []byte, error) {
	if len(msg) < 2 {
		return edgeHeaders{}, nil, errors.New("binary frame shorter than its header length")
	}
	n := int(msg[0])<<8 | int(msg[1])
	if n > len(msg)-2 {
		return edgeHeaders{}, nil, fmt.Errorf("binary frame header length %d exceeds frame (%d bytes)", n, len(msg))
	}
	h, err := parseEdgeHeaderBlock(msg[2 : 2+n])
	return h, msg[2+n:], err
}

func parseEdgeHeaderBlock(b []byte) (edgeHeaders, error) {
	var h edgeHeaders
	if len(b) > edgeHeaderMax {
		return h, fmt.Errorf("frame header block of %d bytes exceeds %d", len(b), edgeHeaderMax)
	}
	for line := range bytes.SplitSeq(b, []byte("\r\n")) {
		if len(line) == 0 {
			continue
		}
		k, v, ok := bytes.Cut(line, []byte(":"))
		if !ok {
			return h, fmt.Errorf("malformed frame header line %q", truncate(string(line), 64))
		}
		switch string(bytes.TrimSpace(k)) {
		case "Path":
			h.path = string(bytes.TrimSpace(v))
		case "Content-Type":
			h.contentType = string(bytes.TrimSpace(v))
		case "X-RequestId":
			h.requestID = string(bytes.TrimSpace(v))
		}
	}
	if h.path == "" {
		return h, errors.New("frame without Path header")
	}
	return h, nil
}

// edgeTimestamp formats t the way Edge's JavaScript Date.toString does in UTC.
func edgeTimestamp(t time.Time) string {
	return t.UTC().Format("Mon Jan 02 2006 15:04:05") + " GMT+0000 (Coordinated Universal Time)"
}

func edgeConfigMessage(stamp string) string {
	return "X-Timestamp:" + stamp + "\r\n" +
		"Content-Type:application/json; charset=utf-8\r\n" +
		"Path:speech.config\r\n\r\n" +
		`{"context":{"synthesis":{"audio":{"metadataoptions":{` +
		`"sentenceBoundaryEnabled":"true","wordBoundaryEnabled":"false"},` +
		`"outputFormat":"` + EdgeOutputFormat + `"}}}}` + "\r\n"
}

// edgeSSMLMessage frames the SSML. The trailing "Z" after the JavaScript-style
// timestamp is what Edge itself sends.
func edgeSSMLMessage(requestID, stamp, ssml string) string {
	return "X-RequestId:" + requestID + "\r\n" +
		"Content-Type:application/ssml+xml\r\n" +
		"X-Timestamp:" + stamp + "Z\r\n" +
		"Path:ssml\r\n\r\n" + ssml
}

func edgeSSML(text string, p edgeParams) string {
	return "<speak version='1.0' xmlns='http://www.w3.org/2001/10/synthesis' xml:lang='" + p.lang + "'>" +
		"<voice name='" + p.voice + "'>" +
		"<prosody pitch='" + p.pitch + "' rate='" + p.rate + "' volume='" + p.volume + "'>" +
		xmlEscape(text) + "</prosody></voice></speak>"
}

// edgeMaxText is how many escaped text bytes fit in one SSML message.
func edgeMaxText(p edgeParams) int {
	overhead := len(edgeSSMLMessage(randomHex(16, false), edgeTimestamp(time.Now()), edgeSSML("", p)))
	return edgeMaxMessage - overhead - 50
}

// edgeVoiceName turns "en-US-AriaNeural" into the long form Edge itself
// sends ("Microsoft Server Speech Text to Speech Voice (en-US, AriaNeural)").
func edgeVoiceName(v string) (string, error) {
	if m := edgeShortRe.FindStringSubmatch(v); m != nil {
		region, name := m[2], m[3]
		if i := strings.IndexByte(name, '-'); i >= 0 {
			region, name = region+"-"+name[:i], name[i+1:]
		}
		v = "Microsoft Server Speech Text to Speech Voice (" + m[1] + "-" + region + ", " + name + ")"
	}
	if !edgeLongRe.MatchString(v) {
		return "", fmt.Errorf("%q is not an Edge voice like \"en-US-AriaNeural\"", truncate(v, 80))
	}
	return v, nil
}

// edgeCleanText drops what the service refuses: invalid UTF-8 and control
// characters other than tab/newline/CR (vertical tab is common in OCR text).
func edgeCleanText(s string) string {
	s = strings.ToValidUTF8(s, " ")
	return strings.Map(func(r rune) rune {
		if (r < 0x20 && r != '\t' && r != '\n' && r != '\r') || r == 0xFFFE || r == 0xFFFF {
			return ' '
		}
		return r
	}, s)
}

// edgeSplit cuts text into pieces whose escaped form fits max bytes,
// preferring to cut at a space.
func edgeSplit(text string, max int) []string {
	var out []string
	for text = strings.TrimSpace(text); text != ""; text = strings.TrimSpace(text) {
		cut, space, size := 0, -1, 0
		for i, r := range text {
			w := escapedLen(r)
			if size+w > max {
				break
			}
			size += w
			if r == ' ' {
				space = i
			}
			cut = i + utf8.RuneLen(r)
		}
		if cut < len(text) && space > 0 {
			cut = space
		}
		if cut == 0 {
			_, cut = utf8.DecodeRuneInString(text)
		}
		out = append(out, text[:cut])
		text = text[cut:]
	}
	return out
}

func escapedLen(r rune) int {
	switch r {
	case '&':
		return 5
	case '<', '>':
		return 4
	case '"', '\'':
		return 6
	}
	return utf8.RuneLen(r)
}

// xmlEscape escapes the five XML special characters for text and
// single-quoted attributes alike.
func xmlEscape(s string) string {
	return xmlEscaper.Replace(s)
}

var xmlEscaper = strings.NewReplacer("&", "&amp;", "<", "&lt;", ">", "&gt;", `"`, "&quot;", "'", "&apos;")

var (
	langRe      = regexp.MustCompile(`^[A-Za-z]{2,3}(-[A-Za-z0-9]{2,8}){0,3}$`)
	voiceLangRe = regexp.MustCompile(`^([a-z]{2,3}-[A-Z]{2})-`)
)

// ssmlLang picks xml:lang: the request's hint, else the voice's locale, else en-US.
func ssmlLang(hint, voice string) (string, error) {
	if hint != "" {
		if !langRe.MatchString(hint) {
			return "", fmt.Errorf("language %q is not a BCP-47 tag like \"en-US\"", truncate(hint, 40))
		}
		return hint, nil
	}
	if m := voiceLangRe.FindStringSubmatch(voice); m != nil {
		return m[1], nil
	}
	if m := edgeLocaleRe.FindString(strings.TrimPrefix(voice, "Microsoft Server Speech Text to Speech Voice (")); m != "" {
		return m, nil
	}
	return "en-US", nil
}
