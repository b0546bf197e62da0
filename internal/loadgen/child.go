package loadgen

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"
)

// ServerOptions start a `nexy serve` child against the fakes.
type ServerOptions struct {
	Exe      string   // the nexy binary (os.Executable())
	Env      []string // added to the child's environment (tests: NEXY_TEST_RUN_MAIN=1)
	LLMURL   string   // the fakes' /v1 root
	TTSURL   string
	Devices  int    // limits are raised so this many devices are never refused
	Preempt  string // "" = no [preempt] section; else its enabled value
	Memory   string // memory.analyzer
	LogFile  string // the child's stderr goes here ("" = discarded)
	Pprof    bool   // metrics.pprof: the profiler on the child's HTTP port
	StartMax time.Duration
}

// ServerConfig is the nexy.toml of a benchmarked server: the fakes as its
// providers, plaintext gRPC and HTTP on free loopback ports, the store and
// persistence on, and every limit a load of o.Devices could hit raised.
func ServerConfig(o ServerOptions, dataDir string) string {
	streams := min(max(1000, 2*o.Devices), 100000)
	memory := o.Memory
	if memory == "" {
		memory = "heuristic"
	}
	var b strings.Builder
	fmt.Fprintf(&b, `# written by nexy bench
[server]
profile = "dev"
data_dir = %q

[listen]
grpc_plain = "127.0.0.1:0"
http_plain = "127.0.0.1:0"
address = ""
http_redirect = ""

[tls]
mode = "off"

[llm]
provider = "openai"
base_url = %q
model = "bench-model"
api_key = ""

[tts]
provider = "openai"
base_url = %q
model = "bench-tts"
voice = "alloy"
format = "wav"

[limits]
max_concurrent_streams = %d
max_turns_per_device = 3
max_rate_per_second = 0.0
max_streams_per_conn = 10000
# each read reserves max_message_bytes: room for every device's reads, and
# one client IP (all devices are on loopback) may use a quarter of them
request_bytes_in_flight = 17179869184
collect_max_sessions = 100000
collect_per_device = 8
grace_period = "2s"

[devices]
pairing = "open"

[quotas]
daily_turns = 0
daily_tokens = 0

[memory]
analyzer = %q

[metrics]
summary_interval = "0s"
pprof = %t

[log]
level = "info"
format = "text"
`, dataDir, o.LLMURL, o.TTSURL, streams, memory, o.Pprof)
	if o.Preempt != "" {
		fmt.Fprintf(&b, "\n[preempt]\nenabled = %q\n", o.Preempt)
	}
	return b.String()
}

// Child is a server process started by the bench: `nexy serve` or the floor.
type Child struct {
	Name     string
	PID      int
	GRPCAddr string
	HTTPAddr string
	// StartTime is from the process start to its first answer (/health for
	// serve, a ready gRPC connection for the floor).
	StartTime time.Duration

	cmd     *exec.Cmd
	stdin   io.WriteCloser
	exited  chan struct{}
	waitErr error
	logDone chan struct{}
	tmp     string
	mu      sync.Mutex
	tail    []string // last lines of its stderr, for errors
}

// Tail is the last lines the child wrote to stderr.
func (c *Child) Tail() string {
	c.mu.Lock()
	defer c.mu.Unlock()
	return strings.Join(c.tail, "\n")
}

var (
	reGRPC = regexp.MustCompile(`\bgrpc=(\S+)`)
	reHTTP = regexp.MustCompile(`\bhttp=(\S+)`)
)

// childEnv is the bench's environment without NEXY_* settings, which would
// override the written config (the test hook NEXY_TEST_RUN_MAIN stays), plus extra.
func childEnv(extra []string) []string {
	var env []string
	for _, kv := range os.Environ() {
		if strings.HasPrefix(kv, "NEXY_") && !strings.HasPrefix(kv, "NEXY_TEST_RUN_MAIN=") {
			continue
		}
		env = append(env, kv)
	}
	return append(env, extra...)
}

// StartServer writes a config and a data dir under a new temp dir, starts
// `nexy serve -config` and waits until /health answers.
func StartServer(ctx context.Context, o ServerOptions) (*Child, error) {
	tmp, err := os.MkdirTemp("", "nexy-bench-*")
	if err != nil {
		return nil, err
	}
	cfgPath := filepath.Join(tmp, "nexy.toml")
	if err := os.WriteFile(cfgPath, []byte(ServerConfig(o, filepath.Join(tmp, "data"))), 0o600); err != nil {
		os.RemoveAll(tmp)
		return nil, err
	}
	c := &Child{Name: "server", tmp: tmp, exited: make(chan struct{}), logDone: make(chan struct{})}
	c.cmd = exec.Command(o.Exe, "serve", "-config", cfgPath)
	c.cmd.Dir = tmp
	c.cmd.Env = childEnv(o.Env)
	c.cmd.SysProcAttr = sysProcAttr()
	stderr, err := c.cmd.StderrPipe()
	if err != nil {
		os.RemoveAll(tmp)
		return nil, err
	}
	var logFile io.Writer = io.Discard
	if o.LogFile != "" {
		f, err := os.Create(o.LogFile)
		if err != nil {
			os.RemoveAll(tmp)
			return nil, fmt.Errorf("--server-log: %w", err)
		}
		defer func() {
			go func() { <-c.logDone; f.Close() }()
		}()
		logFile = f
	}
	addrs := make(chan [2]string, 1)
	start := time.Now()
	if err := c.cmd.Start(); err != nil {
		os.RemoveAll(tmp)
		return nil, err
	}
	c.PID = c.cmd.Process.Pid
	go c.readLog(stderr, logFile, func(line string) bool {
		if !strings.Contains(line, "Server started") {
			return false
		}
		var a [2]string
		if m := reGRPC.FindStringSubmatch(line); m != nil {
			a[0] = strings.Trim(m[1], `"`)
		}
		if m := reHTTP.FindStringSubmatch(line); m != nil {
			a[1] = strings.Trim(m[1], `"`)
		}
		addrs <- a
		return true
	})
	go func() { c.waitErr = c.cmd.Wait(); close(c.exited) }()
	wait := o.StartMax
	if wait == 0 {
		wait = 30 * time.Second
	}
	deadline := time.NewTimer(wait)
	defer deadline.Stop()
	select {
	case a := <-addrs:
		c.GRPCAddr, c.HTTPAddr = a[0], a[1]
	case <-c.exited:
		<-c.logDone
		c.cleanup()
		return nil, c.startErr()
	case <-deadline.C:
		c.Stop()
		return nil, fmt.Errorf("nexy serve did not start within %s:\n%s", wait, c.Tail())
	case <-ctx.Done():
		c.Stop()
		return nil, ctx.Err()
	}
	if c.GRPCAddr == "" || c.HTTPAddr == "" {
		c.Stop()
		return nil, fmt.Errorf("nexy serve started without a plaintext gRPC and HTTP address:\n%s", c.Tail())
	}
	client := &http.Client{Timeout: time.Second}
	for {
		resp, err := client.Get("http://" + c.HTTPAddr + "/health")
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				c.StartTime = time.Since(start)
				return c, nil
			}
		}
		select {
		case <-c.exited:
			<-c.logDone
			c.cleanup()
			return nil, c.startErr()
		case <-deadline.C:
			c.Stop()
			return nil, fmt.Errorf("nexy serve: /health did not answer within %s: %v", wait, err)
		case <-ctx.Done():
			c.Stop()
			return nil, ctx.Err()
		case <-time.After(time.Millisecond):
		}
	}
}

// StartFloor starts `nexy bench --serve-floor` (args are its timing flags)
// and waits until its gRPC port accepts a connection.
func StartFloor(ctx context.Context, exe string, env []string, args []string) (*Child, error) {
	c := &Child{Name: "floor", exited: make(chan struct{}), logDone: make(chan struct{})}
	c.cmd = exec.Command(exe, append([]string{"bench", "--serve-floor", "127.0.0.1:0"}, args...)...)
	c.cmd.Env = childEnv(env)
	c.cmd.SysProcAttr = sysProcAttr()
	stdin, err := c.cmd.StdinPipe() // the floor ends when this closes, even if the bench dies
	if err != nil {
		return nil, err
	}
	stdout, err := c.cmd.StdoutPipe()
	if err != nil {
		return nil, err
	}
	c.cmd.Stderr = &tailWriter{c: c}
	start := time.Now()
	if err := c.cmd.Start(); err != nil {
		return nil, err
	}
	c.PID = c.cmd.Process.Pid
	c.stdin = stdin
	addrs := make(chan [2]string, 1)
	go c.readLog(stdout, io.Discard, func(line string) bool {
		addr, ok := strings.CutPrefix(line, "floor listening on ")
		if ok {
			addrs <- [2]string{strings.TrimSpace(addr)}
		}
		return ok
	})
	go func() { c.waitErr = c.cmd.Wait(); close(c.exited) }()
	select {
	case a := <-addrs:
		c.GRPCAddr = a[0]
	case <-c.exited:
		return nil, fmt.Errorf("the floor server exited at start (%v):\n%s", c.waitErr, c.Tail())
	case <-time.After(30 * time.Second):
		c.Stop()
		return nil, errors.New("the floor server did not start within 30s")
	case <-ctx.Done():
		c.Stop()
		return nil, ctx.Err()
	}
	conn, err := Dial(c.GRPCAddr, "")
	if err == nil {
		wctx, cancel := context.WithTimeout(ctx, 10*time.Second)
		err = waitReady(wctx, conn)
		cancel()
		conn.Close()
	}
	if err != nil {
		c.Stop()
		return nil, fmt.Errorf("the floor server: %w", err)
	}
	c.StartTime = time.Since(start)
	return c, nil
}

// startErr says why the child ended at start: its last line on the first
// line of the error (a config error names the key there), then its log.
func (c *Child) startErr() error {
	tail := c.Tail()
	last := tail
	if i := strings.LastIndexByte(strings.TrimSpace(tail), '\n'); i >= 0 {
		last = strings.TrimSpace(tail)[i+1:]
	}
	return fmt.Errorf("nexy serve exited at start (%v): %s\n%s", c.waitErr, strings.TrimSpace(last), tail)
}

// readLog copies r to w line by line, keeps the last lines, and hands each
// to found until it returns true.
func (c *Child) readLog(r io.Reader, w io.Writer, found func(string) bool) {
	defer close(c.logDone)
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	done := false
	for sc.Scan() {
		line := sc.Text()
		_, _ = io.WriteString(w, line+"\n")
		c.keep(line)
		if !done {
			done = found(line)
		}
	}
	_, _ = io.Copy(w, r) // a line longer than the buffer: keep draining
}

func (c *Child) keep(line string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.tail = append(c.tail, line); len(c.tail) > 20 {
		c.tail = c.tail[1:]
	}
}

// tailWriter keeps the last lines written to it.
type tailWriter struct{ c *Child }

func (t *tailWriter) Write(p []byte) (int, error) {
	for _, l := range strings.Split(strings.TrimRight(string(p), "\n"), "\n") {
		t.c.keep(l)
	}
	return len(p), nil
}

// Stop ends the child: SIGTERM, then SIGKILL after 10 s. It removes the
// child's temp dir and returns how it exited ("" = cleanly).
func (c *Child) Stop() string {
	if c.stdin != nil {
		c.stdin.Close()
	}
	select {
	case <-c.exited:
	default:
		_ = c.cmd.Process.Signal(syscall.SIGTERM)
		select {
		case <-c.exited:
		case <-time.After(10 * time.Second):
			_ = c.cmd.Process.Kill()
			<-c.exited
		}
	}
	select {
	case <-c.logDone:
	case <-time.After(5 * time.Second):
	}
	c.cleanup()
	if c.waitErr != nil {
		return c.waitErr.Error()
	}
	return ""
}

func (c *Child) cleanup() {
	if c.tmp != "" {
		os.RemoveAll(c.tmp)
		c.tmp = ""
	}
}

// Sample reads the child's /proc entries.
func (c *Child) Sample() (ProcSample, error) { return ReadProc(c.PID) }

// String names the child for messages.
func (c *Child) String() string { return c.Name + " (pid " + strconv.Itoa(c.PID) + ")" }
