package loadgen

import (
	"context"
	"errors"
	"fmt"
	"io"
	"math"
	"net"
	"net/http"
	"os"
	"sort"
	"strings"
	"sync"
	"time"
)

// Options are one `nexy bench` run.
type Options struct {
	Addr        string // a running server; "" = start `nexy serve` as a child
	TLSPin      string
	AllowRemote bool
	Timing      Timing
	Load        Load
	Floor       bool   // also run the load against the floor server
	Preempt     string // written as [preempt] enabled when set
	Memory      string // the child's memory.analyzer ("" = heuristic)
	ServerLog   string
	CPUProfile  string   // write the started server's CPU profile of the load here
	MemProfile  string   // write the started server's heap profile, taken halfway through the load, here
	Exe         string   // this binary, for the children
	Env         []string // added to the children's environment
	Progress    io.Writer
	TTY         bool // Progress is a terminal: one line, rewritten
}

// Result is a run's report: the server's, the floor's and their ratios.
type Result struct {
	Settings Settings `json:"settings"`
	Server   *Report  `json:"server"`
	Floor    *Report  `json:"floor,omitempty"`
	Ratios   *Ratios  `json:"ratios,omitempty"`
}

// Settings echo what was run, in units a script can read.
type Settings struct {
	Fakes             string  `json:"fakes"`
	LLMFirstTokenMS   float64 `json:"llm_first_token_ms"`
	LLMTokensPerSec   float64 `json:"llm_tokens_per_sec"`
	Sentences         int     `json:"sentences"`
	TTSFirstByteMS    float64 `json:"tts_first_byte_ms"`
	AudioSec          float64 `json:"audio_sec"`
	TTSRate           int     `json:"tts_rate"`
	Devices           int     `json:"devices"`
	Turns             int     `json:"turns,omitempty"`
	DurationSec       float64 `json:"duration_s,omitempty"`
	ThinkMS           float64 `json:"think_ms"`
	Collects          int     `json:"collects"`
	CollectIntervalMS float64 `json:"collect_interval_ms"`
	HoldMS            float64 `json:"hold_ms"`
	Preempt           string  `json:"preempt,omitempty"`
	Addr              string  `json:"addr,omitempty"`
}

// Report is what one server did under the load.
type Report struct {
	Name        string                 `json:"name"`   // "server" or "floor"
	Target      string                 `json:"target"` // what was measured
	Turns       int                    `json:"turns"`  // answered in full and by the rules
	Failed      int                    `json:"failed_turns"`
	ElapsedSec  float64                `json:"elapsed_s"`
	TurnsPerSec float64                `json:"turns_per_s"`
	Stages      map[string]Percentiles `json:"stages"`
	Errors      []ErrorClass           `json:"errors"`
	AudioChunks int64                  `json:"audio_chunks"`
	BadChunks   int64                  `json:"bad_audio_chunks"`
	Process     *Process               `json:"process,omitempty"`
}

// ErrorClass counts the failed turns of one kind.
type ErrorClass struct {
	Class   string `json:"class"`
	Turns   int    `json:"turns"`
	Example string `json:"example"`
}

// Process is a child server's cost, from /proc (absent elsewhere).
type Process struct {
	PID          int     `json:"pid"`
	StartMS      float64 `json:"start_ms"` // process start to serving
	IdleRSSMB    float64 `json:"idle_rss_mb"`
	PeakRSSMB    float64 `json:"peak_rss_mb"`
	CPUSec       float64 `json:"cpu_s"` // during the load
	CPUPerTurnMS float64 `json:"cpu_per_turn_ms"`
	Exit         string  `json:"exit,omitempty"` // how it ended, when not cleanly
}

// Ratios are server / floor, measured in the same run.
type Ratios struct {
	Stages      map[string]Percentiles `json:"stages"` // each percentile's ratio
	TurnsPerSec float64                `json:"turns_per_s"`
	CPUPerTurn  float64                `json:"cpu_per_turn"`
}

// Check validates o before anything starts.
func (o *Options) Check() error {
	if err := o.Timing.Validate(); err != nil {
		return err
	}
	if err := o.Load.Validate(); err != nil {
		return err
	}
	switch o.Preempt {
	case "", "on", "off", "auto":
	default:
		return fmt.Errorf("--preempt %q: want on, off or auto", o.Preempt)
	}
	if o.Addr != "" {
		if o.Preempt != "" {
			return errors.New("--preempt configures the server the bench starts; with --addr set it in that server's config")
		}
		if !o.AllowRemote && !IsLoopback(o.Addr) {
			return fmt.Errorf("--addr %s is not a loopback address: pass --allow-remote to load another machine", o.Addr)
		}
	} else if o.TLSPin != "" {
		return errors.New("--tls-pin needs --addr (the server the bench starts is plaintext)")
	}
	return nil
}

// IsLoopback reports whether addr (host:port) names this machine's loopback.
func IsLoopback(addr string) bool {
	host, _, err := net.SplitHostPort(addr)
	if err != nil {
		return false
	}
	if strings.EqualFold(host, "localhost") {
		return true
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}

// Settings describes o.
func (o *Options) Settings() Settings {
	t, l := o.Timing, o.Load
	return Settings{Fakes: t.String(), LLMFirstTokenMS: ms(t.LLMFirstToken), LLMTokensPerSec: t.TokensPerSec, Sentences: t.Sentences,
		TTSFirstByteMS: ms(t.TTSFirstByte), AudioSec: t.AudioSec, TTSRate: t.TTSRate, Devices: l.Devices, Turns: l.Turns,
		DurationSec: l.Duration.Seconds(), ThinkMS: ms(l.Think), Collects: l.Collects, CollectIntervalMS: ms(l.CollectInterval),
		HoldMS: ms(l.Hold), Preempt: o.Preempt, Addr: o.Addr}
}

// Args are the timing flags that make a floor child sleep like the fakes.
func (t Timing) Args() []string {
	return []string{"--llm-first-token", t.LLMFirstToken.String(), "--llm-tokens-per-sec", fmt.Sprint(t.TokensPerSec),
		"--sentences", fmt.Sprint(t.Sentences), "--tts-first-byte", t.TTSFirstByte.String(),
		"--audio-sec", fmt.Sprint(t.AudioSec), "--tts-rate", fmt.Sprint(t.TTSRate)}
}

// Run runs the load against the server (started as a child unless o.Addr
// is set), then, with o.Floor, against a floor server.
func Run(ctx context.Context, o Options) (*Result, error) {
	if err := o.Check(); err != nil {
		return nil, err
	}
	res := &Result{Settings: o.Settings()}
	var err error
	if o.Addr != "" {
		res.Server, err = measure(ctx, &o, "server", o.Addr, o.TLSPin, nil)
	} else {
		res.Server, err = runServer(ctx, &o)
	}
	if err != nil {
		return nil, err
	}
	if o.Floor && ctx.Err() == nil {
		floor, err := StartFloor(ctx, o.Exe, o.Env, o.Timing.Args())
		if err != nil {
			return nil, err
		}
		res.Floor, err = measure(ctx, &o, "floor", floor.GRPCAddr, "", floor)
		if exit := floor.Stop(); err == nil && res.Floor.Process != nil {
			res.Floor.Process.Exit = exit
		}
		if err != nil {
			return nil, err
		}
		res.Ratios = compare(res.Server, res.Floor)
	}
	return res, nil
}

func runServer(ctx context.Context, o *Options) (*Report, error) {
	fakes, err := StartFakes(o.Timing)
	if err != nil {
		return nil, err
	}
	defer fakes.Close()
	child, err := StartServer(ctx, ServerOptions{Exe: o.Exe, Env: o.Env, LLMURL: fakes.URL, TTSURL: fakes.URL,
		Devices: o.Load.Devices, Preempt: o.Preempt, Memory: o.Memory, LogFile: o.ServerLog, Pprof: o.CPUProfile != "" || o.MemProfile != ""})
	if err != nil {
		return nil, err
	}
	rep, err := measure(ctx, o, "server", child.GRPCAddr, "", child)
	exit := child.Stop()
	if err != nil {
		return nil, err
	}
	if rep.Process != nil {
		rep.Process.Exit = exit
	}
	return rep, nil
}

// measure runs the load against addr; child, when the bench started the
// server, is sampled for CPU and memory around the load.
func measure(ctx context.Context, o *Options, name, addr, pin string, child *Child) (*Report, error) {
	rep := &Report{Name: name, Target: addr}
	var proc *Process
	var before ProcSample
	live := &Live{}
	if child != nil {
		rep.Target = child.String() + " on " + addr
		if idle, err := child.Sample(); err == nil {
			proc = &Process{PID: child.PID, StartMS: ms(child.StartTime), IdleRSSMB: mb(idle.RSS)}
		}
		live.OnStart = func() { before, _ = child.Sample() }
	}
	var profiled chan error
	if child != nil && name == "server" && (o.CPUProfile != "" || o.MemProfile != "") {
		profiled = make(chan error, 1)
		sample := live.OnStart
		live.OnStart = func() {
			sample()
			go func() { profiled <- fetchProfiles(ctx, child.HTTPAddr, o) }()
		}
	}
	stop := progress(o, name, live)
	lr, err := RunLoad(ctx, addr, pin, o.Load, live)
	stop()
	if err != nil {
		return nil, err
	}
	if profiled != nil {
		if err := <-profiled; err != nil {
			return nil, fmt.Errorf("--cpuprofile: %w", err)
		}
	}
	if proc != nil {
		if after, err := child.Sample(); err == nil {
			proc.PeakRSSMB = mb(after.HWM)
			proc.CPUSec = (after.CPU - before.CPU).Seconds()
			if n := lr.OK + lr.Failed; n > 0 {
				proc.CPUPerTurnMS = round3(proc.CPUSec * 1000 / float64(n))
			}
		}
		rep.Process = proc
	}
	rep.Turns, rep.Failed = lr.OK, lr.Failed
	rep.ElapsedSec = round3(lr.Elapsed.Seconds())
	if lr.Elapsed > 0 {
		rep.TurnsPerSec = round3(float64(lr.OK) / lr.Elapsed.Seconds())
	}
	rep.Stages = map[string]Percentiles{}
	for _, s := range Stages {
		if v := lr.Samples[s]; len(v) > 0 {
			rep.Stages[s] = Summarize(v)
		}
	}
	rep.Errors = []ErrorClass{}
	for class, n := range lr.Errors {
		rep.Errors = append(rep.Errors, ErrorClass{Class: class, Turns: n, Example: lr.Examples[class]})
	}
	sort.Slice(rep.Errors, func(i, j int) bool { return rep.Errors[i].Turns > rep.Errors[j].Turns })
	rep.AudioChunks, rep.BadChunks = lr.Chunks, lr.BadChunks
	return rep, nil
}

func compare(s, f *Report) *Ratios {
	r := &Ratios{Stages: map[string]Percentiles{}, TurnsPerSec: ratio(s.TurnsPerSec, f.TurnsPerSec)}
	if s.Process != nil && f.Process != nil {
		r.CPUPerTurn = ratio(s.Process.CPUPerTurnMS, f.Process.CPUPerTurnMS)
	}
	for name, sp := range s.Stages {
		if fp, ok := f.Stages[name]; ok {
			r.Stages[name] = Percentiles{N: min(sp.N, fp.N), P50: ratio(sp.P50, fp.P50), P90: ratio(sp.P90, fp.P90),
				P99: ratio(sp.P99, fp.P99), Max: ratio(sp.Max, fp.Max)}
		}
	}
	return r
}

// progress writes a line a second while the load runs; the returned func
// stops it (and ends a rewritten line).
func progress(o *Options, name string, live *Live) (stop func()) {
	if o.Progress == nil {
		return func() {}
	}
	done := make(chan struct{})
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		t := time.NewTicker(time.Second)
		defer t.Stop()
		wrote := false
		for {
			select {
			case <-done:
				if wrote && o.TTY {
					fmt.Fprintln(o.Progress)
				}
				return
			case <-t.C:
			}
			started := live.started()
			if started.IsZero() {
				continue
			}
			el := time.Since(started).Seconds()
			n := live.OK.Load()
			line := fmt.Sprintf("bench %s: %3.0fs  %d turns (%.0f/s)  %d in flight  %d failed",
				name, el, n, float64(n)/el, live.InFlight.Load(), live.Failed.Load())
			if o.TTY {
				fmt.Fprintf(o.Progress, "\r%s\x1b[K", line)
			} else {
				fmt.Fprintln(o.Progress, line)
			}
			wrote = true
		}
	}()
	return func() { close(done); wg.Wait() }
}

func mb(b int64) float64       { return round3(float64(b) / (1 << 20)) }
func round3(v float64) float64 { return float64(int64(v*1000+0.5)) / 1000 }

// fetchProfiles records the server's profiles: the heap halfway through the
// load and the CPU for the load's duration (10 s when the load is a count
// of turns), from its /debug/pprof/.
func fetchProfiles(ctx context.Context, httpAddr string, o *Options) error {
	d := o.Load.Duration
	if d <= 0 {
		d = 10 * time.Second
	}
	var wg sync.WaitGroup
	var heapErr error
	if o.MemProfile != "" {
		wg.Add(1)
		go func() {
			defer wg.Done()
			select {
			case <-time.After(d / 2):
				heapErr = fetchProfile(ctx, "http://"+httpAddr+"/debug/pprof/heap", o.MemProfile)
			case <-ctx.Done():
				heapErr = ctx.Err()
			}
		}()
	}
	var err error
	if o.CPUProfile != "" {
		err = fetchProfile(ctx, fmt.Sprintf("http://%s/debug/pprof/profile?seconds=%d", httpAddr, int(math.Ceil(d.Seconds()))), o.CPUProfile)
	}
	wg.Wait()
	return errors.Join(err, heapErr)
}

func fetchProfile(ctx context.Context, url, path string) error {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return err
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("the server answered %s", resp.Status)
	}
	f, err := os.Create(path)
	if err != nil {
		return err
	}
	if _, err := io.Copy(f, resp.Body); err != nil {
		f.Close()
		return err
	}
	return f.Close()
}
