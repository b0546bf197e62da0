package httpclient

import (
	"context"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"net/http/httptrace"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// waitLimit bounds every wait in these tests.
const waitLimit = 10 * time.Second

func get(t *testing.T, c *http.Client, url string) *http.Response {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), waitLimit)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		t.Error(err)
		return nil
	}
	resp, err := c.Do(req)
	if err != nil {
		t.Error(err)
		return nil
	}
	if _, err := io.Copy(io.Discard, resp.Body); err != nil {
		t.Error(err)
	}
	resp.Body.Close()
	return resp
}

// TestTransportReusesUnderConcurrency: rounds of parallel requests (the
// next round starts when the last has ended) open connections in the first
// round only and reuse them after: http.DefaultTransport would keep 2 and
// dial again for the others in every round.
func TestTransportReusesUnderConcurrency(t *testing.T) {
	ts := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		_, _ = io.WriteString(w, "data: hello\n\n")
	}))
	defer ts.Close()
	const workers, rounds = 20, 5
	tr := NewTransport(workers)
	defer tr.Close()
	c := tr.Client()
	for range rounds {
		var wg sync.WaitGroup
		for range workers {
			wg.Go(func() { get(t, c, ts.URL) })
		}
		wg.Wait()
	}
	n := tr.Counts()
	if n.Requests != workers*rounds {
		t.Errorf("Requests = %d, want %d", n.Requests, workers*rounds)
	}
	// Each first-round request dials at most once and the pool keeps them
	// all, so ideally Dials ≤ workers and Reused ≥ workers×(rounds-1). A
	// loaded machine costs a connection now and then (net/http drops one
	// whose request write it cannot confirm within 50 ms), hence the slack;
	// http.DefaultTransport dials about 18 of every round's 20.
	if n.Dials == 0 || n.Dials > workers+workers/2 {
		t.Errorf("Dials = %d, want 1..%d (%+v)", n.Dials, workers+workers/2, n)
	}
	if want := workers * (rounds - 1) * 3 / 4; n.Reused < uint64(want) {
		t.Errorf("Reused = %d, want ≥ %d (%+v)", n.Reused, want, n)
	}
}

// TestTransportCloseClosesIdle: Close hangs up the pooled connections, and
// a later call dials again.
func TestTransportCloseClosesIdle(t *testing.T) {
	var open atomic.Int64
	ts := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		_, _ = io.WriteString(w, "ok")
	}))
	ts.Config.ConnState = func(_ net.Conn, s http.ConnState) {
		switch s {
		case http.StateNew:
			open.Add(1)
		case http.StateClosed, http.StateHijacked:
			open.Add(-1)
		}
	}
	ts.Start()
	defer ts.Close()
	tr := NewTransport(4)
	c := tr.Client()
	get(t, c, ts.URL)
	get(t, c, ts.URL)
	if n := tr.Counts(); n.Dials != 1 || n.Reused != 1 {
		t.Fatalf("before Close: %+v, want one dial and one reuse", n)
	}
	if open.Load() != 1 {
		t.Fatalf("server sees %d open connections, want 1", open.Load())
	}
	tr.Close()
	deadline := time.Now().Add(waitLimit)
	for open.Load() != 0 {
		if time.Now().After(deadline) {
			t.Fatalf("the idle connection was not closed (server sees %d open)", open.Load())
		}
		time.Sleep(5 * time.Millisecond)
	}
	get(t, c, ts.URL)
	if n := tr.Counts(); n.Dials != 2 || n.Requests != 3 {
		t.Fatalf("after Close: %+v, want a second dial", n)
	}
}

// TestTransportHTTP2: against a TLS server that offers h2 the transport
// speaks HTTP/2 and multiplexes concurrent calls on one connection.
func TestTransportHTTP2(t *testing.T) {
	ts := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		_, _ = io.WriteString(w, r.Proto)
	}))
	ts.EnableHTTP2 = true
	ts.StartTLS()
	defer ts.Close()
	tr := NewTransport(8)
	defer tr.Close()
	tr.base.TLSClientConfig = ts.Client().Transport.(*http.Transport).TLSClientConfig.Clone()
	c := tr.Client()
	if resp := get(t, c, ts.URL); resp == nil || resp.ProtoMajor != 2 {
		t.Fatalf("first call: %v, want HTTP/2", resp)
	}
	const calls = 10
	var wg sync.WaitGroup
	var notH2 atomic.Int64
	for range calls {
		wg.Go(func() {
			if resp := get(t, c, ts.URL); resp == nil || resp.ProtoMajor != 2 {
				notH2.Add(1)
			}
		})
	}
	wg.Wait()
	if notH2.Load() != 0 {
		t.Errorf("%d calls were not HTTP/2", notH2.Load())
	}
	if n := tr.Counts(); n.Requests != calls+1 || n.Dials != 1 || n.Reused != calls {
		t.Errorf("counts %+v, want %d requests on one connection", n, calls+1)
	}
}

// TestTransportKeepsCallersTrace: a caller's own trace still runs, and does
// not leak into the shared one used by later requests.
func TestTransportKeepsCallersTrace(t *testing.T) {
	ts := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {}))
	defer ts.Close()
	tr := NewTransport(1)
	defer tr.Close()
	c := tr.Client()
	var seen atomic.Int64
	ctx := httptrace.WithClientTrace(context.Background(), &httptrace.ClientTrace{
		GotConn: func(httptrace.GotConnInfo) { seen.Add(1) },
	})
	ctx, cancel := context.WithTimeout(ctx, waitLimit)
	defer cancel()
	for range 2 {
		req, _ := http.NewRequestWithContext(ctx, http.MethodGet, ts.URL, nil)
		resp, err := c.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		_, _ = io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
	}
	get(t, c, ts.URL)
	if seen.Load() != 2 {
		t.Errorf("caller's GotConn ran %d times, want 2", seen.Load())
	}
	if n := tr.Counts(); n.Requests != 3 || n.Reused != 2 || n.Dials != 1 {
		t.Errorf("counts %+v, want 3 requests, 2 reused, 1 dial", n)
	}
}

// TestClientRefusesRedirects: the shared client keeps the provider policy.
func TestClientRefusesRedirects(t *testing.T) {
	ts := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		http.Redirect(w, r, "http://example.invalid/", http.StatusFound)
	}))
	defer ts.Close()
	tr := NewTransport(1)
	defer tr.Close()
	if resp := get(t, tr.Client(), ts.URL); resp == nil || resp.StatusCode != http.StatusFound {
		t.Fatalf("redirect followed or failed: %v", resp)
	}
}
