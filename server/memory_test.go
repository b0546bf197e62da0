package server

import (
	"bufio"
	"context"
	"crypto/tls"
	"encoding/binary"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"regexp"
	"runtime"
	"runtime/metrics"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"golang.org/x/net/http2"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/status"

	"github.com/nexy-server/nexy/config"
	"github.com/nexy-server/nexy/llm/llmtest"
	pb "github.com/nexy-server/nexy/proto"
)

// TestMain lets a test run this binary as a bare server in a child process,
// so what the server holds can be measured apart from the test's own client.
func TestMain(m *testing.M) {
	if path := os.Getenv("NEXY_TEST_CHILD_CONFIG"); path != "" {
		os.Exit(runChildServer(path))
	}
	os.Exit(m.Run())
}

// runChildServer serves the config at path until SIGTERM, printing its gRPC
// address first and its peak heap (live and not yet swept objects, sampled
// every millisecond) and peak RSS at the end.
func runChildServer(path string) int {
	cfg, err := config.Load(path, nil)
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	log := NewLogger(os.Stderr, cfg.Log, nil)
	deps, closeDeps, err := buildDeps(&cfg.Config, log)
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	defer closeDeps()
	srv, err := New(&cfg.Config, log, deps)
	if err == nil {
		err = srv.Listen()
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM)
	defer stop()
	var peak atomic.Uint64
	go func() {
		sample := []metrics.Sample{{Name: "/memory/classes/heap/objects:bytes"}}
		for ctx.Err() == nil {
			metrics.Read(sample)
			if v := sample[0].Value.Uint64(); v > peak.Load() {
				peak.Store(v)
			}
			time.Sleep(time.Millisecond)
		}
	}()
	fmt.Printf("ADDR %s\n", srv.GRPCAddr())
	if err := srv.Serve(ctx); err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	fmt.Printf("PEAK_HEAP %d\nVMHWM_KB %d\n", peak.Load(), vmHWM())
	return 0
}

// vmHWM is the process's peak resident set in kB (Linux), 0 if unknown.
func vmHWM() int {
	b, err := os.ReadFile("/proc/self/status")
	if err != nil {
		return 0
	}
	for _, line := range strings.Split(string(b), "\n") {
		if rest, ok := strings.CutPrefix(line, "VmHWM:"); ok {
			n, _ := strconv.Atoi(strings.TrimSpace(strings.TrimSuffix(strings.TrimSpace(rest), "kB")))
			return n
		}
	}
	return 0
}

// child is a server running in a child process (see TestMain).
type child struct {
	addr    string
	dataDir string
	stop    func() map[string]int // SIGTERM, wait, and the child's report: PEAK_HEAP, VMHWM_KB
	kill    func()                // SIGKILL and wait: a crash, nothing flushed
}

// startChild runs a server in a child process with the given config (the
// [server], [listen] and [log] sections are added) and GOGC.
func startChild(t *testing.T, toml string, gogc int) *child {
	t.Helper()
	dir := t.TempDir()
	toml = fmt.Sprintf("[server]\ndata_dir = %q\n[listen]\ngrpc_plain = \"127.0.0.1:0\"\nhttp_plain = \"\"\n[log]\nlevel = \"warn\"\n",
		filepath.Join(dir, "data")) + toml
	path := filepath.Join(dir, "nexy.toml")
	if err := os.WriteFile(path, []byte(toml), 0o600); err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(os.Args[0], "-test.run=^$")
	cmd.Env = append(os.Environ(), "NEXY_TEST_CHILD_CONFIG="+path, fmt.Sprintf("GOGC=%d", gogc))
	var stderr strings.Builder
	cmd.Stderr = &stderr
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = cmd.Process.Kill() })
	out := bufio.NewScanner(stdout)
	c := &child{dataDir: filepath.Join(dir, "data")}
	if out.Scan() {
		c.addr, _ = strings.CutPrefix(out.Text(), "ADDR ")
	}
	if c.addr == "" {
		t.Fatalf("child server did not start:\n%s", stderr.String())
	}
	c.stop = func() map[string]int {
		if err := cmd.Process.Signal(syscall.SIGTERM); err != nil {
			t.Fatal(err)
		}
		report := map[string]int{}
		for out.Scan() {
			if k, v, ok := strings.Cut(out.Text(), " "); ok {
				report[k], _ = strconv.Atoi(v)
			}
		}
		if err := cmd.Wait(); err != nil {
			t.Fatalf("child: %v\n%s", err, stderr.String())
		}
		if report["PEAK_HEAP"] == 0 {
			t.Fatalf("no heap report from the child:\n%s", stderr.String())
		}
		return report
	}
	c.kill = func() {
		_ = cmd.Process.Kill()
		_ = cmd.Wait()
	}
	return c
}

// bigScreenshot is base64 of a WebP header and filler, n characters long.
func bigScreenshot(n int) string {
	head := "UklGRhoAAABXRUJQ" // "RIFF....WEBP"
	return head + strings.Repeat("A", n-len(head))
}

// TestLargeCollectBurstHeapBound is the repro of a burst of large requests:
// 150 concurrent COLLECTs, each with a 3 MB screenshot, against a server in
// a child process. What the server holds at its peak must stay within its
// configured budgets (request bytes in flight and the COLLECT buffer), not
// grow with the number of requests: before the budget it was 150 × 3 MB,
// twice over (the received bytes and the decoded string).
func TestLargeCollectBurstHeapBound(t *testing.T) {
	if testing.Short() {
		t.Skip("sends 450 MB over loopback")
	}
	const (
		requests = 150
		budget   = 32 << 20
		collect  = 32 << 20
		gogc     = 50
	)
	child := startChild(t, fmt.Sprintf(`[llm]
provider = "openai"
base_url = "http://127.0.0.1:1/v1"
model = "none"
[tts]
provider = "openai"
base_url = "http://127.0.0.1:1/v1"
[limits]
max_streams_per_conn = %d
request_bytes_in_flight = %d
collect_max_bytes = %d
collect_per_device_bytes = %d
`, requests, budget, collect, 16<<20), gogc)
	addr := child.addr

	shot := bigScreenshot(3<<20 - 1024)
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	var conns []*grpc.ClientConn
	for range 5 {
		conn, err := grpc.NewClient(addr, grpc.WithTransportCredentials(insecure.NewCredentials()))
		if err != nil {
			t.Fatal(err)
		}
		defer conn.Close()
		conns = append(conns, conn)
	}
	var wg sync.WaitGroup
	var mu sync.Mutex
	outcomes := map[string]int{}
	for i := range requests {
		wg.Add(1)
		go func() {
			defer wg.Done()
			req := collectReq(newSession(), 1, "")
			req.HardwareId = fmt.Sprintf("FLOOD-DEVICE-%04d", i)
			req.Screenshot = &shot
			s, err := pb.NewStreamingServiceClient(conns[i%len(conns)]).StreamAudio(ctx, req)
			var msgs []*pb.StreamResponse
			if err == nil {
				msgs, err = readAll(s)
			}
			outcome := status.Code(err).String()
			if len(msgs) == 1 && msgs[0].GetEndMessage() == collectAccepted {
				outcome = "accepted"
			} else if len(msgs) == 1 {
				outcome += ": " + strings.SplitN(msgs[0].GetErrorMessage(), ":", 2)[0]
			}
			mu.Lock()
			outcomes[outcome]++
			mu.Unlock()
		}()
	}
	waitGroup(t, &wg, "the burst to be answered", 2*time.Minute)
	report := child.stop()
	// Live data is at most the reservations (each read holds its bytes and,
	// briefly, their decoded copy), the COLLECT buffer, grpc-go's pooled
	// read buffers and a little; with GOGC=50 the heap may reach 1.5 × that
	// before a collection, more when the collector lags on a loaded machine,
	// hence 2 ×. Without the budget and the fixed window the same burst
	// peaked at 690 MB.
	bound := (2*budget + collect + 16<<20) * 2
	t.Logf("outcomes %v; server peak heap %.0f MiB (bound %.0f MiB), peak RSS %.0f MiB",
		outcomes, float64(report["PEAK_HEAP"])/(1<<20), float64(bound)/(1<<20), float64(report["VMHWM_KB"])/1024)
	if report["PEAK_HEAP"] > bound {
		t.Errorf("server heap peaked at %d bytes, over the bound %d for its limits", report["PEAK_HEAP"], bound)
	}
	if outcomes["accepted"] == 0 {
		t.Errorf("no COLLECT was accepted: %v", outcomes)
	}
}

// waitGroup waits for wg, failing instead of hanging.
func waitGroup(t *testing.T, wg *sync.WaitGroup, what string, limit time.Duration) {
	t.Helper()
	done := make(chan struct{})
	go func() { wg.Wait(); close(done) }()
	select {
	case <-done:
	case <-time.After(limit):
		t.Fatalf("timed out after %v waiting for %s", limit, what)
	}
}

// trickle opens a raw HTTP/2 call of method (e.g. "StreamAudio") from the
// loopback address from, whose message header announces size bytes and then
// sends only a few of them, holding the stream open: a client trickling a
// large request.
func trickle(t *testing.T, addr, method, from string, size int) (<-chan *http.Response, func()) {
	t.Helper()
	tr := &http2.Transport{AllowHTTP: true, DialTLSContext: func(ctx context.Context, network, addr string, _ *tls.Config) (net.Conn, error) {
		d := net.Dialer{LocalAddr: &net.TCPAddr{IP: net.ParseIP(from)}}
		return d.DialContext(ctx, network, addr)
	}}
	t.Cleanup(tr.CloseIdleConnections)
	body, w := io.Pipe()
	req, err := http.NewRequest(http.MethodPost, "http://"+addr+"/streaming.StreamingService/"+method, body)
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Content-Type", "application/grpc")
	req.Header.Set("TE", "trailers")
	go func() {
		var head [5]byte
		binary.BigEndian.PutUint32(head[1:], uint32(size))
		_, _ = w.Write(head[:])
		_, _ = w.Write(make([]byte, 100))
	}()
	t.Cleanup(func() { w.Close() })
	// RoundTrip returns with the response headers, which the server sends
	// only when it answers: after the receive timeout.
	got := make(chan *http.Response, 1)
	go func() {
		resp, err := tr.RoundTrip(req)
		if err != nil {
			t.Error(err)
			close(got)
			return
		}
		t.Cleanup(func() { resp.Body.Close() })
		got <- resp
	}()
	return got, func() { w.Close(); tr.CloseIdleConnections() }
}

// trickleAnswer waits (bounded) for the server's answer to a trickling call
// and reads it whole: its body and its grpc-status.
func trickleAnswer(t *testing.T, answer <-chan *http.Response) (resp *http.Response, body []byte, grpcStatus string) {
	t.Helper()
	select {
	case resp = <-answer:
	case <-time.After(waitLimit):
		t.Fatal("the trickling call was never answered")
	}
	if resp == nil {
		t.Fatal("no response to the trickling call")
	}
	body, _ = io.ReadAll(resp.Body)
	grpcStatus = resp.Trailer.Get("Grpc-Status")
	if grpcStatus == "" {
		grpcStatus = resp.Header.Get("Grpc-Status") // a trailers-only answer
	}
	return resp, body, grpcStatus
}

// TestTricklingRequestCannotHoldTheBudget: a request whose bytes do not
// arrive within limits.receive_timeout is refused and gives its reservation
// back, so a client trickling large messages cannot lock the others out; a
// request that waited for the budget meanwhile is answered.
func TestTricklingRequestCannotHoldTheBudget(t *testing.T) {
	fake := llmtest.NewOpenAI(t, llmtest.Script{Deltas: []string{`{"text": "Ok."}`}})
	cfg := testConfig(t, "openai", fake.URL, newSpeechFake(t).URL)
	cfg.Limits.RequestBytesInFlight = cfg.Limits.MaxMessageBytes // room for one request being read
	cfg.Limits.ReceiveTimeout = config.Duration{Duration: 500 * time.Millisecond}
	base := runtime.NumGoroutine()
	h := startServer(t, cfg)
	answer, closeTrickle := trickle(t, h.srv.GRPCAddr().String(), "StreamAudio", "127.0.0.1", 1<<20)
	budget := h.srv.svc.budget.sem
	waitFor(t, "the trickling request to hold the budget", func() bool {
		if budget.TryAcquire(1) {
			budget.Release(1)
			return false
		}
		return true
	})
	// Start waiting for the budget well before the trickler's reservation
	// expires, so the COLLECT's own wait cannot run out first.
	time.Sleep(cfg.Limits.ReceiveTimeout.Duration / 3)
	msgs, err := h.call(t, collectReq(newSession(), 1, "hello"))
	if err != nil || len(msgs) != 1 || msgs[0].GetEndMessage() != collectAccepted {
		t.Fatalf("a COLLECT behind the trickling request: %v %v", msgs, err)
	}
	resp, body, grpcStatus := trickleAnswer(t, answer)
	if grpcStatus != strconv.Itoa(int(codes.DeadlineExceeded)) {
		t.Fatalf("trickling request ended with grpc-status %q, want DEADLINE_EXCEEDED", grpcStatus)
	}
	if !strings.Contains(string(body), "limits.receive_timeout") {
		t.Errorf("no error_message naming limits.receive_timeout in %q", body)
	}
	if !strings.Contains(h.log.String(), "limits.receive_timeout") {
		t.Errorf("the refusal is not in the log")
	}
	resp.Body.Close()
	closeTrickle()
	checkNoLeak(t, h, base)
}

// TestOversizedRequestsAreLogged: requests refused by gRPC's size limit
// before any handler runs leave a decision line, streaming and unary alike;
// a long ReportUsage source is refused by validation, and no log line grows
// with what the client sent.
func TestOversizedRequestsAreLogged(t *testing.T) {
	fake := llmtest.NewOpenAI(t, llmtest.Script{Deltas: []string{`{"text": "Ok."}`}})
	cfg := testConfig(t, "openai", fake.URL, newSpeechFake(t).URL)
	cfg.Limits.MaxMessageBytes = 64 << 10
	cfg.Limits.MaxScreenshotBytes = 32 << 10
	cfg.Limits.RequestBytesInFlight = 64 << 10
	base := runtime.NumGoroutine()
	h := startServer(t, cfg)
	ctx, cancel := context.WithTimeout(context.Background(), waitLimit)
	defer cancel()

	big := strings.Repeat("x", 100<<10)
	if _, err := h.call(t, commitReq(newSession(), big)); status.Code(err) != codes.ResourceExhausted {
		t.Fatalf("oversized StreamAudio: %v", err)
	}
	if _, err := h.client.ReportUsage(ctx, &pb.UsageRequest{HardwareId: testHW, Source: big}); status.Code(err) != codes.ResourceExhausted {
		t.Fatalf("oversized ReportUsage: %v", err)
	}
	if _, err := h.client.ReportUsage(ctx, &pb.UsageRequest{HardwareId: testHW, SessionId: newSession(), Source: big[:60<<10]}); status.Code(err) != codes.InvalidArgument ||
		!strings.Contains(status.Convert(err).Message(), "limits.max_id_length") {
		t.Fatalf("ReportUsage with a 60 KB source: %v", err)
	}
	if r, err := h.client.ReportUsage(ctx, &pb.UsageRequest{HardwareId: testHW, SessionId: newSession(), Source: "browser_agent", Model: "gemini-2.5-flash", InputTokens: 10}); err != nil || !r.GetSuccess() {
		t.Fatalf("ReportUsage of a normal source: %v %v", r, err)
	}
	log := h.log.String()
	for _, method := range []string{"method=StreamAudio", "method=ReportUsage"} {
		if !regexp.MustCompile(method + ` decision=reject .*code=ResourceExhausted`).MatchString(log) {
			t.Errorf("no reject line for the oversized %s:\n%s", method, log)
		}
	}
	for _, line := range strings.Split(log, "\n") {
		if len(line) > 4096 {
			t.Errorf("a log line of %d bytes: %.200s…", len(line), line)
		}
	}
	checkNoLeak(t, h, base)
}

// TestStalledTurnsAtLimitHeapBound: the server at limits.max_concurrent_streams
// with every client stalled (a 64 KB window, never read) holds a bounded
// amount per turn: what the HTTP/2 window and the outbox hold, plus the audio
// synthesized ahead (tts.lookahead segments, each bounded), not the answer.
func TestStalledTurnsAtLimitHeapBound(t *testing.T) {
	if testing.Short() {
		t.Skip("runs 50 stalled turns in a child server")
	}
	const turns, gogc = 50, 50
	fake := llmtest.NewOpenAI(t, scripts(turns, longAnswer)...)
	speech := newSpeechFake(t)
	c := startChild(t, fmt.Sprintf(`[llm]
provider = "openai"
base_url = %q
model = "llama3.2"
api_key = %q
[tts]
provider = "openai"
base_url = %q
[limits]
max_concurrent_streams = %d
max_turns_per_device = %d
max_streams_per_conn = %d
send_timeout = "5m"
idle_timeout = "5m"
grace_period = "1s"
`, fake.URL, testKey(t), speech.URL, turns, turns, turns), gogc)
	conn, err := grpc.NewClient(c.addr, grpc.WithTransportCredentials(insecure.NewCredentials()),
		grpc.WithInitialWindowSize(64<<10), grpc.WithInitialConnWindowSize(64<<10))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	client := pb.NewStreamingServiceClient(conn)
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	for range turns {
		if _, err := client.StreamAudio(ctx, commitReq(newSession(), "tell me a lot")); err != nil {
			t.Fatal(err)
		}
	}
	// Each stalled turn synthesizes its first segments while it waits.
	waitFor(t, "every turn to reach the model", func() bool { return len(fake.Requests()) == turns })
	waitFor(t, "synthesis to run ahead in every turn", func() bool { return len(speech.requests()) >= 2*turns })
	time.Sleep(500 * time.Millisecond) // let the look-ahead segments fill their queues
	report := c.stop()
	perTurn := float64(report["PEAK_HEAP"]) / turns
	t.Logf("%d stalled turns: server peak heap %.1f MiB (%.0f KiB per turn), peak RSS %.0f MiB",
		turns, float64(report["PEAK_HEAP"])/(1<<20), perTurn/1024, float64(report["VMHWM_KB"])/1024)
	// Per turn: the segment being sent (window, write quota, outbox) and
	// tts.lookahead segments synthesized ahead; each segment of this
	// fixture is about 120 KB of 48 kHz audio. 1 MiB a turn is generous.
	if bound := (turns<<20 + 16<<20) * (100 + gogc) / 100; report["PEAK_HEAP"] > bound {
		t.Errorf("server heap peaked at %d bytes with %d stalled turns, over %d", report["PEAK_HEAP"], turns, bound)
	}
}

// TestOnePeerCannotTakeTheWholeBudget: a host that opens many streams and
// sends nothing holds at most its share of the reads in progress; a request
// from another host is read at once, long before the receive timeout. A
// unary request is read under the same budget and timeout.
func TestOnePeerCannotTakeTheWholeBudget(t *testing.T) {
	fake := llmtest.NewOpenAI(t, llmtest.Script{Deltas: []string{`{"text": "Ok."}`}})
	cfg := testConfig(t, "openai", fake.URL, newSpeechFake(t).URL)
	cfg.Limits.RequestBytesInFlight = 8 * cfg.Limits.MaxMessageBytes // 8 reads; 2 per peer
	cfg.Limits.ReceiveTimeout = config.Duration{Duration: time.Minute}
	h := startServer(t, cfg)
	addr := h.srv.GRPCAddr().String()
	var closers []func()
	defer func() {
		for _, c := range closers {
			c()
		}
	}()
	for range 8 {
		_, c := trickle(t, addr, "StreamAudio", "127.0.0.2", 1<<20)
		closers = append(closers, c)
	}
	_, c := trickle(t, addr, "ReportUsage", "127.0.0.2", 1<<20)
	closers = append(closers, c)
	budget := h.srv.svc.budget
	waitFor(t, "the host's share of reads to be taken", func() bool {
		budget.peers.mu.Lock()
		defer budget.peers.mu.Unlock()
		s := budget.peers.m["127.0.0.2"]
		return s != nil && len(s.ch) == budget.peers.perPeer && s.users == 9
	})
	if budget.sem.TryAcquire(6 * budget.max) { // the other 6 reads are free
		budget.sem.Release(6 * budget.max)
	} else {
		t.Fatal("one host holds more than its share of the request budget")
	}
	start := time.Now()
	msgs, err := h.call(t, collectReq(newSession(), 1, "hello"))
	if err != nil || msgs[0].GetEndMessage() != collectAccepted || time.Since(start) > cfg.Limits.ReceiveTimeout.Duration/2 {
		t.Fatalf("a COLLECT from another host: %v %v after %v", msgs, err, time.Since(start))
	}
}

// TestTricklingUnaryRequestIsRefused: ReportUsage is read under the receive
// timeout like the streaming RPCs.
func TestTricklingUnaryRequestIsRefused(t *testing.T) {
	fake := llmtest.NewOpenAI(t, llmtest.Script{Deltas: []string{`{"text": "Ok."}`}})
	cfg := testConfig(t, "openai", fake.URL, newSpeechFake(t).URL)
	cfg.Limits.ReceiveTimeout = config.Duration{Duration: 300 * time.Millisecond}
	h := startServer(t, cfg)
	answer, closeTrickle := trickle(t, h.srv.GRPCAddr().String(), "ReportUsage", "127.0.0.1", 1<<20)
	defer closeTrickle()
	_, _, grpcStatus := trickleAnswer(t, answer)
	if grpcStatus != strconv.Itoa(int(codes.DeadlineExceeded)) {
		t.Fatalf("trickling ReportUsage ended with grpc-status %q, want DEADLINE_EXCEEDED", grpcStatus)
	}
	if !regexp.MustCompile(`method=ReportUsage decision=reject .*limits.receive_timeout`).MatchString(h.log.String()) {
		t.Errorf("the refusal is not in the log:\n%s", h.log.String())
	}
}
