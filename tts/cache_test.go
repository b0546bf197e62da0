package tts

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
)

// memCache is the Cache of these tests (tts must not import store).
type memCache struct {
	mu      sync.Mutex
	m       map[string][]byte
	gets    int
	puts    int
	failPut error
}

func newMemCache() *memCache { return &memCache{m: make(map[string][]byte)} }

func (c *memCache) Get(key string) ([]byte, bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.gets++
	b, ok := c.m[key]
	return b, ok
}

func (c *memCache) Put(key string, pcm []byte) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.puts++
	if c.failPut != nil {
		return c.failPut
	}
	c.m[key] = pcm
	return nil
}

func (c *memCache) keys() []string {
	c.mu.Lock()
	defer c.mu.Unlock()
	var ks []string
	for k := range c.m {
		ks = append(ks, k)
	}
	return ks
}

func (c *memCache) counts() (gets, puts int) {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.gets, c.puts
}

// fakeAudio is what fakeSynth says for req: distinct per voice and text.
func fakeAudio(req Request, n int) []byte {
	seed := []byte(req.Voice + "|" + req.Language + "|" + req.Text)
	out := make([]byte, n)
	for i := range out {
		out[i] = seed[i%len(seed)] + byte(i/len(seed))
	}
	return out
}

// fakeSynth is a provider that counts its calls and can misbehave.
type fakeSynth struct {
	name  string
	size  int // bytes of audio per request
	calls atomic.Int64
	// failAfter > 0: after that many bytes, Read fails.
	failAfter int
	// eofOnCancel: a cancelled ctx ends the stream with a clean io.EOF, as a
	// sloppy provider might, instead of an error.
	eofOnCancel bool
	err         error // Synthesize fails with it
}

func (f *fakeSynth) Name() string { return f.name }

func (f *fakeSynth) Synthesize(ctx context.Context, req Request) (io.ReadCloser, error) {
	f.calls.Add(1)
	if f.err != nil {
		return nil, f.err
	}
	return &fakeStream{f: f, ctx: ctx, pcm: fakeAudio(req, f.size)}, nil
}

type fakeStream struct {
	f      *fakeSynth
	ctx    context.Context
	pcm    []byte
	off    int
	failed bool
	closed atomic.Bool
}

var errProviderBroke = errors.New("provider broke mid-stream")

func (s *fakeStream) Read(p []byte) (int, error) {
	if s.closed.Load() {
		// The worst a provider can do after Close: claim a clean end.
		return 0, io.EOF
	}
	if err := s.ctx.Err(); err != nil {
		if s.f.eofOnCancel {
			return 0, io.EOF
		}
		return 0, err
	}
	if s.f.failAfter > 0 && s.off >= s.f.failAfter {
		if s.failed {
			// Again the worst case: a clean end after the failure.
			return 0, io.EOF
		}
		s.failed = true
		return 0, errProviderBroke
	}
	if s.off == len(s.pcm) {
		return 0, io.EOF
	}
	// Odd-sized chunks, as a decoder might produce.
	n := copy(p[:min(len(p), 7)], s.pcm[s.off:])
	s.off += n
	return n, nil
}

func (s *fakeStream) Close() error { s.closed.Store(true); return nil }

func say(t *testing.T, s Synthesizer, ctx context.Context, req Request) []byte {
	t.Helper()
	rc, err := s.Synthesize(ctx, req)
	if err != nil {
		t.Fatalf("Synthesize(%q): %v", req.Text, err)
	}
	defer rc.Close()
	b, err := io.ReadAll(rc)
	if err != nil {
		t.Fatalf("reading %q: %v", req.Text, err)
	}
	return b
}

func TestCachedSecondRequestIsAHit(t *testing.T) {
	f := &fakeSynth{name: "edge", size: 1000}
	mc := newMemCache()
	c := NewCached(f, mc, "en-US-AriaNeural", nil, 1<<20)
	if c.Name() != "edge" {
		t.Fatalf("Name = %q", c.Name())
	}
	req := Request{Text: "Hi, I am Nexy.", Voice: "en-US-AriaNeural", Language: "en-US"}

	first := say(t, c, context.Background(), req)
	if !bytes.Equal(first, fakeAudio(req, 1000)) {
		t.Fatal("miss did not pass the provider's audio through unchanged")
	}
	c.stores.Wait()
	second := say(t, c, context.Background(), req)
	if !bytes.Equal(second, first) {
		t.Fatal("hit returned different audio")
	}
	if n := f.calls.Load(); n != 1 {
		t.Fatalf("provider called %d times, want 1", n)
	}
	if s := c.Stats(); s != (CacheStats{Hits: 1, Misses: 1}) {
		t.Fatalf("Stats = %+v", s)
	}
	// The default voice shares the key of the voice it stands for.
	say(t, c, context.Background(), Request{Text: req.Text, Language: "en-US"})
	if n := f.calls.Load(); n != 1 {
		t.Fatalf("request with the default voice called the provider")
	}
}

func TestCachedKeepFalseGoesToProvider(t *testing.T) {
	f := &fakeSynth{name: "edge", size: 100}
	mc := newMemCache()
	keep := func(r Request) bool { return strings.HasPrefix(r.Text, "Welcome") }
	c := NewCached(f, mc, "v", keep, 1<<20)
	req := Request{Text: "The weather today is mild."}
	for range 3 {
		if got := say(t, c, context.Background(), req); !bytes.Equal(got, fakeAudio(req, 100)) {
			t.Fatal("pass-through changed the audio")
		}
	}
	c.stores.Wait()
	if n := f.calls.Load(); n != 3 {
		t.Fatalf("provider called %d times, want 3", n)
	}
	if gets, puts := mc.counts(); gets != 0 || puts != 0 {
		t.Fatalf("cache used for a request not kept: %d gets, %d puts", gets, puts)
	}
	if s := c.Stats(); s != (CacheStats{}) {
		t.Fatalf("Stats = %+v, want zero", s)
	}

	say(t, c, context.Background(), Request{Text: "Welcome back."})
	c.stores.Wait()
	say(t, c, context.Background(), Request{Text: "Welcome back."})
	if n := f.calls.Load(); n != 4 {
		t.Fatalf("provider called %d times, want 4", n)
	}
}

// notCached asserts that req was not stored: the next request calls the
// provider again.
func notCached(t *testing.T, c *Cached, f *fakeSynth, mc *memCache, req Request) {
	t.Helper()
	c.stores.Wait()
	if ks := mc.keys(); len(ks) != 0 {
		t.Fatalf("stored %q", ks)
	}
	before := f.calls.Load()
	f.failAfter, f.eofOnCancel = 0, false
	say(t, c, context.Background(), req)
	if f.calls.Load() != before+1 {
		t.Fatal("served from cache")
	}
}

func TestCachedStreamFailingMidwayIsNotCached(t *testing.T) {
	f := &fakeSynth{name: "edge", size: 1000, failAfter: 500}
	mc := newMemCache()
	c := NewCached(f, mc, "v", nil, 1<<20)
	req := Request{Text: "Hello"}
	rc, err := c.Synthesize(context.Background(), req)
	if err != nil {
		t.Fatal(err)
	}
	got, err := io.ReadAll(rc)
	if !errors.Is(err, errProviderBroke) {
		t.Fatalf("read error %v, want the provider's", err)
	}
	if _, err := rc.Read(make([]byte, 10)); err != io.EOF {
		t.Fatalf("read after the failure: %v, want the fake's io.EOF", err)
	}
	rc.Close()
	if len(got) == 0 || len(got) >= 1000 {
		t.Fatalf("read %d bytes before the failure", len(got))
	}
	notCached(t, c, f, mc, req)
}

func TestCachedStreamClosedEarlyIsNotCached(t *testing.T) {
	f := &fakeSynth{name: "edge", size: 1000}
	mc := newMemCache()
	c := NewCached(f, mc, "v", nil, 1<<20)
	req := Request{Text: "Hello"}
	rc, err := c.Synthesize(context.Background(), req)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := io.ReadFull(rc, make([]byte, 100)); err != nil {
		t.Fatal(err)
	}
	rc.Close()
	io.ReadAll(rc) // whatever the provider does after Close, it is not stored
	notCached(t, c, f, mc, req)
}

func TestCachedCancelledStreamIsNotCached(t *testing.T) {
	// A provider that answers cancellation with a clean EOF: the decorator
	// must notice the truncation itself.
	f := &fakeSynth{name: "edge", size: 1000, eofOnCancel: true}
	mc := newMemCache()
	c := NewCached(f, mc, "v", nil, 1<<20)
	req := Request{Text: "Hello"}
	ctx, cancel := context.WithCancel(context.Background())
	rc, err := c.Synthesize(ctx, req)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := io.ReadFull(rc, make([]byte, 100)); err != nil {
		t.Fatal(err)
	}
	cancel()
	if _, err := io.ReadAll(rc); err != nil {
		t.Fatal(err)
	}
	rc.Close()
	notCached(t, c, f, mc, req)
}

func TestCachedOverMaxEntryIsNotCached(t *testing.T) {
	f := &fakeSynth{name: "edge", size: 1000}
	mc := newMemCache()
	c := NewCached(f, mc, "v", nil, 999)
	req := Request{Text: "Hello"}
	if got := say(t, c, context.Background(), req); len(got) != 1000 {
		t.Fatalf("read %d bytes, want all 1000 although not cached", len(got))
	}
	notCached(t, c, f, mc, req)

	// Exactly maxEntry is stored.
	c = NewCached(f, mc, "v", nil, 1000)
	say(t, c, context.Background(), req)
	c.stores.Wait()
	if len(mc.keys()) != 1 {
		t.Fatal("audio of exactly maxEntry bytes was not stored")
	}
}

func TestCachedKeys(t *testing.T) {
	mc := newMemCache()
	edge := NewCached(&fakeSynth{name: "edge", size: 10}, mc, "Aria", nil, 1<<20)
	azure := NewCached(&fakeSynth{name: "azure", size: 10}, mc, "Aria", nil, 1<<20)
	reqs := []Request{
		{Text: "Hello"},
		{Text: "Hello", Voice: "Guy"},
		{Text: "Hello", Voice: "Aria", Language: "en-GB"},
		{Text: "Hello!"},
	}
	for _, r := range reqs {
		say(t, edge, context.Background(), r)
		say(t, azure, context.Background(), r)
	}
	edge.stores.Wait()
	azure.stores.Wait()
	if n := len(mc.keys()); n != 2*len(reqs) {
		t.Fatalf("%d keys, want %d: %q", n, 2*len(reqs), mc.keys())
	}
	want := "edge\x00Aria\x00\x00Hello"
	if _, ok := mc.Get(want); !ok {
		t.Fatalf("no key %q among %q", want, mc.keys())
	}
	// Every request so far was a miss; each again is a hit with its own audio.
	for _, r := range reqs {
		if got := say(t, edge, context.Background(), r); !bytes.Equal(got, fakeAudio(r, 10)) {
			t.Errorf("%+v: hit returned another request's audio", r)
		}
	}
	if s := edge.Stats(); s.Hits != int64(len(reqs)) {
		t.Fatalf("Stats = %+v", s)
	}
}

func TestCachedHitHonoursContext(t *testing.T) {
	f := &fakeSynth{name: "edge", size: 1000}
	c := NewCached(f, newMemCache(), "v", nil, 1<<20)
	req := Request{Text: "Hello"}
	say(t, c, context.Background(), req)
	c.stores.Wait()

	ctx, cancel := context.WithCancel(context.Background())
	rc, err := c.Synthesize(ctx, req)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := io.ReadFull(rc, make([]byte, 10)); err != nil {
		t.Fatal(err)
	}
	cancel()
	if _, err := io.ReadAll(rc); !errors.Is(err, context.Canceled) {
		t.Fatalf("read after cancel: %v, want context.Canceled", err)
	}
	if _, err := c.Synthesize(ctx, req); !errors.Is(err, context.Canceled) {
		t.Fatalf("Synthesize with a cancelled ctx: %v", err)
	}
}

func TestCachedErrors(t *testing.T) {
	// The provider refusing is the caller's error, unchanged.
	boom := errors.New("no such voice")
	c := NewCached(&fakeSynth{name: "edge", err: boom}, newMemCache(), "v", nil, 1<<20)
	if _, err := c.Synthesize(context.Background(), Request{Text: "Hello"}); err != boom {
		t.Fatalf("Synthesize: %v, want the provider's error", err)
	}

	// A cache that cannot store is invisible to the listener, and counted.
	mc := newMemCache()
	mc.failPut = errors.New("disk full")
	f := &fakeSynth{name: "edge", size: 100}
	c = NewCached(f, mc, "v", nil, 1<<20)
	req := Request{Text: "Hello"}
	if got := say(t, c, context.Background(), req); !bytes.Equal(got, fakeAudio(req, 100)) {
		t.Fatal("audio changed")
	}
	c.stores.Wait()
	if s := c.Stats(); s.StoreErrors != 1 {
		t.Fatalf("Stats = %+v, want one store error", s)
	}
}

func TestCachedConcurrent(t *testing.T) {
	f := &fakeSynth{name: "edge", size: 3000}
	mc := newMemCache()
	c := NewCached(f, mc, "v", nil, 1<<20)
	var wg sync.WaitGroup
	for g := range 16 {
		wg.Go(func() {
			for i := range 30 {
				req := Request{Text: fmt.Sprintf("phrase %d", (g+i)%5)}
				rc, err := c.Synthesize(context.Background(), req)
				if err != nil {
					t.Error(err)
					return
				}
				got, err := io.ReadAll(rc)
				rc.Close()
				if err != nil || !bytes.Equal(got, fakeAudio(req, 3000)) {
					t.Errorf("%q: %d bytes, %v", req.Text, len(got), err)
					return
				}
				c.Stats()
			}
		})
	}
	wg.Wait()
	c.stores.Wait()
	s := c.Stats()
	if s.Hits+s.Misses != 16*30 || s.Misses != f.calls.Load() {
		t.Fatalf("Stats = %+v with %d provider calls", s, f.calls.Load())
	}
	if len(mc.keys()) != 5 {
		t.Fatalf("%d keys, want 5", len(mc.keys()))
	}
}
