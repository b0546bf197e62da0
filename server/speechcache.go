package server

import (
	"fmt"

	"github.com/nexy-server/nexy/audio"
	"github.com/nexy-server/nexy/config"
	"github.com/nexy-server/nexy/llm"
	"github.com/nexy-server/nexy/tts"
)

// speech is the synthesizer of each caller. Turns cache only the server's
// fixed sentences (a model's answers rarely repeat, and caching them would
// only churn the cache); GenerateWelcomeAudio caches every text, since the
// client asks it for its own fixed phrases (welcome, limits, fallbacks).
type speech struct {
	turn, welcome tts.Synthesizer
	fallback      tts.Synthesizer // [tts.fallback]; nil = none
	cached        []*tts.Cached
}

// wait lets the cache writes in progress finish, before the cache closes.
func (s speech) wait() {
	for _, c := range s.cached {
		c.Wait()
	}
}

func newSpeech(cfg *config.Config, deps Deps) speech {
	if deps.AudioCache == nil {
		return speech{turn: deps.TTS, welcome: deps.TTS, fallback: deps.TTSFallback}
	}
	fixed := map[string]bool{}
	// The refusal sentences too: after a restart the first refused device
	// does not wait for a synthesis either.
	for _, s := range []string{cannotDoText, llm.NoAnswerText, cfg.TTS.WelcomeText, notApprovedText, revokedText, badTokenText, tokensQuotaText,
		fmt.Sprintf(turnsQuotaText, cfg.Quotas.DailyTurns)} {
		fixed[tts.Speakable(s)] = true
	}
	// One cached phrase is at most as long as the longest welcome audio.
	maxEntry := cfg.TTS.MaxWelcomeSeconds * audio.SampleRate * 2
	turn := tts.NewCached(deps.TTS, deps.AudioCache, cfg.TTS.Voice, func(r tts.Request) bool { return fixed[r.Text] }, maxEntry)
	welcome := tts.NewCached(deps.TTS, deps.AudioCache, cfg.TTS.Voice, nil, maxEntry)
	return speech{turn: turn, welcome: welcome, fallback: deps.TTSFallback, cached: []*tts.Cached{turn, welcome}}
}
