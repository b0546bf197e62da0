package tts

import (
	"context"
	"net/http"
	"net/http/httptest"
	"sync/atomic"
	"testing"
)

// The speech key must never follow a redirect to another host.
func TestHTTPProvidersRefuseRedirects(t *testing.T) {
	var leaked atomic.Bool
	other := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Header.Get("Ocp-Apim-Subscription-Key") != "" || r.Header.Get("Authorization") != "" {
			leaked.Store(true)
		}
	}))
	defer other.Close()
	redirect := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		http.Redirect(w, r, other.URL+r.URL.Path, http.StatusTemporaryRedirect)
	}))
	defer redirect.Close()

	az, err := NewAzure(AzureConfig{BaseURL: redirect.URL, APIKey: "generated-at-test-time"})
	if err != nil {
		t.Fatal(err)
	}
	oa, err := NewOpenAI(OpenAIConfig{BaseURL: redirect.URL + "/v1", APIKey: "generated-at-test-time"})
	if err != nil {
		t.Fatal(err)
	}
	for _, s := range []Synthesizer{az, oa} {
		if rc, err := s.Synthesize(context.Background(), Request{Text: "Hello."}); err == nil {
			rc.Close()
			t.Errorf("%s: a redirect was followed", s.Name())
		}
	}
	if leaked.Load() {
		t.Fatal("the key reached the redirect target")
	}
}

// A server that ignores response_format=pcm and sends WAV is decoded as WAV.
func TestOpenAIPCMRequestedWAVReceived(t *testing.T) {
	wav := provFixture(t, "openai_hello_24k.wav")
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "audio/wav")
		_, _ = w.Write(wav)
	}))
	defer srv.Close()
	o, err := NewOpenAI(OpenAIConfig{BaseURL: srv.URL + "/v1", Format: "pcm"})
	if err != nil {
		t.Fatal(err)
	}
	rc, err := o.Synthesize(context.Background(), Request{Text: "Hello."})
	if err != nil {
		t.Fatal(err)
	}
	pcm := provReadAll(t, rc)
	// Decoded as WAV: the 44-byte header is not played, and the length is the
	// WAV's audio at 48 kHz, not the raw byte count read as 24 kHz PCM.
	if got, want := len(pcm), (len(wav)-44)*2; got < want-64 || got > want+64 {
		t.Fatalf("decoded %d bytes, want about %d", got, want)
	}
	for i := 0; i < 64; i += 2 { // espeak-ng starts with silence; header bytes would not be
		if v := int16(pcm[i]) | int16(pcm[i+1])<<8; v > 200 || v < -200 {
			t.Fatalf("sample %d = %d: header bytes were played as audio", i/2, v)
		}
	}
}
