package loadgen

import (
	"context"
	"fmt"
	"io"
	"strings"
	"time"
)

// The performance issue's scenario set: short runs (a few seconds each),
// the whole set in about a minute on 2 cores.
var (
	zeroLatency = Timing{Sentences: 3, AudioSec: 1, TTSRate: 48000}
	realistic   = Timing{LLMFirstToken: 300 * time.Millisecond, TokensPerSec: 50, Sentences: 3,
		TTSFirstByte: 200 * time.Millisecond, AudioSec: 1, TTSRate: 48000}
	// stableAfter is when the server deems an interim transcript stable
	// enough to start a speculative answer (preempt.stable_after).
	stableAfter = 400 * time.Millisecond
	holds       = []time.Duration{300 * time.Millisecond, 600 * time.Millisecond, time.Second, 1500 * time.Millisecond}
)

// TargetRow is one target: what it asks, what was measured, met or not.
type TargetRow struct {
	ID       string  `json:"id"`
	Target   string  `json:"target"`
	Measured string  `json:"measured"`
	Value    float64 `json:"value"`
	Limit    float64 `json:"limit"`
	Pass     bool    `json:"pass"`
}

// HoldRow is the preemption's saving for one hold of the key after the
// last COLLECT: first audio after the COMMIT without and with preemption.
type HoldRow struct {
	HoldMS      float64 `json:"hold_ms"`
	HeadStartMS float64 `json:"hold_minus_stable_after_ms"` // the most preemption can save
	OffP50MS    float64 `json:"off_first_audio_p50_ms"`
	OnP50MS     float64 `json:"on_first_audio_p50_ms"`
	SavingMS    float64 `json:"saving_ms"`
	Note        string  `json:"note,omitempty"`
}

// TargetsResult is the whole set.
type TargetsResult struct {
	Rows       []TargetRow        `json:"targets"`
	Holds      []HoldRow          `json:"preempt_by_hold"`
	Runs       map[string]*Result `json:"runs"`
	ElapsedSec float64            `json:"elapsed_s"`
}

// Passed counts the targets met.
func (r *TargetsResult) Passed() int {
	n := 0
	for _, row := range r.Rows {
		if row.Pass {
			n++
		}
	}
	return n
}

// Targets runs the scenarios (a)–(f) with base's binary, environment and
// progress writer, and checks each target.
func Targets(ctx context.Context, base Options, log io.Writer) (*TargetsResult, error) {
	start := time.Now()
	out := &TargetsResult{Runs: map[string]*Result{}}
	run := func(id, what string, t Timing, l Load, floor bool, preempt string) (*Result, error) {
		if log != nil {
			fmt.Fprintf(log, "targets (%s): %s\n", id, what)
		}
		o := base
		o.Addr, o.TLSPin, o.Timing, o.Load, o.Floor, o.Preempt = "", "", t, l, floor, preempt
		res, err := Run(ctx, o)
		if err == nil {
			out.Runs[id] = res
		}
		return res, err
	}
	add := func(id, target, measured string, value, limit float64, pass bool) {
		out.Rows = append(out.Rows, TargetRow{ID: id, Target: target, Measured: measured, Value: value, Limit: limit, Pass: pass})
	}
	failed := func(id, target string, err error) {
		add(id, target, "did not run: "+firstLine(err.Error()), 0, 0, false)
	}

	// (a) and (f): zero-latency fakes, 50 devices back to back, with the floor.
	const ta, ta2, tf1, tf2 = "server CPU per turn ≤ 2.5× the floor's (zero-latency fakes, 50 devices, no think)",
		"≥ 1000 turns/s (same run)", "idle RSS < 40 MB (after start, before load)", "start to serving < 300 ms (fresh data dir)"
	if a, err := run("a", "zero-latency fakes, 50 devices back to back, with floor", zeroLatency,
		Load{Devices: 50, Duration: 4 * time.Second, Collects: 1}, true, ""); err != nil {
		failed("a", ta, err)
		failed("a", ta2, err)
		failed("f", tf1, err)
		failed("f", tf2, err)
	} else {
		s, f := a.Server, a.Floor
		var sc, fc float64
		if s.Process != nil && f.Process != nil {
			sc, fc = s.Process.CPUPerTurnMS, f.Process.CPUPerTurnMS
		}
		r := ratio(sc, fc)
		add("a", ta, fmt.Sprintf("%.2f× (%.3f vs %.3f ms)%s", r, sc, fc, errNote(s)), r, 2.5, r > 0 && r <= 2.5 && s.Failed == 0)
		add("a", ta2, fmt.Sprintf("%.0f turns/s (floor %.0f)%s", s.TurnsPerSec, f.TurnsPerSec, errNote(s)), s.TurnsPerSec, 1000, s.TurnsPerSec >= 1000 && s.Failed == 0)
		if p := s.Process; p != nil {
			add("f", tf1, fmt.Sprintf("%.1f MB", p.IdleRSSMB), p.IdleRSSMB, 40, p.IdleRSSMB < 40)
			add("f", tf2, fmt.Sprintf("%.0f ms", p.StartMS), p.StartMS, 300, p.StartMS < 300)
		} else {
			add("f", tf1, "no /proc here", 0, 40, false)
			add("f", tf2, "no /proc here", 0, 300, false)
		}
	}

	// (b) zero-latency, one device: what the server adds to the first audio.
	const tb = "server-added time to first audio p99 < 2 ms (zero-latency, 1 device; server p99 − floor p99)"
	if b, err := run("b", "zero-latency fakes, 1 device, with floor", zeroLatency,
		Load{Devices: 1, Duration: 2 * time.Second, Collects: 1}, true, ""); err != nil {
		failed("b", tb, err)
	} else {
		s, f := b.Server.Stages[StageFirstAudio], b.Floor.Stages[StageFirstAudio]
		added := s.P99 - f.P99
		add("b", tb, fmt.Sprintf("%.2f ms (server %.2f, floor %.2f; p50 %.2f vs %.2f)%s", added, s.P99, f.P99, s.P50, f.P50, errNote(b.Server)),
			added, 2, s.N > 0 && added < 2 && b.Server.Failed == 0)
	}

	// (c) realistic fakes, 500 devices, with the floor.
	const tc1, tc2, tc3, tc4 = "no errors (realistic fakes: LLM first token 300 ms, 50 tokens/s, TTS first byte 200 ms; 500 devices)",
		"first audio p50 ≤ 1.1× the floor's (same run)", "first audio p99 ≤ 1.2× the floor's", "peak RSS < 300 MB"
	if c, err := run("c", "realistic fakes, 500 devices, with floor", realistic,
		Load{Devices: 500, Duration: 4 * time.Second, Collects: 1}, true, ""); err != nil {
		for _, t := range []string{tc1, tc2, tc3, tc4} {
			failed("c", t, err)
		}
	} else {
		s, f := c.Server, c.Floor
		add("c", tc1, fmt.Sprintf("%d failed of %d turns%s", s.Failed, s.Turns+s.Failed, errNote(s)), float64(s.Failed), 0, s.Failed == 0 && s.Turns > 0)
		sp, fp := s.Stages[StageFirstAudio], f.Stages[StageFirstAudio]
		r50, r99 := ratio(sp.P50, fp.P50), ratio(sp.P99, fp.P99)
		add("c", tc2, fmt.Sprintf("%.3f× (%.1f vs %.1f ms)", r50, sp.P50, fp.P50), r50, 1.1, r50 > 0 && r50 <= 1.1)
		add("c", tc3, fmt.Sprintf("%.3f× (%.1f vs %.1f ms)", r99, sp.P99, fp.P99), r99, 1.2, r99 > 0 && r99 <= 1.2)
		if p := s.Process; p != nil {
			add("c", tc4, fmt.Sprintf("%.1f MB", p.PeakRSSMB), p.PeakRSSMB, 300, p.PeakRSSMB < 300)
		} else {
			add("c", tc4, "no /proc here", 0, 300, false)
		}
	}

	// (d) pipelining: a 5-sentence answer's last audio against the ideal.
	five := realistic
	five.Sentences = 5
	ans := NewAnswer(five.Sentences)
	textDone, _ := five.Schedule(ans)
	llmPath := five.LLMTime(ans) + five.TTSFirstByte                         // the last sentence still needs its speech
	ttsPath := textDone[0] + time.Duration(five.Sentences)*five.TTSFirstByte // every sentence's speech one after another
	ideal := max(llmPath, ttsPath)
	td := fmt.Sprintf("5-sentence answer: last audio p50 within 10%% of max(LLM %s, TTS %s) = %s", llmPath, ttsPath, ideal)
	if d, err := run("d", "realistic fakes, 5-sentence answers, 4 devices", five,
		Load{Devices: 4, Turns: 8, Collects: 1}, false, ""); err != nil {
		failed("d", td, err)
	} else {
		last := d.Server.Stages[StageLastAudio].P50
		over := last/ms(ideal) - 1
		add("d", td, fmt.Sprintf("%.0f ms (%+.1f%%)%s", last, 100*over, errNote(d.Server)), last, ms(ideal)*1.1,
			last > 0 && over <= 0.10 && d.Server.Failed == 0)
	}

	// (e) preemption: first audio after the COMMIT with the key held after
	// the last COLLECT, off and on, for several holds.
	te := "preemption (hold 1.5 s after the last COLLECT): first audio p50 < 50 ms after COMMIT with preempt on"
	p50 := map[string]map[time.Duration]float64{"off": {}, "on": {}}
	notes := map[string]string{}
	for _, mode := range []string{"off", "on"} {
		for _, h := range holds {
			if notes[mode] != "" {
				break // the server refused this mode: do not retry every hold
			}
			id := fmt.Sprintf("e-%s-%dms", mode, h.Milliseconds())
			load := Load{Devices: 10, Turns: 10, Collects: 3, CollectInterval: 120 * time.Millisecond, Hold: h}
			res, err := run(id, fmt.Sprintf("realistic fakes, preempt %s, hold %s, 10 devices", mode, h), realistic, load, false, mode)
			switch {
			case err != nil:
				notes[mode] = "did not run: " + firstLine(err.Error())
			case res.Server.Failed > 0:
				notes[mode] = fmt.Sprintf("%d failed turns: %s", res.Server.Failed, res.Server.Errors[0].Class)
				p50[mode][h] = res.Server.Stages[StageFirstAudio].P50
			default:
				p50[mode][h] = res.Server.Stages[StageFirstAudio].P50
			}
		}
	}
	main := holds[len(holds)-1]
	on, off := p50["on"][main], p50["off"][main]
	switch {
	case notes["on"] != "" && on == 0:
		add("e", te, notes["on"], 0, 50, false)
	default:
		m := fmt.Sprintf("on %.1f ms, off %.1f ms", on, off)
		if n := notes["on"] + notes["off"]; n != "" {
			m += " (" + strings.TrimSpace(notes["on"]+" "+notes["off"]) + ")"
		}
		add("e", te, m, on, 50, on > 0 && on < 50 && notes["on"] == "")
	}
	for _, h := range holds {
		row := HoldRow{HoldMS: ms(h), HeadStartMS: ms(max(h-stableAfter, 0)), OffP50MS: p50["off"][h], OnP50MS: p50["on"][h]}
		if row.OffP50MS > 0 && row.OnP50MS > 0 {
			row.SavingMS = round3(row.OffP50MS - row.OnP50MS)
		}
		row.Note = strings.TrimSpace(notes["off"] + " " + notes["on"])
		out.Holds = append(out.Holds, row)
	}
	out.ElapsedSec = round3(time.Since(start).Seconds())
	return out, ctx.Err()
}

func errNote(r *Report) string {
	if r.Failed == 0 {
		return ""
	}
	return fmt.Sprintf("; %d failed turns (%s)", r.Failed, r.Errors[0].Class)
}

func firstLine(s string) string {
	s, _, _ = strings.Cut(strings.TrimSpace(s), "\n")
	return s
}
