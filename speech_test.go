package main

import (
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"testing"
)

// newSpeechServer is a local OpenAI-compatible /audio/speech fake that
// returns a recorded WAV; it returns the /v1 root.
func newSpeechServer(t *testing.T) string {
	t.Helper()
	wav, err := os.ReadFile(filepath.Join("testdata", "tts", "openai_hello_24k.wav"))
	if err != nil {
		t.Fatal(err)
	}
	ts := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path != "/v1/audio/speech" {
			http.NotFound(w, r)
			return
		}
		w.Header().Set("Content-Type", "audio/wav")
		_, _ = w.Write(wav)
	}))
	t.Cleanup(ts.Close)
	return ts.URL + "/v1"
}
