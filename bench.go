package main

import (
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"strings"
	"syscall"
	"text/tabwriter"
	"time"

	"github.com/nexy-server/nexy/internal/loadgen"
)

// benchOptions are the flags of `nexy bench`.
type benchOptions struct {
	run        loadgen.Options
	json       bool
	targets    bool
	serveFloor string
}

// benchTimingFlags are the flags that set the fakes' timing (and the floor's).
func benchTimingFlags(fs *flag.FlagSet, t *loadgen.Timing) {
	fs.DurationVar(&t.LLMFirstToken, "llm-first-token", 0, "fake LLM: delay before the first token")
	fs.Float64Var(&t.TokensPerSec, "llm-tokens-per-sec", 0, "fake LLM: tokens per second after the first (0 = all at once)")
	fs.IntVar(&t.Sentences, "sentences", 3, "fake LLM: sentences per answer (each one spoken segment)")
	fs.DurationVar(&t.TTSFirstByte, "tts-first-byte", 0, "fake TTS: delay before the speech's first byte")
	fs.Float64Var(&t.AudioSec, "audio-sec", 1, "fake TTS: seconds of speech per sentence (a tone)")
	fs.IntVar(&t.TTSRate, "tts-rate", 48000, "fake TTS: sample rate of its WAV (mono s16)")
}

const benchUsage = `usage: nexy bench [flags]

Load-tests a server like many Macs running the app at once: each device
(its own hardware id and connection) sends COLLECTs while the key is held,
then the COMMIT, checks every message of the answer against the wire
contract, and records when each stage arrived. Without --addr it starts
'nexy serve' as a child process (temp config and data dir, the store on)
against built-in fake LLM and TTS servers whose latency the flags set
(all zero: "zero-latency fakes"), and reports the child's CPU per turn,
peak and idle memory and start time. With --floor it runs the same load
against a minimal gRPC server that streams the same answer on the same
timing, and prints server/floor ratios (the figures that count on a noisy
machine). Progress goes to stderr; the report to stdout.

  nexy bench --devices 50 --duration 5s --floor
  nexy bench --devices 500 --duration 10s --llm-first-token 300ms --llm-tokens-per-sec 50 --tts-first-byte 200ms --floor
  nexy bench --targets       the performance issue's scenarios and targets, pass/fail (about a minute)

flags:
`

func parseBench(args []string, stdout, stderr io.Writer) (o benchOptions, code int, ok bool) {
	fs := flag.NewFlagSet("bench", flag.ContinueOnError)
	r := &o.run
	l := &r.Load
	fs.StringVar(&r.Addr, "addr", "", "load a running server at this gRPC address instead of starting one (loopback unless --allow-remote)")
	fs.StringVar(&r.TLSPin, "tls-pin", "", "with --addr: TLS, accepting the certificate with this SHA-256 fingerprint (hex, colons optional)")
	fs.BoolVar(&r.AllowRemote, "allow-remote", false, "allow an --addr that is not loopback")
	fs.IntVar(&l.Devices, "devices", 10, fmt.Sprintf("concurrent devices (1..%d)", loadgen.MaxDevices))
	fs.IntVar(&l.Turns, "turns", 0, "turns in total (0 = until --duration)")
	fs.DurationVar(&l.Duration, "duration", 10*time.Second, fmt.Sprintf("start turns for this long (at most %s; with --turns and no --duration: until the turns are done)", loadgen.MaxDuration))
	fs.DurationVar(&l.Think, "think", 0, "a device's pause between its turns")
	fs.IntVar(&l.Collects, "collects", 1, "COLLECTs per turn, with a growing transcript (the last one complete)")
	fs.DurationVar(&l.CollectInterval, "collect-interval", 120*time.Millisecond, "pause between COLLECTs")
	fs.DurationVar(&l.Hold, "hold", 0, "pause between the last COLLECT and the COMMIT (the key still held)")
	fs.DurationVar(&l.TurnTimeout, "turn-timeout", time.Minute, "a COMMIT taking longer fails")
	benchTimingFlags(fs, &r.Timing)
	fs.BoolVar(&o.run.Floor, "floor", false, "also run the load against the floor server and print server/floor ratios")
	fs.StringVar(&r.Preempt, "preempt", "", `write [preempt] enabled = "on"|"off"|"auto" into the child's config (default: none written, so the server's default applies: auto, on for the bench's loopback fake model)`)
	fs.StringVar(&r.Memory, "memory", "heuristic", "the child's memory.analyzer (llm makes a second model call per turn)")
	fs.StringVar(&r.ServerLog, "server-log", "", "keep the child server's log (stderr) in this file")
	fs.StringVar(&r.CPUProfile, "cpuprofile", "", "write the started server's CPU profile during the load to this file (go tool pprof FILE)")
	fs.StringVar(&r.MemProfile, "memprofile", "", "write the started server's heap profile, taken halfway through the load, to this file")
	fs.BoolVar(&o.json, "json", false, "print the report as JSON")
	fs.BoolVar(&o.targets, "targets", false, "run the performance issue's scenarios and print each target, measured, pass/fail")
	fs.StringVar(&o.serveFloor, "serve-floor", "", "internal: run the floor server on this address")
	fs.Usage = func() {
		out := fs.Output()
		fmt.Fprint(out, benchUsage)
		fs.VisitAll(func(f *flag.Flag) {
			if f.Name == "serve-floor" {
				return
			}
			def := ""
			if f.DefValue != "" && f.DefValue != "0" && f.DefValue != "0s" && f.DefValue != "false" {
				def = " (default " + f.DefValue + ")"
			}
			fmt.Fprintf(out, "  --%s\n    \t%s%s\n", f.Name, f.Usage, def)
		})
	}
	if code, ok := parseFlags(fs, args, stdout, stderr); !ok {
		return o, code, false
	}
	if fs.NArg() > 0 {
		fmt.Fprintf(stderr, "nexy bench: unexpected argument %q\n", fs.Arg(0))
		return o, 2, false
	}
	set := map[string]bool{}
	fs.Visit(func(f *flag.Flag) { set[f.Name] = true })
	if set["turns"] && !set["duration"] {
		l.Duration = 0 // until the turns are done (the hard cap still holds)
	}
	if o.serveFloor != "" {
		if err := r.Timing.Validate(); err != nil {
			fmt.Fprintln(stderr, "nexy bench:", err)
			return o, 2, false
		}
		return o, 0, true
	}
	if o.targets {
		return o, 0, true
	}
	if err := r.Check(); err != nil {
		fmt.Fprintln(stderr, "nexy bench:", err)
		return o, 2, false
	}
	return o, 0, true
}

// bench is `nexy bench`: our own load generator (see benchUsage).
func bench(args []string, stdout, stderr io.Writer) int {
	o, code, ok := parseBench(args, stdout, stderr)
	if !ok {
		return code
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if o.serveFloor != "" {
		return serveFloor(ctx, o, stdout, stderr)
	}
	exe, err := os.Executable()
	if err != nil {
		fmt.Fprintln(stderr, "nexy bench:", err)
		return 1
	}
	o.run.Exe = exe
	if os.Getenv("NEXY_TEST_RUN_MAIN") == "1" {
		o.run.Env = []string{"NEXY_TEST_RUN_MAIN=1"} // the test binary runs main in its children too
	}
	o.run.Progress, o.run.TTY = stderr, isTerminal(stderr)
	if o.targets {
		return benchTargets(ctx, o, stdout, stderr)
	}
	res, err := loadgen.Run(ctx, o.run)
	if err != nil {
		fmt.Fprintln(stderr, "nexy bench:", err)
		return 1
	}
	if o.json {
		writeJSON(stdout, res)
	} else {
		printBench(stdout, res)
	}
	if res.Server.Failed > 0 || (res.Floor != nil && res.Floor.Failed > 0) {
		return 1
	}
	return 0
}

// serveFloor is the hidden floor child: it serves until a signal or until
// its stdin (the bench's pipe) closes.
func serveFloor(ctx context.Context, o benchOptions, stdout, stderr io.Writer) int {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	go func() { _, _ = io.Copy(io.Discard, os.Stdin); cancel() }()
	if err := loadgen.ServeFloor(ctx, o.serveFloor, o.run.Timing, stdout); err != nil {
		fmt.Fprintln(stderr, "nexy bench --serve-floor:", err)
		return 1
	}
	return 0
}

// printBench writes the report as a table: per stage the server's
// percentiles, the floor's and their ratios, then throughput and cost.
func printBench(w io.Writer, res *loadgen.Result) {
	s := res.Settings
	load := fmt.Sprintf("%d devices", s.Devices)
	if s.Turns > 0 {
		load += fmt.Sprintf(", %d turns", s.Turns)
	}
	if s.DurationSec > 0 {
		load += fmt.Sprintf(", %gs", s.DurationSec)
	}
	load += fmt.Sprintf(", think %gms, %d COLLECT(s) %gms apart, hold %gms", s.ThinkMS, s.Collects, s.CollectIntervalMS, s.HoldMS)
	if s.Preempt != "" {
		load += ", preempt " + s.Preempt
	}
	fmt.Fprintf(w, "nexy bench: %s\nfakes: %s\n", load, s.Fakes)
	fmt.Fprintf(w, "server: %s\n", res.Server.Target)
	if res.Floor != nil {
		fmt.Fprintf(w, "floor:  %s (same answer, same timing, nothing else)\n", res.Floor.Target)
	}
	fmt.Fprintln(w)
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', tabwriter.AlignRight)
	head := "stage (ms)\tp50\tp90\tp99\tmax\t"
	if res.Floor != nil {
		head += "floor p50\tp90\tp99\tmax\tratio p50\tp90\tp99\t"
	}
	fmt.Fprintln(tw, head)
	f2 := func(v float64) string {
		if v == 0 {
			return "-"
		}
		return fmt.Sprintf("%.2f", v)
	}
	for _, name := range loadgen.Stages {
		sp, ok := res.Server.Stages[name]
		if !ok {
			continue
		}
		row := fmt.Sprintf("%s\t%s\t%s\t%s\t%s\t", name, f2(sp.P50), f2(sp.P90), f2(sp.P99), f2(sp.Max))
		if res.Floor != nil {
			fp, rp := res.Floor.Stages[name], res.Ratios.Stages[name]
			row += fmt.Sprintf("%s\t%s\t%s\t%s\t%s\t%s\t%s\t", f2(fp.P50), f2(fp.P90), f2(fp.P99), f2(fp.Max), f2(rp.P50), f2(rp.P90), f2(rp.P99))
		}
		fmt.Fprintln(tw, row)
	}
	tw.Flush()
	fmt.Fprintln(w)
	tw = tabwriter.NewWriter(w, 0, 0, 2, ' ', tabwriter.AlignRight)
	head = "\tserver\t"
	if res.Floor != nil {
		head += "floor\tserver/floor\t"
	}
	fmt.Fprintln(tw, head)
	type metric struct {
		name string
		get  func(r *loadgen.Report) float64
		rat  float64
	}
	proc := func(f func(p *loadgen.Process) float64) func(r *loadgen.Report) float64 {
		return func(r *loadgen.Report) float64 {
			if r.Process == nil {
				return -1 // not measured: a server the bench did not start, or no /proc
			}
			return f(r.Process)
		}
	}
	var rat loadgen.Ratios
	if res.Ratios != nil {
		rat = *res.Ratios
	}
	for _, m := range []metric{
		{"turns ok", func(r *loadgen.Report) float64 { return float64(r.Turns) }, 0},
		{"turns failed", func(r *loadgen.Report) float64 { return float64(r.Failed) }, 0},
		{"turns/s", func(r *loadgen.Report) float64 { return r.TurnsPerSec }, rat.TurnsPerSec},
		{"CPU per turn (ms)", proc(func(p *loadgen.Process) float64 { return p.CPUPerTurnMS }), rat.CPUPerTurn},
		{"CPU during load (s)", proc(func(p *loadgen.Process) float64 { return p.CPUSec }), 0},
		{"peak RSS (MB)", proc(func(p *loadgen.Process) float64 { return p.PeakRSSMB }), 0},
		{"idle RSS (MB)", proc(func(p *loadgen.Process) float64 { return p.IdleRSSMB }), 0},
		{"start to serving (ms)", proc(func(p *loadgen.Process) float64 { return p.StartMS }), 0},
		{"audio chunks checked", func(r *loadgen.Report) float64 { return float64(r.AudioChunks) }, 0},
	} {
		num := func(v float64) string {
			switch {
			case v < 0:
				return "-"
			case v == 0:
				return "0"
			case v == float64(int64(v)):
				return fmt.Sprint(int64(v))
			}
			return fmt.Sprintf("%.2f", v)
		}
		row := fmt.Sprintf("%s\t%s\t", m.name, num(m.get(res.Server)))
		if res.Floor != nil {
			row += fmt.Sprintf("%s\t%s\t", num(m.get(res.Floor)), f2(m.rat))
		}
		fmt.Fprintln(tw, row)
	}
	tw.Flush()
	for _, r := range []*loadgen.Report{res.Server, res.Floor} {
		if r == nil {
			continue
		}
		if len(r.Errors) == 0 {
			fmt.Fprintf(w, "\nerrors (%s): none\n", r.Name)
			continue
		}
		fmt.Fprintf(w, "\nerrors (%s), by class:\n", r.Name)
		for _, e := range r.Errors {
			fmt.Fprintf(w, "  %6d  %s  (e.g. %s)\n", e.Turns, e.Class, strings.TrimSpace(e.Example))
		}
	}
	if p := res.Server.Process; p != nil && p.Exit != "" {
		fmt.Fprintf(w, "\nthe server exited with: %s\n", p.Exit)
	}
}

// benchTargets is `nexy bench --targets`: the performance issue's scenarios,
// each a few seconds, and a table of target, measured, pass/fail. The other
// load and fake flags do not apply (each scenario sets its own).
func benchTargets(ctx context.Context, o benchOptions, stdout, stderr io.Writer) int {
	res, err := loadgen.Targets(ctx, o.run, stderr)
	if err != nil {
		fmt.Fprintln(stderr, "nexy bench --targets:", err)
		if res == nil {
			return 1
		}
	}
	if o.json {
		writeJSON(stdout, res)
	} else {
		printTargets(stdout, res)
	}
	if err != nil || res.Passed() != len(res.Rows) {
		return 1
	}
	return 0
}

func printTargets(w io.Writer, res *loadgen.TargetsResult) {
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "\tTARGET\tMEASURED\tRESULT")
	for _, r := range res.Rows {
		verdict := "FAIL"
		if r.Pass {
			verdict = "pass"
		}
		fmt.Fprintf(tw, "(%s)\t%s\t%s\t%s\n", r.ID, r.Target, r.Measured, verdict)
	}
	tw.Flush()
	fmt.Fprintln(w, "\npreemption: first audio after the COMMIT (p50), key held after the last COLLECT")
	tw = tabwriter.NewWriter(w, 0, 0, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintln(tw, "hold (ms)\thold - stable_after (ms)\toff (ms)\ton (ms)\tsaving (ms)\t")
	num := func(v float64) string {
		if v == 0 {
			return "-"
		}
		return fmt.Sprintf("%.1f", v)
	}
	note := ""
	for _, h := range res.Holds {
		fmt.Fprintf(tw, "%.0f\t%.0f\t%s\t%s\t%s\t\n", h.HoldMS, h.HeadStartMS, num(h.OffP50MS), num(h.OnP50MS), num(h.SavingMS))
		note = h.Note
	}
	tw.Flush()
	if note != "" {
		fmt.Fprintln(w, "note:", note)
	}
	fmt.Fprintf(w, "\n%d of %d targets met (%.0f s)\n", res.Passed(), len(res.Rows), res.ElapsedSec)
}

// writeJSON prints v indented, for scripts (--json).
func writeJSON(w io.Writer, v any) {
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	_ = enc.Encode(v)
}
