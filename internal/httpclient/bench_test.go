package httpclient_test

import (
	"context"
	"io"
	"net/http"
	"net/http/httptest"
	"sync"
	"sync/atomic"
	"testing"

	"github.com/nexy-server/nexy/internal/httpclient"
	"github.com/nexy-server/nexy/llm"
	"github.com/nexy-server/nexy/llm/llmtest"
)

// BenchmarkProviderConns runs 50 streams at once, each calling the model one
// call after another through the real OpenAI-compatible client, against a
// loopback SSE fake; it reports the share of calls sent on a connection
// already open (reuse-%) and the connections opened per call, with
// http.DefaultTransport's pool (2 idle per host) and with the shared
// transport. Modes:
//
//	http1       every event flushed on its own, [DONE] included (llmtest,
//	            and most servers); the client may close the body before the
//	            chunked terminator arrives, which costs the connection
//	http1-eof   [DONE] and the terminator arrive together: pool sizing alone
//	h2          TLS with HTTP/2 offered, as the hosted providers do
//
// Run with a fixed count so the 50 first dials weigh the same:
//
//	go test -run '^$' -bench ProviderConns -benchtime 5000x ./internal/httpclient/
func BenchmarkProviderConns(b *testing.B) {
	const streams = 50
	events := llmtest.SplitEvents(llmtest.OpenAISSE([]string{"Hello ", "there."}, llmtest.Usage{InputTokens: 3, OutputTokens: 2}))
	handler := func(flushLast bool) http.HandlerFunc {
		return func(w http.ResponseWriter, r *http.Request) {
			_, _ = io.Copy(io.Discard, r.Body)
			w.Header().Set("Content-Type", "text/event-stream")
			f := w.(http.Flusher)
			for i, ev := range events {
				_, _ = w.Write(ev)
				if i < len(events)-1 || flushLast {
					f.Flush()
				}
			}
		}
	}
	for _, mode := range []string{"http1", "http1-eof", "h2"} {
		for _, pool := range []string{"default", "shared"} {
			b.Run(mode+"/"+pool, func(b *testing.B) {
				ts := httptest.NewUnstartedServer(handler(mode != "http1-eof"))
				if mode == "h2" {
					ts.EnableHTTP2 = true
					ts.StartTLS()
				} else {
					ts.Start()
				}
				defer ts.Close()
				var tr *httpclient.Transport
				if pool == "default" {
					tr = httpclient.Wrap(http.DefaultTransport.(*http.Transport).Clone())
				} else {
					tr = httpclient.NewTransport(streams)
				}
				defer tr.Close()
				if mode == "h2" {
					tr.Base().TLSClientConfig = ts.Client().Transport.(*http.Transport).TLSClientConfig.Clone()
				}
				p, err := llm.NewOpenAI(llm.OpenAIConfig{BaseURL: ts.URL + "/v1", Model: "bench", HTTPClient: tr.Client()})
				if err != nil {
					b.Fatal(err)
				}
				b.ReportAllocs()
				var next atomic.Int64
				var failed atomic.Value
				var wg sync.WaitGroup
				b.ResetTimer()
				for range streams {
					wg.Go(func() {
						for next.Add(1) <= int64(b.N) {
							if err := call(p); err != nil {
								failed.Store(err)
								return
							}
						}
					})
				}
				wg.Wait()
				b.StopTimer()
				if err, _ := failed.Load().(error); err != nil {
					b.Fatal(err)
				}
				n := tr.Counts()
				b.ReportMetric(100*float64(n.Reused)/float64(n.Requests), "reuse-%")
				b.ReportMetric(float64(n.Dials)/float64(n.Requests), "dials/call")
			})
		}
	}
}

// call is one whole model call: request, every delta, close.
func call(p llm.Provider) error {
	s, err := p.Stream(context.Background(), llm.Request{System: "s", User: "q"})
	if err != nil {
		return err
	}
	defer s.Close()
	for {
		if _, err := s.Recv(); err == io.EOF {
			return nil
		} else if err != nil {
			return err
		}
	}
}

// BenchmarkCountingOverhead is what the counting costs per request: the
// same pooled transport with and without the trace hooks, on loopback.
func BenchmarkCountingOverhead(b *testing.B) {
	ts := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		_, _ = io.WriteString(w, "ok")
	}))
	defer ts.Close()
	tr := httpclient.NewTransport(1)
	defer tr.Close()
	for _, c := range []struct {
		name string
		rt   http.RoundTripper
	}{{"bare", tr.Base()}, {"counted", tr}} {
		b.Run(c.name, func(b *testing.B) {
			client := &http.Client{Transport: c.rt}
			b.ReportAllocs()
			for b.Loop() {
				resp, err := client.Get(ts.URL)
				if err != nil {
					b.Fatal(err)
				}
				_, _ = io.Copy(io.Discard, resp.Body)
				resp.Body.Close()
			}
		})
	}
}
