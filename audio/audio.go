// Package audio holds PCM plumbing: the wire format the client plays, decoders
// for what providers return (WAV, MP3, raw PCM at any rate), a resampler and
// the chunker that cuts PCM into wire-sized pieces.
package audio

import (
	"encoding/binary"
	"fmt"
	"time"
)

const (
	// SampleRate is the only rate the shipped client plays.
	SampleRate = 48000
	// Channels: the client plays mono only.
	Channels = 1
	// DType is the AudioChunk.dtype string for signed 16-bit little-endian PCM.
	DType = "int16"
	// MaxChunkBytes is the largest AudioChunk.audio_data this server sends
	// (2036 samples, 42.4 ms at 48 kHz). The app takes up to 4096 bytes, but
	// a 4096-byte chunk marshals to a 4115-byte message, which gRPC keeps in
	// a 16 KiB pooled buffer until it is written; 4072 bytes marshal to 4091
	// and fit its 4 KiB tier: a quarter of the memory for every chunk
	// waiting for a slow client (TestAudioMessageFitsFourKiB in server).
	MaxChunkBytes = 4072
)

// Format describes raw interleaved signed 16-bit little-endian PCM.
type Format struct{ SampleRate, Channels int }

// Encoding of a provider's audio stream.
type Encoding int

const (
	// PCM16 is raw interleaved s16le; its Format is given by the caller.
	PCM16 Encoding = iota
	// WAV is a RIFF/WAVE stream; its format is read from the header.
	WAV
	// MP3 is an MPEG-1/2 Layer III elementary stream (optionally ID3v2-tagged).
	MP3
)

// String names the encoding for error messages.
func (e Encoding) String() string {
	switch e {
	case PCM16:
		return "pcm16"
	case WAV:
		return "wav"
	case MP3:
		return "mp3"
	}
	return fmt.Sprintf("encoding(%d)", int(e))
}

// Duration is the playing time of n bytes of wire PCM (48 kHz mono s16le);
// n <= 0 gives 0 and a trailing odd byte does not count.
func Duration(n int) time.Duration {
	if n <= 0 {
		return 0
	}
	samples := int64(n / 2)
	// Split into whole seconds and a remainder so that n*1e9 never overflows.
	secs, rem := samples/SampleRate, samples%SampleRate
	return time.Duration(secs)*time.Second + time.Duration(rem)*time.Second/SampleRate
}

// IsSilent reports whether every sample is zero (the client skips such chunks);
// an empty slice is silent.
func IsSilent(pcm []byte) bool {
	for len(pcm) >= 8 {
		if binary.LittleEndian.Uint64(pcm) != 0 {
			return false
		}
		pcm = pcm[8:]
	}
	for _, b := range pcm {
		if b != 0 {
			return false
		}
	}
	return true
}
