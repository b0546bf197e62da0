package main

import (
	"bytes"
	"context"
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/nexy-server/nexy/internal/loadgen"
)

// TestBench runs `nexy bench` in a child process, which starts `nexy serve`
// and the floor server as its own children (this test binary, through
// TestMain): 2 devices, a few turns each, every stage measured, no errors.
// Nothing about speed is asserted (machines are noisy).
func TestBench(t *testing.T) {
	if testing.Short() {
		t.Skip("starts three processes")
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	logFile := filepath.Join(t.TempDir(), "server.log")
	cmd := exec.CommandContext(ctx, os.Args[0], "bench", "--devices", "2", "--turns", "6", "--collects", "2", "--collect-interval", "5ms",
		"--llm-first-token", "5ms", "--tts-first-byte", "2ms", "--audio-sec", "0.3", "--floor", "--json", "--server-log", logFile)
	cmd.Dir = t.TempDir()
	cmd.Env = append(os.Environ(), "NEXY_TEST_RUN_MAIN=1")
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	err := cmd.Run()
	if ctx.Err() != nil {
		t.Fatalf("nexy bench did not finish in time\nstderr:\n%s", stderr.String())
	}
	if err != nil {
		t.Fatalf("nexy bench: %v\nstdout:\n%s\nstderr:\n%s", err, stdout.String(), stderr.String())
	}
	var res loadgen.Result
	if err := json.Unmarshal(stdout.Bytes(), &res); err != nil {
		t.Fatalf("--json output does not parse: %v\n%s", err, stdout.String())
	}
	for _, r := range []*loadgen.Report{res.Server, res.Floor} {
		if r == nil {
			t.Fatalf("report lacks the server or the floor:\n%s", stdout.String())
		}
		if r.Turns != 6 || r.Failed != 0 || len(r.Errors) != 0 || r.BadChunks != 0 || r.AudioChunks == 0 {
			t.Errorf("%s: %d good turns, %d failed, %v, %d of %d chunks bad", r.Name, r.Turns, r.Failed, r.Errors, r.BadChunks, r.AudioChunks)
		}
		for _, s := range loadgen.Stages {
			want := 6
			if s == loadgen.StageCollectAck {
				want = 12
			}
			if p := r.Stages[s]; p.N != want || p.P50 <= 0 || p.Max < p.P99 || p.P99 < p.P90 || p.P90 < p.P50 {
				t.Errorf("%s: stage %s: %+v, want %d samples", r.Name, s, p, want)
			}
		}
		if r.TurnsPerSec <= 0 {
			t.Errorf("%s: %v turns/s", r.Name, r.TurnsPerSec)
		}
	}
	if p := res.Server.Process; p != nil { // Linux: /proc
		if p.StartMS <= 0 || p.IdleRSSMB <= 0 || p.PeakRSSMB < p.IdleRSSMB || p.Exit != "" {
			t.Errorf("server process: %+v", p)
		}
	}
	if res.Ratios == nil || res.Ratios.Stages[loadgen.StageFirstAudio].P50 <= 0 {
		t.Errorf("no server/floor ratios: %+v", res.Ratios)
	}
	// Same answer from both: the floor streams the bytes the server does.
	if res.Server.AudioChunks != res.Floor.AudioChunks {
		t.Errorf("server sent %d audio chunks, floor %d", res.Server.AudioChunks, res.Floor.AudioChunks)
	}
	if log, err := os.ReadFile(logFile); err != nil || !strings.Contains(string(log), "Server started") {
		t.Errorf("--server-log: %v\n%s", err, log)
	}
	if !strings.Contains(stderr.String(), "bench server:") && stderr.Len() > 0 {
		t.Logf("progress on stderr:\n%s", stderr.String())
	}
}

// TestBenchCommandLine: bad flags are refused before anything starts.
func TestBenchCommandLine(t *testing.T) {
	cases := []struct {
		args []string
		code int
		out  string // in stdout (code 0) or stderr
	}{
		{[]string{"bench", "-h"}, 0, "usage: nexy bench"},
		{[]string{"bench", "--devices", "0"}, 2, "--devices 0: want 1..2000"},
		{[]string{"bench", "--devices", "100000"}, 2, "want 1..2000"},
		{[]string{"bench", "--duration", "2h"}, 2, "--duration 2h0m0s"},
		{[]string{"bench", "--addr", "10.1.2.3:50051"}, 2, "--allow-remote"},
		{[]string{"bench", "--preempt", "maybe"}, 2, `--preempt "maybe"`},
		{[]string{"bench", "--tls-pin", "AB"}, 2, "--tls-pin needs --addr"},
		{[]string{"bench", "--sentences", "0"}, 2, "--sentences 0"},
		{[]string{"bench", "extra"}, 2, `unexpected argument "extra"`},
	}
	for _, c := range cases {
		var stdout, stderr bytes.Buffer
		code := run(c.args, &stdout, &stderr)
		out := stderr.String()
		if c.code == 0 {
			out = stdout.String()
		}
		if code != c.code || !strings.Contains(out, c.out) {
			t.Errorf("nexy %q: exit %d, want %d; output %q lacks %q", c.args, code, c.code, out, c.out)
		}
	}
	var stdout bytes.Buffer
	run([]string{"bench", "-h"}, &stdout, &bytes.Buffer{})
	if strings.Contains(stdout.String(), "serve-floor") {
		t.Error("the internal --serve-floor flag is in the help")
	}
}
