// Package loadgen is the engine of `nexy bench`: fake providers with
// configurable latency, a load of simulated devices that checks every answer
// against the wire contract (SPEC §2), a "floor" server that streams the same
// answer on the same timing with nothing else to do, the child processes and
// their CPU and memory, and the statistics of a run.
package loadgen

import (
	"fmt"
	"strings"
	"time"
)

// Timing is what the fake providers impose on every answer, and what the
// floor server sleeps to stream the same answer on the same timing.
type Timing struct {
	LLMFirstToken time.Duration // request to the first token
	TokensPerSec  float64       // 0 = every token at once
	Sentences     int           // sentences per answer
	TTSFirstByte  time.Duration // request to the speech's first byte
	AudioSec      float64       // seconds of speech per sentence
	TTSRate       int           // sample rate of the fake speech (WAV, mono s16)
}

// Validate checks the values a person can pass on the command line.
func (t Timing) Validate() error {
	switch {
	case t.LLMFirstToken < 0 || t.LLMFirstToken > time.Minute:
		return fmt.Errorf("--llm-first-token %s: want 0..1m", t.LLMFirstToken)
	case t.TokensPerSec < 0 || t.TokensPerSec > 1e6:
		return fmt.Errorf("--llm-tokens-per-sec %g: want 0 (no pause) .. 1000000", t.TokensPerSec)
	case t.Sentences < 1 || t.Sentences > 100:
		return fmt.Errorf("--sentences %d: want 1..100", t.Sentences)
	case t.TTSFirstByte < 0 || t.TTSFirstByte > time.Minute:
		return fmt.Errorf("--tts-first-byte %s: want 0..1m", t.TTSFirstByte)
	case t.AudioSec <= 0 || t.AudioSec > 60:
		return fmt.Errorf("--audio-sec %g: want more than 0, at most 60", t.AudioSec)
	case t.TTSRate < 8000 || t.TTSRate > 192000:
		return fmt.Errorf("--tts-rate %d: want 8000..192000", t.TTSRate)
	}
	return nil
}

// ZeroLatency reports whether the fakes answer without any pause.
func (t Timing) ZeroLatency() bool {
	return t.LLMFirstToken == 0 && t.TokensPerSec == 0 && t.TTSFirstByte == 0
}

// String describes the fakes in one line.
func (t Timing) String() string {
	tps := "all at once"
	if t.TokensPerSec > 0 {
		tps = fmt.Sprintf("%g tokens/s", t.TokensPerSec)
	}
	return fmt.Sprintf("LLM first token %s, %s, %d sentences; TTS first byte %s, %gs audio/sentence at %d Hz",
		t.LLMFirstToken, tps, t.Sentences, t.TTSFirstByte, t.AudioSec, t.TTSRate)
}

// tokenAt is when the LLM fake sends delta i, from the request.
func (t Timing) tokenAt(i int) time.Duration {
	d := t.LLMFirstToken
	if t.TokensPerSec > 0 && i > 0 {
		d += time.Duration(float64(i) / t.TokensPerSec * float64(time.Second))
	}
	return d
}

// corpus is what the fake model says, one sentence after another: plain
// sentences of 7–9 words, long enough that the server's splitter makes each
// one a spoken segment of its own.
var corpus = []string{
	"The weather in Berlin is mild and dry today.",
	"Tomorrow brings light rain in the late afternoon.",
	"Temperatures stay between twelve and sixteen degrees.",
	"An umbrella might be useful on your way home.",
	"The weekend looks sunny with a gentle breeze.",
	"Your next meeting starts at half past three.",
	"Traffic on the ring road is moving slowly.",
	"Let me know if you need anything else.",
}

// Answer is the scripted reply of the fake model, cut into deltas the way
// a model streams them (words, long words in two pieces, the JSON around
// the text in pieces of its own).
type Answer struct {
	Sentences   []string
	Deltas      []string
	SentenceEnd []int // index in Deltas of each sentence's last delta
}

// NewAnswer builds the reply of n sentences: {"text": "<sentences>"}.
func NewAnswer(n int) *Answer {
	a := &Answer{}
	a.Deltas = append(a.Deltas, `{"`, `text`, `": "`)
	for k := 0; k < n; k++ {
		s := corpus[k%len(corpus)]
		a.Sentences = append(a.Sentences, s)
		for i, w := range strings.Fields(s) {
			if k > 0 || i > 0 {
				w = " " + w
			}
			if len(w) > 7 { // a long word arrives in two tokens, cut mid-word
				cut := len(w) / 2
				a.Deltas = append(a.Deltas, w[:cut], w[cut:])
				continue
			}
			a.Deltas = append(a.Deltas, w)
		}
		a.SentenceEnd = append(a.SentenceEnd, len(a.Deltas)-1)
	}
	a.Deltas = append(a.Deltas, `"}`)
	return a
}

// Text is the whole reply the deltas make.
func (a *Answer) Text() string { return strings.Join(a.Deltas, "") }

// Schedule is the ideal timeline of one answer on these fakes, from the
// request: when each sentence's text is complete (its last token sent), and
// when its audio can start: its text plus the TTS first byte, and not
// before the previous sentence's audio (sent in no time here; the floor
// server measures its real sending).
func (t Timing) Schedule(a *Answer) (textDone, audioStart []time.Duration) {
	var prev time.Duration
	for _, last := range a.SentenceEnd {
		done := t.tokenAt(last)
		start := max(done+t.TTSFirstByte, prev)
		textDone = append(textDone, done)
		audioStart = append(audioStart, start)
		prev = start
	}
	return textDone, audioStart
}

// LLMTime is when the fake model's last token is sent, from the request.
func (t Timing) LLMTime(a *Answer) time.Duration { return t.tokenAt(len(a.Deltas) - 1) }
