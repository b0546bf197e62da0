package tts

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/nexy-server/nexy/internal/fault"
)

// TestProviderErrors: a provider's error names it once, a timeout is named
// once, and both stay reachable with errors.Is/As.
func TestProviderErrors(t *testing.T) {
	if got := named("edge", io.ErrUnexpectedEOF).Error(); got != "tts edge: unexpected EOF" {
		t.Errorf("named = %q", got)
	}
	already := errorf("edge", "connect: %w", io.EOF)
	if got := named("edge", already); got != already || !errors.Is(got, io.EOF) {
		t.Errorf("named(named) = %v", got)
	}
	ctx, cancel := context.WithDeadline(context.Background(), time.Now().Add(-time.Second))
	defer cancel()
	once := timeoutErr("azure", ctx, 30*time.Second, ctx.Err())
	twice := timeoutErr("azure", ctx, 30*time.Second, once)
	if want := "tts azure: timed out after 30s: context deadline exceeded"; once.Error() != want || twice.Error() != want {
		t.Errorf("timeoutErr = %q, again %q", once, twice)
	}
	var te *Error
	if !errors.As(twice, &te) || te.Provider != "azure" || !errors.Is(twice, context.DeadlineExceeded) {
		t.Errorf("timeout error lost its type: %v", twice)
	}
}

// netTimeout is a transport error that reports a timeout, as a dialer's or
// a connection deadline's does.
type netTimeout struct{}

func (netTimeout) Error() string   { return "i/o timeout" }
func (netTimeout) Timeout() bool   { return true }
func (netTimeout) Temporary() bool { return true }

var _ net.Error = netTimeout{}

// TestKindOf: the kind of the first *Error in the chain, a timeout anywhere
// in it when no *Error says more, and Unavailable otherwise.
func TestKindOf(t *testing.T) {
	expired, cancel := context.WithDeadline(context.Background(), time.Now().Add(-time.Second))
	defer cancel()
	auth := httpError("azure", http.StatusUnauthorized, "HTTP 401")
	cases := []struct {
		name string
		err  error
		want fault.Kind
	}{
		{"nil", nil, fault.Unavailable},
		{"plain error", errors.New("boom"), fault.Unavailable},
		{"errorf", errorf("edge", "connect: %w", io.EOF), fault.Unavailable},
		{"context canceled", named("edge", context.Canceled), fault.Unavailable},
		{"badRequestf", badRequestf("edge", "empty text"), fault.BadRequest},
		{"HTTP 401", auth, fault.Auth},
		{"HTTP 403", httpError("openai", 403, "x"), fault.Auth},
		{"HTTP 429", httpError("openai", 429, "x"), fault.RateLimited},
		{"HTTP 400", httpError("openai", 400, "x"), fault.BadRequest},
		{"HTTP 404", httpError("openai", 404, "x"), fault.BadRequest},
		{"HTTP 408", httpError("openai", 408, "x"), fault.Timeout},
		{"HTTP 500", httpError("openai", 500, "x"), fault.Unavailable},
		{"HTTP 503", httpError("openai", 503, "x"), fault.Unavailable},
		{"HTTP 504", httpError("openai", 504, "x"), fault.Timeout},
		{"timeoutErr", timeoutErr("azure", expired, 30*time.Second, expired.Err()), fault.Timeout},
		{"named deadline", named("azure", context.DeadlineExceeded), fault.Timeout},
		{"os deadline", named("command", fmt.Errorf("read: %w", os.ErrDeadlineExceeded)), fault.Timeout},
		{"net.Error timeout", named("openai", fmt.Errorf("Post: %w", netTimeout{})), fault.Timeout},
		{"bare deadline", context.DeadlineExceeded, fault.Timeout},
		{"wrapped with %w", fmt.Errorf("turn 3: speak: %w", auth), fault.Auth},
		{"wrapped twice", fmt.Errorf("a: %w", fmt.Errorf("b: %w", badRequestf("edge", "x"))), fault.BadRequest},
		{"wrapped timeout", fmt.Errorf("turn: %w", timeoutErr("azure", expired, time.Second, errors.New("read"))), fault.Timeout},
		// A provider error named again on its way out (decoder, pcmStream)
		// keeps the kind of the error inside.
		{"renamed", named("edge", fmt.Errorf("decode: %w", auth)), fault.Auth},
		{"joined", errors.Join(errors.New("close"), auth), fault.Auth},
		// An explicit kind is not overridden by a timeout deeper down.
		{"explicit over timeout", &Error{Provider: "x", Kind: fault.BadRequest, Err: context.DeadlineExceeded}, fault.BadRequest},
	}
	for _, c := range cases {
		if got := KindOf(c.err); got != c.want {
			t.Errorf("%s: KindOf(%v) = %v, want %v", c.name, c.err, got, c.want)
		}
	}
	var te *Error
	if !errors.As(auth, &te) || te.Status != 401 || te.Provider != "azure" || auth.Error() != "tts azure: HTTP 401" {
		t.Errorf("httpError = %#v (%q)", te, auth)
	}
	if te := (&Error{Provider: "edge", Err: io.EOF}); te.Kind != fault.Unavailable || te.Status != 0 {
		t.Errorf("zero Error: kind %v status %d, want unavailable and 0", te.Kind, te.Status)
	}
}

// httpKindCase is one refused call through a real HTTP provider.
type httpKindCase struct {
	status int
	kind   fault.Kind
}

var httpKindCases = []httpKindCase{
	{http.StatusUnauthorized, fault.Auth},
	{http.StatusForbidden, fault.Auth},
	{http.StatusTooManyRequests, fault.RateLimited},
	{http.StatusBadRequest, fault.BadRequest},
	{http.StatusNotFound, fault.BadRequest},
	{http.StatusInternalServerError, fault.Unavailable},
	{http.StatusServiceUnavailable, fault.Unavailable},
	{http.StatusGatewayTimeout, fault.Timeout},
}

// TestHTTPProviderErrorKinds: azure and openai, against local fakes that
// refuse the call, classify each status the same way, keep it in Status,
// and tell the operator to check tts.api_key when the key was rejected.
func TestHTTPProviderErrorKinds(t *testing.T) {
	providers := map[string]func(t *testing.T, status int) Synthesizer{
		"azure": func(t *testing.T, status int) Synthesizer {
			f, srv := newAzureFake(t)
			f.status, f.errBody = status, "refused by the fake"
			a, err := NewAzure(AzureConfig{BaseURL: srv.URL, APIKey: "test-key", Timeout: 10 * time.Second})
			if err != nil {
				t.Fatal(err)
			}
			return a
		},
		"openai": func(t *testing.T, status int) Synthesizer {
			f, base := newOpenAIFake(t)
			f.status, f.body = status, `{"error":{"message":"refused by the fake"}}`
			o, err := NewOpenAI(OpenAIConfig{BaseURL: base, APIKey: "sk-test", Timeout: 10 * time.Second})
			if err != nil {
				t.Fatal(err)
			}
			return o
		},
	}
	for name, build := range providers {
		for _, c := range httpKindCases {
			t.Run(fmt.Sprintf("%s/%d", name, c.status), func(t *testing.T) {
				s := build(t, c.status)
				ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
				defer cancel()
				rc, err := s.Synthesize(ctx, Request{Text: "Hello"})
				if err == nil {
					rc.Close()
					t.Fatal("a refused call returned audio")
				}
				var te *Error
				if !errors.As(err, &te) || te.Status != c.status || te.Provider != name {
					t.Fatalf("err %v (%#v), want a %s *Error with Status %d", err, te, name, c.status)
				}
				if k := KindOf(err); k != c.kind {
					t.Errorf("KindOf = %v, want %v (%v)", k, c.kind, err)
				}
				if k := KindOf(fmt.Errorf("turn: speak: %w", err)); k != c.kind {
					t.Errorf("wrapped: KindOf = %v, want %v", k, c.kind)
				}
				msg := err.Error()
				if !strings.HasPrefix(msg, "tts "+name+": HTTP "+strconv.Itoa(c.status)) || !strings.Contains(msg, "refused by the fake") {
					t.Errorf("message %q", msg)
				}
				if auth := c.kind == fault.Auth; auth != strings.Contains(msg, "check tts.api_key") {
					t.Errorf("message %q: names tts.api_key = %v, want %v", msg, !auth, auth)
				}
				if c.status == http.StatusUnauthorized && !strings.Contains(msg, "the key was rejected: check tts.api_key") {
					t.Errorf("401 message %q does not say the key was rejected", msg)
				}
			})
		}
	}
}

// TestHTTPProviderHeaderTimeout: a server that never answers is a Timeout,
// returned from Synthesize itself.
func TestHTTPProviderHeaderTimeout(t *testing.T) {
	release := make(chan struct{})
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		select {
		case <-release:
		case <-r.Context().Done():
		case <-time.After(20 * time.Second):
		}
	}))
	defer srv.Close()
	defer close(release)
	a, err := NewAzure(AzureConfig{BaseURL: srv.URL, APIKey: "k", Timeout: 200 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	o, err := NewOpenAI(OpenAIConfig{BaseURL: srv.URL + "/v1", Timeout: 200 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	for _, s := range []Synthesizer{a, o} {
		rc, err := s.Synthesize(context.Background(), Request{Text: "Hello"})
		if err == nil {
			rc.Close()
			t.Fatalf("%s: a silent server produced audio", s.Name())
		}
		if k := KindOf(err); k != fault.Timeout || !strings.Contains(err.Error(), "timed out after 200ms") {
			t.Errorf("%s: kind %v, err %v; want a timeout", s.Name(), k, err)
		}
		if k := KindOf(fmt.Errorf("turn: %w", err)); k != fault.Timeout {
			t.Errorf("%s: wrapped: kind %v", s.Name(), k)
		}
	}
}

// TestValidationIsBadRequest: a request a provider refuses before calling
// anything (empty text, invalid voice or language) is BadRequest.
func TestValidationIsBadRequest(t *testing.T) {
	nowhere := "http://127.0.0.1:1"
	edge, err := NewEdge(EdgeConfig{URL: "ws://127.0.0.1:1/edge"})
	if err != nil {
		t.Fatal(err)
	}
	azure, err := NewAzure(AzureConfig{BaseURL: nowhere, APIKey: "k"})
	if err != nil {
		t.Fatal(err)
	}
	openai, err := NewOpenAI(OpenAIConfig{BaseURL: nowhere + "/v1"})
	if err != nil {
		t.Fatal(err)
	}
	bad := map[Synthesizer][]Request{
		edge:   {{Text: " \n "}, {Text: "Hi", Voice: "nobody"}, {Text: "Hi", Language: "not a tag"}},
		azure:  {{Text: ""}, {Text: "Hi", Voice: "x' y='1"}, {Text: "Hi", Language: "not a tag"}},
		openai: {{Text: "\t"}, {Text: "Hi", Voice: strings.Repeat("v", 201)}},
	}
	if _, err := exec.LookPath("cat"); err == nil {
		command, err := NewCommand(CommandConfig{Command: "cat -- {voice} {text}", Voice: "en-us"})
		if err != nil {
			t.Fatal(err)
		}
		bad[command] = []Request{{Text: " "}, {Text: "Hi", Voice: "../etc/passwd"}, {Text: strings.Repeat("a", commandMaxArg+1)}}
	}
	for s, reqs := range bad {
		for _, req := range reqs {
			rc, err := s.Synthesize(context.Background(), req)
			if err == nil {
				rc.Close()
				t.Errorf("%s: %+.40v accepted", s.Name(), req)
				continue
			}
			if k := KindOf(err); k != fault.BadRequest || !strings.HasPrefix(err.Error(), "tts "+s.Name()+": ") {
				t.Errorf("%s: kind %v, err %v; want bad_request", s.Name(), k, err)
			}
		}
	}
}
