// Package tts turns text into speech: providers behind one interface, all
// normalized to the wire format (48 kHz mono s16le), plus the streaming
// sentence splitter and the text sanitizer that prepares segments for TTS.
package tts

import (
	"context"
	"io"
)

// Request is one synthesis call.
type Request struct {
	Text     string // already sanitized for speech
	Voice    string // provider voice name; "" = the configured default
	Language string // BCP-47 hint, e.g. "en-US"; "" = derive from the voice
}

// Synthesizer speaks text.
type Synthesizer interface {
	// Name is a short label for logs and WelcomeMetadata.method ("edge", "azure", ...).
	Name() string
	// Synthesize starts speaking req.Text. The returned stream yields raw PCM,
	// signed 16-bit little-endian, mono, 48000 Hz (audio.SampleRate), as soon as
	// the provider produces it; reads may return any byte count, including odd.
	// Everything (HTTP request, WebSocket, subprocess) is bound to ctx and is
	// stopped when ctx is cancelled or the stream is closed. A provider failure
	// after the first bytes surfaces as a Read error, never as silence.
	Synthesize(ctx context.Context, req Request) (io.ReadCloser, error)
}
