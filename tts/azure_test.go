package tts

import (
	"bytes"
	"context"
	"encoding/xml"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/nexy-server/nexy/internal/fault"
)

// azureFake is a local Azure Speech endpoint: it checks what the REST API
// requires and streams the fixture PCM in small flushed pieces.
type azureFake struct {
	pcm     []byte
	status  int
	errBody string
	hold    chan struct{} // non-nil: stop after the first piece until closed
	gone    chan struct{} // closed when a held request's client goes away
	mu      sync.Mutex
	ssml    string
	voice   string
	lang    string
	rate    string
	text    string
}

func (f *azureFake) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if r.Method != http.MethodPost || r.URL.Path != "/cognitiveservices/v1" {
		http.NotFound(w, r)
		return
	}
	if r.Header.Get("Ocp-Apim-Subscription-Key") != "test-key" {
		http.Error(w, "", http.StatusUnauthorized)
		return
	}
	if r.Header.Get("Content-Type") != "application/ssml+xml" || r.Header.Get("X-Microsoft-OutputFormat") != "raw-48khz-16bit-mono-pcm" || r.Header.Get("User-Agent") == "" {
		http.Error(w, "missing headers", http.StatusBadRequest)
		return
	}
	body, _ := io.ReadAll(io.LimitReader(r.Body, 1<<20))
	var doc struct {
		Lang  string `xml:"http://www.w3.org/XML/1998/namespace lang,attr"`
		Voice struct {
			Name    string `xml:"name,attr"`
			Text    string `xml:",chardata"`
			Prosody struct {
				Rate string `xml:"rate,attr"`
				Text string `xml:",chardata"`
			} `xml:"prosody"`
		} `xml:"voice"`
	}
	if err := xml.Unmarshal(body, &doc); err != nil {
		http.Error(w, "SSML parse error", http.StatusBadRequest)
		return
	}
	f.mu.Lock()
	f.ssml, f.voice, f.lang, f.rate = string(body), doc.Voice.Name, doc.Lang, doc.Voice.Prosody.Rate
	f.text = doc.Voice.Text + doc.Voice.Prosody.Text
	f.mu.Unlock()
	if f.status != 0 {
		w.Header().Set("Retry-After", "3")
		http.Error(w, f.errBody, f.status)
		return
	}
	w.Header().Set("Content-Type", "audio/x-wav")
	for i := 0; i < len(f.pcm); i += 4001 { // odd size: pieces split samples
		w.Write(f.pcm[i:min(i+4001, len(f.pcm))])
		w.(http.Flusher).Flush()
		if f.hold != nil {
			select {
			case <-f.hold:
			case <-r.Context().Done():
				close(f.gone)
				return
			}
		}
	}
}

// azureSeen is what the fake parsed from the last request.
type azureSeen struct{ ssml, voice, lang, rate, text string }

func (f *azureFake) seen() azureSeen {
	f.mu.Lock()
	defer f.mu.Unlock()
	return azureSeen{f.ssml, f.voice, f.lang, f.rate, f.text}
}

func newAzureFake(t *testing.T) (*azureFake, *httptest.Server) {
	f := &azureFake{pcm: provFixture(t, "azure_hello_48k.pcm")}
	srv := httptest.NewServer(f)
	t.Cleanup(srv.Close)
	return f, srv
}

func TestAzureSynthesize(t *testing.T) {
	f, srv := newAzureFake(t)
	a, err := NewAzure(AzureConfig{BaseURL: srv.URL, APIKey: "test-key", Rate: "+10%"})
	if err != nil {
		t.Fatal(err)
	}
	rc, err := a.Synthesize(context.Background(), Request{Text: `Fish & "chips" <now>`})
	if err != nil {
		t.Fatal(err)
	}
	pcm := provReadAll(t, rc)
	if !bytes.Equal(pcm, f.pcm) {
		t.Errorf("PCM differs from the fixture (%d vs %d bytes); 48 kHz PCM must pass through untouched", len(pcm), len(f.pcm))
	}
	provCheckSpeech(t, pcm, 1263*time.Millisecond)
	if s := f.seen(); s.voice != "en-US-AriaNeural" || s.lang != "en-US" || s.rate != "+10%" || s.text != `Fish & "chips" <now>` {
		t.Errorf("fake saw %+v", s)
	}
}

func TestAzureVoiceAndLanguage(t *testing.T) {
	f, srv := newAzureFake(t)
	a, err := NewAzure(AzureConfig{BaseURL: srv.URL, APIKey: "test-key"})
	if err != nil {
		t.Fatal(err)
	}
	rc, err := a.Synthesize(context.Background(), Request{Text: "Hallo", Voice: "de-DE-KatjaNeural"})
	if err != nil {
		t.Fatal(err)
	}
	provReadAll(t, rc)
	if s := f.seen(); s.voice != "de-DE-KatjaNeural" || s.lang != "de-DE" || strings.Contains(s.ssml, "prosody") {
		t.Errorf("fake saw %+v", s)
	}
	rc, err = a.Synthesize(context.Background(), Request{Text: "Hi", Voice: "en-US-AvaMultilingualNeural", Language: "fr-FR"})
	if err != nil {
		t.Fatal(err)
	}
	provReadAll(t, rc)
	if s := f.seen(); s.lang != "fr-FR" {
		t.Errorf("Request.Language ignored: lang %q", s.lang)
	}
}

func TestAzureErrors(t *testing.T) {
	cases := []struct {
		key    string
		status int
		body   string
		want   string
	}{
		{"wrong-key", 0, "", "HTTP 401: unauthorized"},
		{"test-key", http.StatusForbidden, "", "HTTP 403: forbidden"},
		{"test-key", http.StatusTooManyRequests, "Too many requests", "HTTP 429: rate limited (Retry-After 3): Too many requests"},
		{"test-key", http.StatusBadRequest, "", "HTTP 400: request rejected"},
		{"test-key", http.StatusBadGateway, "", "HTTP 502: service error"},
	}
	for _, c := range cases {
		f, srv := newAzureFake(t)
		f.status, f.errBody = c.status, c.body
		a, err := NewAzure(AzureConfig{BaseURL: srv.URL, APIKey: c.key})
		if err != nil {
			t.Fatal(err)
		}
		_, err = a.Synthesize(context.Background(), Request{Text: "Hello"})
		if err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("status %d: err %v, want %q", c.status, err, c.want)
		}
		if err != nil && strings.Contains(err.Error(), c.key) {
			t.Errorf("error leaks the key: %v", err)
		}
	}
}

func TestAzureCancelMidStream(t *testing.T) {
	f, srv := newAzureFake(t)
	f.hold, f.gone = make(chan struct{}), make(chan struct{})
	defer close(f.hold)
	a, err := NewAzure(AzureConfig{BaseURL: srv.URL, APIKey: "test-key"})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	rc, err := a.Synthesize(ctx, Request{Text: "Hello"})
	if err != nil {
		t.Fatal(err)
	}
	defer rc.Close()
	if _, err := io.ReadFull(rc, make([]byte, 4000)); err != nil {
		t.Fatal(err)
	}
	cancel()
	provWait(t, f.gone, "fake seeing the request aborted")
	if _, err := io.Copy(io.Discard, rc); !errors.Is(err, context.Canceled) {
		t.Errorf("read after cancel: %v, want context.Canceled", err)
	}
}

func TestAzureTruncatedBody(t *testing.T) {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Length", "96000")
		w.Write(make([]byte, 1000))
		// Handler returns early: the client sees a short body.
	}))
	defer srv.Close()
	a, err := NewAzure(AzureConfig{BaseURL: srv.URL, APIKey: "k"})
	if err != nil {
		t.Fatal(err)
	}
	rc, err := a.Synthesize(context.Background(), Request{Text: "Hello"})
	if err != nil {
		t.Fatal(err)
	}
	defer rc.Close()
	if _, err := io.Copy(io.Discard, rc); err == nil {
		t.Fatal("truncated body read as complete audio")
	}
}

func TestAzureConfigValidation(t *testing.T) {
	bad := map[string]AzureConfig{
		"APIKey":  {Region: "westeurope"},
		"Region":  {APIKey: "k", Region: "west europe"},
		"BaseURL": {APIKey: "k", BaseURL: "ftp://x"},
		"Voice":   {APIKey: "k", Region: "westus", Voice: "x' y='1"},
		"Rate":    {APIKey: "k", Region: "westus", Rate: "'/><x"},
		"Timeout": {APIKey: "k", Region: "westus", Timeout: -1},
	}
	for field, cfg := range bad {
		if _, err := NewAzure(cfg); err == nil || !strings.Contains(err.Error(), field) {
			t.Errorf("%s: err %v, want one naming the field", field, err)
		}
	}
	a, err := NewAzure(AzureConfig{APIKey: "k", Region: "westeurope"})
	if err != nil {
		t.Fatal(err)
	}
	if a.endpoint != "https://westeurope.tts.speech.microsoft.com/cognitiveservices/v1" || a.Name() != "azure" {
		t.Errorf("endpoint %q", a.endpoint)
	}
	if _, err := a.Synthesize(context.Background(), Request{Text: ""}); err == nil {
		t.Error("empty text accepted")
	}
}

func BenchmarkAzureFake(b *testing.B) {
	f := &azureFake{pcm: provFixture(b, "azure_hello_48k.pcm")}
	srv := httptest.NewServer(f)
	defer srv.Close()
	a, err := NewAzure(AzureConfig{BaseURL: srv.URL, APIKey: "test-key"})
	if err != nil {
		b.Fatal(err)
	}
	provBench(b, a, Request{Text: "Hello from Nexy."})
}

func TestAzureConnectError(t *testing.T) {
	a, err := NewAzure(AzureConfig{BaseURL: "http://127.0.0.1:1/secret-path", APIKey: "k"})
	if err != nil {
		t.Fatal(err)
	}
	_, err = a.Synthesize(context.Background(), Request{Text: "Hello"})
	if err == nil || !strings.HasPrefix(err.Error(), "tts azure: Post: ") || strings.Contains(err.Error(), "secret-path") {
		t.Fatalf("err %v, want a transport error without the URL", err)
	}
	var te *Error
	if KindOf(err) != fault.Unavailable || !errors.As(err, &te) || te.Status != 0 {
		t.Errorf("refused connection: kind %v, want unavailable without a status", KindOf(err))
	}
}
