package tts

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"math"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/nexy-server/nexy/audio"
	"github.com/nexy-server/nexy/internal/fault"
	"github.com/nexy-server/nexy/tts/ttstest"
)

// Helpers shared by the provider tests (edge, azure, openai, command); the
// "prov" prefix keeps them clear of other test files in this package.

func provFixture(t testing.TB, name string) []byte {
	t.Helper()
	b, err := os.ReadFile(filepath.Join("..", "testdata", "tts", name))
	if err != nil {
		t.Fatalf("fixture: %v", err)
	}
	return b
}

// provReadAll drains a synthesis stream, failing the test on a read error.
func provReadAll(t testing.TB, rc io.ReadCloser) []byte {
	t.Helper()
	defer rc.Close()
	pcm, err := io.ReadAll(io.LimitReader(rc, 64<<20))
	if err != nil {
		t.Fatalf("read PCM: %v", err)
	}
	return pcm
}

// provCheckSpeech asserts pcm looks like speech of about want at 48 kHz.
func provCheckSpeech(t testing.TB, pcm []byte, want time.Duration) {
	t.Helper()
	got := audio.Duration(len(pcm))
	if got < want*8/10 || got > want*12/10 {
		t.Errorf("duration %v (%d bytes at 48 kHz), want about %v", got, len(pcm), want)
	}
	if rms := provRMS(pcm); rms < 300 {
		t.Errorf("PCM RMS %.0f: looks silent", rms)
	}
}

func provRMS(pcm []byte) float64 {
	var sum float64
	n := len(pcm) / 2
	for i := 0; i < n; i++ {
		s := float64(int16(binary.LittleEndian.Uint16(pcm[2*i:])))
		sum += s * s
	}
	if n == 0 {
		return 0
	}
	return math.Sqrt(sum / float64(n))
}

// provWait waits for ch, failing (not hanging) if it never closes.
func provWait(t testing.TB, ch <-chan struct{}, what string) {
	t.Helper()
	select {
	case <-ch:
	case <-time.After(20 * time.Second):
		t.Fatalf("%s never happened", what)
	}
}

func newEdgeFake(t *testing.T, mod func(*ttstest.EdgeOptions)) (*ttstest.EdgeServer, *Edge) {
	t.Helper()
	session, err := ttstest.LoadEdgeSession(filepath.Join("..", "testdata", "tts", "edge_session.jsonl"))
	if err != nil {
		t.Fatal(err)
	}
	opts := ttstest.EdgeOptions{Session: session, MP3: provFixture(t, "edge_hello.mp3")}
	if mod != nil {
		mod(&opts)
	}
	srv := ttstest.NewEdgeServer(t, opts)
	e, err := NewEdge(EdgeConfig{URL: srv.URL, Rate: "+10%", Pitch: "-5Hz", Volume: "+0%"})
	if err != nil {
		t.Fatal(err)
	}
	return srv, e
}

func TestEdgeSynthesize(t *testing.T) {
	srv, e := newEdgeFake(t, nil)
	rc, err := e.Synthesize(context.Background(), Request{Text: "Hello from Nexy."})
	if err != nil {
		t.Fatal(err)
	}
	pcm := provReadAll(t, rc)
	// edge_hello.mp3: 55 MPEG-2 frames of 576 samples at 24 kHz = 1.32 s.
	provCheckSpeech(t, pcm, 1320*time.Millisecond)
	if err := srv.Err(); err != nil {
		t.Fatalf("fake saw protocol errors: %v", err)
	}
	reqs := srv.Requests()
	if len(reqs) != 1 {
		t.Fatalf("fake saw %d requests, want 1", len(reqs))
	}
	r := reqs[0]
	if r.Voice != "Microsoft Server Speech Text to Speech Voice (en-US, AriaNeural)" || r.Lang != "en-US" {
		t.Errorf("voice %q lang %q", r.Voice, r.Lang)
	}
	if r.Rate != "+10%" || r.Pitch != "-5Hz" || r.Volume != "+0%" || r.Text != "Hello from Nexy." {
		t.Errorf("prosody rate=%q pitch=%q volume=%q text=%q", r.Rate, r.Pitch, r.Volume, r.Text)
	}
	if gec := r.Query.Get("Sec-MS-GEC"); gec != ttstest.SecMSGEC(time.Now()) && gec != ttstest.SecMSGEC(time.Now().Add(-5*time.Minute)) {
		t.Errorf("Sec-MS-GEC %s does not match the fake's derivation", gec)
	}
}

func TestEdgeRequestVoiceAndLanguage(t *testing.T) {
	srv, e := newEdgeFake(t, nil)
	rc, err := e.Synthesize(context.Background(), Request{Text: "Привет", Voice: "ru-RU-SvetlanaNeural"})
	if err != nil {
		t.Fatal(err)
	}
	provReadAll(t, rc)
	r := srv.Requests()[0]
	if r.Voice != "Microsoft Server Speech Text to Speech Voice (ru-RU, SvetlanaNeural)" || r.Lang != "ru-RU" || r.Text != "Привет" {
		t.Errorf("voice %q lang %q text %q", r.Voice, r.Lang, r.Text)
	}
}

func TestEdgeSSMLEscaping(t *testing.T) {
	srv, e := newEdgeFake(t, nil)
	text := `Tom & Jerry <b>say</b> "hi" it's 3 > 2`
	rc, err := e.Synthesize(context.Background(), Request{Text: text})
	if err != nil {
		t.Fatal(err)
	}
	provReadAll(t, rc)
	if err := srv.Err(); err != nil {
		t.Fatal(err)
	}
	r := srv.Requests()[0]
	if r.Text != text {
		t.Errorf("text after XML round trip %q, want %q", r.Text, text)
	}
	for _, want := range []string{"Tom &amp; Jerry &lt;b&gt;say&lt;/b&gt; &quot;hi&quot; it&apos;s 3 &gt; 2"} {
		if !strings.Contains(r.SSML, want) {
			t.Errorf("SSML %q lacks %q", r.SSML, want)
		}
	}
}

func TestEdgeCancelClosesSocket(t *testing.T) {
	srv, e := newEdgeFake(t, func(o *ttstest.EdgeOptions) { o.HoldAfter = 5 })
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	rc, err := e.Synthesize(ctx, Request{Text: "Hello from Nexy."})
	if err != nil {
		t.Fatal(err)
	}
	buf := make([]byte, 4096)
	if _, err := io.ReadFull(rc, buf); err != nil {
		t.Fatalf("first PCM: %v", err)
	}
	cancel()
	provWait(t, srv.Gone, "fake observing the client closing the socket")
	_, err = io.Copy(io.Discard, rc)
	if !errors.Is(err, context.Canceled) {
		t.Errorf("read after cancel: %v, want context.Canceled", err)
	}
	rc.Close()
}

func TestEdgeCloseClosesSocket(t *testing.T) {
	srv, e := newEdgeFake(t, func(o *ttstest.EdgeOptions) { o.HoldAfter = 5 })
	rc, err := e.Synthesize(context.Background(), Request{Text: "Hello from Nexy."})
	if err != nil {
		t.Fatal(err)
	}
	buf := make([]byte, 100)
	if _, err := io.ReadFull(rc, buf); err != nil {
		t.Fatalf("first PCM: %v", err)
	}
	rc.Close() // returns only once the producer goroutine is gone
	provWait(t, srv.Gone, "fake observing the client closing the socket")
	if _, err := rc.Read(buf); err == nil {
		t.Error("Read after Close succeeded")
	}
}

func TestEdgeServerClosesEarly(t *testing.T) {
	_, e := newEdgeFake(t, func(o *ttstest.EdgeOptions) { o.StopAfter = 6 })
	rc, err := e.Synthesize(context.Background(), Request{Text: "Hello from Nexy."})
	if err != nil {
		t.Fatal(err)
	}
	defer rc.Close()
	n, err := io.Copy(io.Discard, rc)
	if err == nil || !strings.Contains(err.Error(), "before turn.end") {
		t.Fatalf("after %d bytes: err %v, want a 'before turn.end' error", n, err)
	}
	if n == 0 {
		t.Error("no PCM before the failure; the test should fail mid-stream")
	}
}

func TestEdgeNoAudio(t *testing.T) {
	_, e := newEdgeFake(t, func(o *ttstest.EdgeOptions) {
		var kept []ttstest.EdgeFrame
		for _, f := range o.Session {
			if f.Frame == "text" {
				kept = append(kept, f)
			}
		}
		o.Session = kept
	})
	rc, err := e.Synthesize(context.Background(), Request{Text: "Hello"})
	if err != nil {
		t.Fatal(err)
	}
	defer rc.Close()
	if _, err := io.Copy(io.Discard, rc); err == nil || !strings.Contains(err.Error(), "without audio") {
		t.Fatalf("err %v, want 'without audio'", err)
	}
}

func TestEdgeMaxAudioBytes(t *testing.T) {
	srv, _ := newEdgeFake(t, nil)
	e, err := NewEdge(EdgeConfig{URL: srv.URL, MaxAudioBytes: 3000})
	if err != nil {
		t.Fatal(err)
	}
	rc, err := e.Synthesize(context.Background(), Request{Text: "Hello"})
	if err != nil {
		t.Fatal(err)
	}
	defer rc.Close()
	if _, err := io.Copy(io.Discard, rc); err == nil || !strings.Contains(err.Error(), "MaxAudioBytes") {
		t.Fatalf("err %v, want MaxAudioBytes", err)
	}
}

func TestEdgeClockSkewRetry(t *testing.T) {
	srv, e := newEdgeFake(t, func(o *ttstest.EdgeOptions) { o.ClockSkew = time.Hour })
	for i := 0; i < 2; i++ {
		rc, err := e.Synthesize(context.Background(), Request{Text: "Hello"})
		if err != nil {
			t.Fatal(err)
		}
		provReadAll(t, rc)
	}
	// The first call learns the skew from the 403's Date header; the second
	// call uses it straight away.
	if got := srv.Rejected(); got != 1 {
		t.Errorf("fake rejected %d handshakes, want 1", got)
	}
}

func TestEdgeHandshakeRejected(t *testing.T) {
	e, err := NewEdge(EdgeConfig{URL: "ws://127.0.0.1:1/edge"})
	if err != nil {
		t.Fatal(err)
	}
	_, err = e.Synthesize(context.Background(), Request{Text: "Hello"})
	if err == nil || !strings.Contains(err.Error(), "tts edge: connect") {
		t.Fatalf("err %v, want a connect error", err)
	}
	if k := KindOf(err); k != fault.Unavailable {
		t.Errorf("refused connection: kind %v, want unavailable", k)
	}
}

// edgeRefuser answers every handshake with status, as the real service
// does when it refuses a connection. With skew set, a 403 carries a Date
// that far from ours, so the provider corrects its clock and retries once.
func edgeRefuser(t *testing.T, status int, skew time.Duration) (*Edge, *atomic.Int32) {
	t.Helper()
	var seen atomic.Int32
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		seen.Add(1)
		if skew != 0 {
			w.Header().Set("Date", time.Now().Add(skew).UTC().Format(http.TimeFormat))
		}
		http.Error(w, "refused", status)
	}))
	t.Cleanup(srv.Close)
	e, err := NewEdge(EdgeConfig{URL: "ws" + strings.TrimPrefix(srv.URL, "http") + "/edge", Timeout: 10 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	return e, &seen
}

// TestEdgeHandshakeKinds: a refused handshake is classified by its status
// like the HTTP providers; a 403 that survives the clock-skew retry is Auth
// but does not send the operator to tts.api_key (Edge has no key of ours).
func TestEdgeHandshakeKinds(t *testing.T) {
	cases := []struct {
		status int
		skew   time.Duration
		kind   fault.Kind
		dials  int32
		want   string
	}{
		{http.StatusForbidden, time.Hour, fault.Auth, 2, "upgrading nexy may be needed"},
		{http.StatusForbidden, 0, fault.Auth, 1, "the Edge service refused the connection"},
		{http.StatusUnauthorized, 0, fault.Auth, 1, "the Edge service refused the connection"},
		{http.StatusTooManyRequests, 0, fault.RateLimited, 1, "rate limiting"},
		{http.StatusInternalServerError, 0, fault.Unavailable, 1, "failing"},
		{http.StatusServiceUnavailable, 0, fault.Unavailable, 1, "failing"},
		{http.StatusNotFound, 0, fault.BadRequest, 1, "tts.base_url"},
	}
	for _, c := range cases {
		e, seen := edgeRefuser(t, c.status, c.skew)
		ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
		rc, err := e.Synthesize(ctx, Request{Text: "Hello"})
		cancel()
		if err == nil {
			rc.Close()
			t.Errorf("HTTP %d: handshake accepted", c.status)
			continue
		}
		var te *Error
		if !errors.As(err, &te) || te.Status != c.status || KindOf(err) != c.kind {
			t.Errorf("HTTP %d: kind %v status %v (%v), want %v", c.status, KindOf(err), te, err, c.kind)
		}
		if KindOf(fmt.Errorf("turn: %w", err)) != c.kind {
			t.Errorf("HTTP %d: wrapping lost the kind", c.status)
		}
		msg := err.Error()
		if !strings.HasPrefix(msg, "tts edge: connect: HTTP "+strconv.Itoa(c.status)) || !strings.Contains(msg, c.want) {
			t.Errorf("HTTP %d: %q, want %q", c.status, msg, c.want)
		}
		if strings.Contains(msg, "tts.api_key") {
			t.Errorf("HTTP %d: %q sends the operator to tts.api_key, which edge does not use", c.status, msg)
		}
		if got := seen.Load(); got != c.dials {
			t.Errorf("HTTP %d: %d handshakes, want %d", c.status, got, c.dials)
		}
	}
}

func TestEdgeSecMSGEC(t *testing.T) {
	// 2024-01-01T00:00:00Z is 1704067200 s after the Unix epoch; adding the
	// 11644473600 s from 1601-01-01 gives 13348540800 s, already a multiple of
	// 300, i.e. 133485408000000000 ticks of 100 ns. The token is
	//   printf '%s' 1334854080000000006A5AA1D4EAFF4E9FB37E23D68491D6F4 | sha256sum
	// upper-cased. Any time in the same 5 minutes gives the same token.
	const want = "2AC0A57C1214B9458F8725BB7800499BB594EC29DDA83424BC14661707141F2F"
	base := time.Date(2024, 1, 1, 0, 0, 0, 0, time.UTC)
	for _, tm := range []time.Time{base, base.Add(4*time.Minute + 59*time.Second), base.In(time.FixedZone("X", 3*3600))} {
		if got := EdgeSecMSGEC(tm); got != want {
			t.Errorf("EdgeSecMSGEC(%v) = %s, want %s", tm, got, want)
		}
	}
	if EdgeSecMSGEC(base.Add(5*time.Minute)) == want {
		t.Error("token did not change after 5 minutes")
	}
}

func TestEdgeConfigValidation(t *testing.T) {
	bad := map[string]EdgeConfig{
		"URL":           {URL: "https://example.com/x"},
		"Voice":         {Voice: "Aria' onload='x"},
		"Rate":          {Rate: "fast"},
		"Pitch":         {Pitch: "+5%"},
		"Volume":        {Volume: "loud"},
		"Timeout":       {Timeout: -time.Second},
		"MaxAudioBytes": {MaxAudioBytes: -1},
	}
	for field, cfg := range bad {
		if _, err := NewEdge(cfg); err == nil || !strings.Contains(err.Error(), field) {
			t.Errorf("%s: err %v, want one naming the field", field, err)
		}
	}
	e, err := NewEdge(EdgeConfig{})
	if err != nil {
		t.Fatal(err)
	}
	if e.cfg.URL != EdgeURL || e.cfg.Voice != "en-US-AriaNeural" || e.cfg.Timeout != 30*time.Second || e.Name() != "edge" {
		t.Errorf("defaults: %+v", e.cfg)
	}
	if _, err := e.Synthesize(context.Background(), Request{Text: " \n\t"}); err == nil || !strings.Contains(err.Error(), "empty text") {
		t.Errorf("empty text: %v", err)
	}
	if _, err := e.Synthesize(context.Background(), Request{Text: "x", Voice: "bad<voice>"}); err == nil {
		t.Error("bad request voice accepted")
	}
	if _, err := e.Synthesize(context.Background(), Request{Text: "x", Language: "en_US'"}); err == nil {
		t.Error("bad language accepted")
	}
}

func TestEdgeVoiceName(t *testing.T) {
	cases := map[string]string{
		"en-US-AriaNeural":             "Microsoft Server Speech Text to Speech Voice (en-US, AriaNeural)",
		"zh-CN-liaoning-XiaobeiNeural": "Microsoft Server Speech Text to Speech Voice (zh-CN-liaoning, XiaobeiNeural)",
		"Microsoft Server Speech Text to Speech Voice (en-GB, SoniaNeural)": "Microsoft Server Speech Text to Speech Voice (en-GB, SoniaNeural)",
	}
	for in, want := range cases {
		if got, err := edgeVoiceName(in); err != nil || got != want {
			t.Errorf("edgeVoiceName(%q) = %q, %v; want %q", in, got, err, want)
		}
	}
}

func TestEdgeSplit(t *testing.T) {
	text := strings.Repeat("word & <more> ", 20) + strings.Repeat("x", 50)
	parts := edgeSplit(text, 40)
	if len(parts) < 2 {
		t.Fatalf("got %d parts", len(parts))
	}
	var joined []string
	for _, p := range parts {
		if n := len(xmlEscape(p)); n > 40 {
			t.Errorf("part %q escapes to %d bytes > 40", p, n)
		}
		joined = append(joined, p)
	}
	if strings.Join(strings.Fields(strings.Join(joined, " ")), "") != strings.Join(strings.Fields(text), "") {
		t.Error("split lost or reordered text")
	}
}

func TestParseEdgeFrames(t *testing.T) {
	h, body, err := parseEdgeText([]byte("X-RequestId:abc\r\nContent-Type:application/json; charset=utf-8\r\nPath:turn.end\r\n\r\n{}"))
	if err != nil || h.path != "turn.end" || h.requestID != "abc" || string(body) != "{}" {
		t.Errorf("text: %+v %q %v", h, body, err)
	}
	head := "Content-Type:audio/mpeg\r\nPath:audio\r\n"
	msg := append([]byte{0, byte(len(head))}, head+"MP3"...)
	h, payload, err := parseEdgeBinary(msg)
	if err != nil || h.path != "audio" || h.contentType != "audio/mpeg" || string(payload) != "MP3" {
		t.Errorf("binary: %+v %q %v", h, payload, err)
	}
	for _, bad := range [][]byte{{0}, {0, 9, 'P'}, append([]byte{0, 4}, "oops"...)} {
		if _, _, err := parseEdgeBinary(bad); err == nil {
			t.Errorf("parseEdgeBinary(%q) accepted", bad)
		}
	}
	if _, _, err := parseEdgeText([]byte("Path:turn.end")); err == nil {
		t.Error("text frame without terminator accepted")
	}
}

func FuzzParseEdgeFrame(f *testing.F) {
	f.Add([]byte("X-RequestId:abc\r\nPath:turn.start\r\n\r\n{}"), true)
	f.Add(append([]byte{0, 36}, "Content-Type:audio/mpeg\r\nPath:audio\r\nMP3"...), false)
	f.Add([]byte{0xff, 0xff}, false)
	f.Fuzz(func(t *testing.T, msg []byte, text bool) {
		if text {
			h, body, err := parseEdgeText(msg)
			if err == nil && (h.path == "" || len(body) > len(msg)) {
				t.Fatalf("accepted %q with path %q", msg, h.path)
			}
			edgeControl(msg)
			return
		}
		h, payload, err := parseEdgeBinary(msg)
		if err == nil && (h.path == "" || len(payload) > len(msg)-2) {
			t.Fatalf("accepted %q", msg)
		}
		edgeAudioPayload(msg)
	})
}

func FuzzEdgeSplit(f *testing.F) {
	f.Add("Hello & <world> it's \"me\"", 12)
	f.Add(strings.Repeat("ж", 30), 7)
	f.Fuzz(func(t *testing.T, text string, max int) {
		if max < 6 || max > 1000 {
			return
		}
		text = edgeCleanText(text)
		var all strings.Builder
		for _, p := range edgeSplit(text, max) {
			if len(xmlEscape(p)) > max || p == "" {
				t.Fatalf("part %q (escaped %d) for max %d", p, len(xmlEscape(p)), max)
			}
			all.WriteString(p)
		}
		if strings.Join(strings.Fields(all.String()), "") != strings.Join(strings.Fields(text), "") {
			t.Fatalf("split changed the text: %q", text)
		}
	})
}

func TestEdgeTimeout(t *testing.T) {
	srv, _ := newEdgeFake(t, func(o *ttstest.EdgeOptions) { o.HoldAfter = 4 })
	e, err := NewEdge(EdgeConfig{URL: srv.URL, Timeout: 300 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	rc, err := e.Synthesize(context.Background(), Request{Text: "Hello"})
	if err != nil {
		t.Fatal(err)
	}
	defer rc.Close()
	_, err = io.Copy(io.Discard, rc)
	if err == nil || !strings.Contains(err.Error(), "timed out after 300ms") {
		t.Fatalf("err %v, want a timeout", err)
	}
	if k := KindOf(err); k != fault.Timeout {
		t.Errorf("kind %v, want timeout", k)
	}
	provWait(t, srv.Gone, "fake observing the socket closed on timeout")
}

func TestEdgeLongTextSplitsIntoTurns(t *testing.T) {
	srv, e := newEdgeFake(t, nil)
	// Over 64 KiB of SSML: two connections, each one turn, audio concatenated.
	text := strings.Repeat("Hello & welcome. ", 4000)
	rc, err := e.Synthesize(context.Background(), Request{Text: text})
	if err != nil {
		t.Fatal(err)
	}
	provCheckSpeech(t, provReadAll(t, rc), 2*1320*time.Millisecond)
	reqs := srv.Requests()
	if len(reqs) != 2 {
		t.Fatalf("fake saw %d requests, want 2", len(reqs))
	}
	var spoken string
	for _, r := range reqs {
		if len(r.SSML) > 64*1024 {
			t.Errorf("SSML of %d bytes exceeds 64 KiB", len(r.SSML))
		}
		spoken += r.Text + " "
	}
	if strings.Join(strings.Fields(spoken), " ") != strings.TrimSpace(text) {
		t.Error("the turns do not add up to the text")
	}
	if err := srv.Err(); err != nil {
		t.Fatal(err)
	}
}

// provBench runs one synthesis per iteration and reports time to the first
// PCM byte next to the whole call.
func provBench(b *testing.B, s Synthesizer, req Request) {
	b.Helper()
	buf := make([]byte, 4096)
	var first time.Duration
	var total int64
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		start := time.Now()
		rc, err := s.Synthesize(context.Background(), req)
		if err != nil {
			b.Fatal(err)
		}
		n, err := rc.Read(buf)
		first += time.Since(start)
		for err == nil {
			total += int64(n)
			n, err = rc.Read(buf)
		}
		total += int64(n)
		if err != io.EOF {
			b.Fatal(err)
		}
		rc.Close()
	}
	b.ReportMetric(float64(first.Microseconds())/float64(b.N)/1000, "ms-to-first-pcm")
	b.ReportMetric(float64(total)/float64(b.N)/96000, "audio-s/op")
}

func BenchmarkEdgeFake(b *testing.B) {
	session, err := ttstest.LoadEdgeSession(filepath.Join("..", "testdata", "tts", "edge_session.jsonl"))
	if err != nil {
		b.Fatal(err)
	}
	srv := ttstest.NewEdgeServer(b, ttstest.EdgeOptions{Session: session, MP3: provFixture(b, "edge_hello.mp3")})
	e, err := NewEdge(EdgeConfig{URL: srv.URL})
	if err != nil {
		b.Fatal(err)
	}
	provBench(b, e, Request{Text: "Hello from Nexy."})
}
