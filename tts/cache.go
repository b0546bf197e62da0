package tts

// A Synthesizer decorator that remembers the audio of phrases worth
// remembering (the welcome text, fixed replies), so saying them again costs
// neither a provider call nor its latency.

import (
	"bytes"
	"context"
	"io"
	"sync"
	"sync/atomic"
)

// Cache is where the decorator keeps audio; store.AudioCache implements it.
// Get returns a slice the caller may keep; Put must not keep pcm's memory
// beyond the call unless it owns it (the decorator never reuses it).
type Cache interface {
	Get(key string) ([]byte, bool)
	Put(key string, pcm []byte) error
}

// CacheStats counts the requests Cached decided on. Requests its keep
// function turned away are in neither count.
type CacheStats struct {
	Hits   int64 // served from the cache, provider not called
	Misses int64 // sent to the provider (and stored if they completed)
	// StoreErrors counts completed audio the cache failed to store. Storing
	// is best effort and the listener never notices; this is for the logs.
	StoreErrors int64
}

// Cached is a Synthesizer that serves selected requests from a Cache.
type Cached struct {
	inner        Synthesizer
	cache        Cache
	defaultVoice string
	keep         func(Request) bool
	maxEntry     int

	hits, misses, storeErrors atomic.Int64
	// stores tracks the Puts running in the background, so tests can wait
	// for them.
	stores sync.WaitGroup
}

// NewCached wraps s: requests for which keep(req) is true (every request if
// keep is nil) are served from c when present. On a miss the provider's
// stream is passed through as it arrives, adding no latency, and only when it
// ends cleanly with io.EOF, was neither closed early nor cancelled, and is at
// most maxEntry bytes long is the whole PCM stored; maxEntry <= 0 stores
// nothing. defaultVoice is the voice the provider uses when req.Voice is "",
// so that such requests share a key with those naming it.
func NewCached(s Synthesizer, c Cache, defaultVoice string, keep func(Request) bool, maxEntry int) *Cached {
	if keep == nil {
		keep = func(Request) bool { return true }
	}
	return &Cached{inner: s, cache: c, defaultVoice: defaultVoice, keep: keep, maxEntry: maxEntry}
}

// Name returns the wrapped provider's name: the cache is not a provider.
func (c *Cached) Name() string { return c.inner.Name() }

// Wait returns once the cache writes started so far have ended; the owner
// calls it before closing the Cache, so no write outlives it.
func (c *Cached) Wait() { c.stores.Wait() }

// Stats returns the counts so far.
func (c *Cached) Stats() CacheStats {
	return CacheStats{Hits: c.hits.Load(), Misses: c.misses.Load(), StoreErrors: c.storeErrors.Load()}
}

// key names req's audio. The provider's name is in it because the same voice
// name may sound different (or not exist) elsewhere; NUL cannot occur in
// the parts, so distinct requests cannot share a key.
func (c *Cached) key(req Request) string {
	voice := req.Voice
	if voice == "" {
		voice = c.defaultVoice
	}
	return c.inner.Name() + "\x00" + voice + "\x00" + req.Language + "\x00" + req.Text
}

// Synthesize serves req from the cache or from the provider; see NewCached.
func (c *Cached) Synthesize(ctx context.Context, req Request) (io.ReadCloser, error) {
	if !c.keep(req) {
		return c.inner.Synthesize(ctx, req)
	}
	key := c.key(req)
	if pcm, ok := c.cache.Get(key); ok && len(pcm) > 0 {
		if err := ctx.Err(); err != nil {
			return nil, err
		}
		c.hits.Add(1)
		return &cachedStream{ctx: ctx, r: bytes.NewReader(pcm)}, nil
	}
	c.misses.Add(1)
	rc, err := c.inner.Synthesize(ctx, req)
	if err != nil {
		return nil, err
	}
	if c.maxEntry <= 0 {
		return rc, nil
	}
	return &teeStream{c: c, ctx: ctx, key: key, rc: rc}, nil
}

// cachedStream plays cached audio. It honours ctx like a provider's stream
// does, so a cancelled turn stops the same way whichever served it.
type cachedStream struct {
	ctx context.Context
	r   *bytes.Reader
}

func (s *cachedStream) Read(p []byte) (int, error) {
	if err := s.ctx.Err(); err != nil {
		return 0, err
	}
	return s.r.Read(p)
}

func (s *cachedStream) Close() error { return nil }

// teeStream passes a provider's stream through while copying it aside, and
// hands the copy to the cache when — and only when — the stream completed.
type teeStream struct {
	c   *Cached
	ctx context.Context
	key string
	rc  io.ReadCloser

	// Read's own state; a stream has one reader.
	buf  []byte
	done bool // the copy was stored or abandoned; stop copying

	// closed may be set by another goroutine (a turn being interrupted)
	// while Read blocks in the provider.
	closed atomic.Bool
}

func (t *teeStream) Read(p []byte) (int, error) {
	n, err := t.rc.Read(p)
	if t.done {
		return n, err
	}
	if n > 0 {
		if len(t.buf)+n > t.c.maxEntry {
			// Too long to keep: stop copying rather than buffer audio
			// that will not be stored.
			t.abandon()
		} else {
			t.buf = append(t.buf, p[:n]...)
		}
	}
	switch {
	case err == io.EOF:
		if t.done {
			break
		}
		// A provider cut short by cancellation or Close may end with a
		// clean EOF; such audio is truncated and must not be replayed.
		if t.ctx.Err() != nil || t.closed.Load() || len(t.buf) == 0 {
			t.abandon()
			break
		}
		t.done = true
		pcm := t.buf
		t.buf = nil
		// The listener already has every byte; the write (a database
		// commit) happens off the stream so its end is not delayed.
		t.c.stores.Go(func() {
			if err := t.c.cache.Put(t.key, pcm); err != nil {
				t.c.storeErrors.Add(1)
			}
		})
	case err != nil:
		t.abandon()
	}
	return n, err
}

func (t *teeStream) abandon() {
	t.done = true
	t.buf = nil
}

func (t *teeStream) Close() error {
	t.closed.Store(true)
	return t.rc.Close()
}
