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
