package store

import (
	"bytes"
	"errors"
	"fmt"
	"math/rand/v2"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	bolt "go.etcd.io/bbolt"
)

func openTestAudioCache(t *testing.T, path string, maxBytes int64) *AudioCache {
	t.Helper()
	c, err := OpenAudioCache(path, maxBytes)
	if err != nil {
		t.Fatalf("OpenAudioCache: %v", err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

// pcmOf returns n bytes of recognizable content for key.
func pcmOf(key string, n int) []byte {
	return bytes.Repeat([]byte(key[:1]), n)
}

func mustPut(t *testing.T, c *AudioCache, key string, pcm []byte) {
	t.Helper()
	if err := c.Put(key, pcm); err != nil {
		t.Fatalf("Put(%q): %v", key, err)
	}
}

// wantCached checks which of keys are present, via Get (which touches them,
// so callers check in an order that does not matter for what follows).
func wantCached(t *testing.T, c *AudioCache, present, absent string) {
	t.Helper()
	for _, k := range strings.Split(present, "") {
		if k == "" {
			continue
		}
		if _, ok := c.Get(k); !ok {
			t.Errorf("%q missing, want cached", k)
		}
	}
	for _, k := range strings.Split(absent, "") {
		if k == "" {
			continue
		}
		if _, ok := c.Get(k); ok {
			t.Errorf("%q cached, want evicted", k)
		}
	}
}

func TestAudioCacheRoundTrip(t *testing.T) {
	c := openTestAudioCache(t, filepath.Join(t.TempDir(), "audio.bolt"), 1<<20)
	if _, ok := c.Get("edge\x00voice\x00en-US\x00Hello"); ok {
		t.Fatal("hit on an empty cache")
	}
	pcm := []byte{1, 2, 3, 4, 5, 6}
	mustPut(t, c, "edge\x00voice\x00en-US\x00Hello", pcm)
	pcm[0] = 99 // Put must not keep the caller's slice
	got, ok := c.Get("edge\x00voice\x00en-US\x00Hello")
	if !ok || !bytes.Equal(got, []byte{1, 2, 3, 4, 5, 6}) {
		t.Fatalf("Get = %v, %v", got, ok)
	}
	got[1] = 99 // nor hand out its own
	if again, _ := c.Get("edge\x00voice\x00en-US\x00Hello"); again[1] != 2 {
		t.Fatal("Get returned a slice shared with the cache")
	}
	if c.Len() != 1 || c.Bytes() != 6 {
		t.Fatalf("Len, Bytes = %d, %d; want 1, 6", c.Len(), c.Bytes())
	}

	// Replacing a key replaces its bytes in the accounting too.
	mustPut(t, c, "edge\x00voice\x00en-US\x00Hello", []byte{7, 8})
	if got, _ := c.Get("edge\x00voice\x00en-US\x00Hello"); !bytes.Equal(got, []byte{7, 8}) {
		t.Fatalf("after replace Get = %v", got)
	}
	if c.Len() != 1 || c.Bytes() != 2 {
		t.Fatalf("after replace Len, Bytes = %d, %d; want 1, 2", c.Len(), c.Bytes())
	}
}

func TestAudioCachePersistsAcrossReopen(t *testing.T) {
	path := filepath.Join(t.TempDir(), "audio.bolt")
	c, err := OpenAudioCache(path, 1<<20)
	if err != nil {
		t.Fatal(err)
	}
	mustPut(t, c, "a", pcmOf("a", 100))
	mustPut(t, c, "b", pcmOf("b", 200))
	if err := c.Close(); err != nil {
		t.Fatalf("Close: %v", err)
	}
	if err := c.Close(); err != nil {
		t.Fatalf("second Close: %v", err)
	}

	c = openTestAudioCache(t, path, 1<<20)
	if c.Len() != 2 || c.Bytes() != 300 {
		t.Fatalf("reopened Len, Bytes = %d, %d; want 2, 300", c.Len(), c.Bytes())
	}
	for k, n := range map[string]int{"a": 100, "b": 200} {
		if got, ok := c.Get(k); !ok || !bytes.Equal(got, pcmOf(k, n)) {
			t.Errorf("reopened Get(%q) = %d bytes, %v", k, len(got), ok)
		}
	}
}

func TestAudioCacheEvictsLeastRecentlyUsed(t *testing.T) {
	// 400 bytes hold four 100-byte entries (100 = the largest allowed).
	c := openTestAudioCache(t, filepath.Join(t.TempDir(), "audio.bolt"), 400)
	for _, k := range []string{"a", "b", "c", "d"} {
		mustPut(t, c, k, pcmOf(k, 100))
	}
	if _, ok := c.Get("a"); !ok { // a is now the most recently used
		t.Fatal("a missing before any eviction")
	}
	mustPut(t, c, "e", pcmOf("e", 100)) // evicts b, the oldest untouched
	if c.Len() != 4 || c.Bytes() != 400 {
		t.Fatalf("Len, Bytes = %d, %d; want 4, 400", c.Len(), c.Bytes())
	}
	mustPut(t, c, "f", pcmOf("f", 100)) // evicts c
	// Two 50-byte puts after one 100-byte eviction: g evicts d, h fits.
	mustPut(t, c, "g", pcmOf("g", 50))
	mustPut(t, c, "h", pcmOf("h", 50))
	wantCached(t, c, "aefgh", "bcd")
	if c.Bytes() != 400 {
		t.Fatalf("Bytes = %d, want 400", c.Bytes())
	}
}

func TestAudioCacheRefusesOversizedEntry(t *testing.T) {
	c := openTestAudioCache(t, filepath.Join(t.TempDir(), "audio.bolt"), 400)
	mustPut(t, c, "a", pcmOf("a", 100))
	// 101 bytes is over a quarter of the bound: not cached, not an error,
	// and in particular nothing is evicted for it.
	mustPut(t, c, "big", pcmOf("b", 101))
	mustPut(t, c, "empty", nil)
	wantCached(t, c, "a", "")
	for _, k := range []string{"big", "empty"} {
		if _, ok := c.Get(k); ok {
			t.Errorf("%q was cached", k)
		}
	}
	if c.Len() != 1 || c.Bytes() != 100 {
		t.Fatalf("Len, Bytes = %d, %d; want 1, 100", c.Len(), c.Bytes())
	}

	// A zero bound caches nothing.
	z := openTestAudioCache(t, filepath.Join(t.TempDir(), "zero.bolt"), 0)
	mustPut(t, z, "a", pcmOf("a", 1))
	if z.Len() != 0 {
		t.Fatalf("zero-bound cache holds %d entries", z.Len())
	}
}

func TestAudioCacheReopenSmallerEvictsDownToBound(t *testing.T) {
	path := filepath.Join(t.TempDir(), "audio.bolt")
	c, err := OpenAudioCache(path, 2000)
	if err != nil {
		t.Fatal(err)
	}
	for _, k := range strings.Split("0123456789", "") {
		mustPut(t, c, k, pcmOf(k, 100))
	}
	// Recency is now 0 2 9 8 7 6 5 4 3 1. The touches are only in memory
	// until Close writes them.
	c.Get("2")
	c.Get("0")
	if err := c.Close(); err != nil {
		t.Fatal(err)
	}

	c = openTestAudioCache(t, path, 500) // room for five 100-byte entries
	if c.Len() != 5 || c.Bytes() != 500 {
		t.Fatalf("Len, Bytes = %d, %d; want 5, 500", c.Len(), c.Bytes())
	}
	// The recency order survived too: the next put evicts 7, not 0 or 2.
	mustPut(t, c, "x", pcmOf("x", 100))
	wantCached(t, c, "0298x", "134567")
}

func TestAudioCacheReopenDropsEntriesOverNewLimit(t *testing.T) {
	path := filepath.Join(t.TempDir(), "audio.bolt")
	c, err := OpenAudioCache(path, 1000)
	if err != nil {
		t.Fatal(err)
	}
	mustPut(t, c, "a", pcmOf("a", 200)) // fine under 1000, over 400/4
	mustPut(t, c, "b", pcmOf("b", 50))
	c.Close()

	c = openTestAudioCache(t, path, 400)
	wantCached(t, c, "b", "a")
	if c.Bytes() != 50 {
		t.Fatalf("Bytes = %d, want 50", c.Bytes())
	}
}

// Get's touches reach the file with the next Put, not only at Close, so a
// crash loses little of the recency order.
func TestAudioCachePutPersistsTouches(t *testing.T) {
	c := openTestAudioCache(t, filepath.Join(t.TempDir(), "audio.bolt"), 1000)
	mustPut(t, c, "a", pcmOf("a", 10))
	c.Get("a")
	c.mu.Lock()
	dirty := len(c.dirty)
	touched := c.index[hashKey("a")].Value.(*audioEntry).lastUse
	c.mu.Unlock()
	if dirty != 1 {
		t.Fatalf("%d dirty entries after a Get, want 1", dirty)
	}
	mustPut(t, c, "b", pcmOf("b", 10))
	c.mu.Lock()
	dirty = len(c.dirty)
	c.mu.Unlock()
	if dirty != 0 {
		t.Fatalf("%d dirty entries after a Put, want 0", dirty)
	}
	h := hashKey("a")
	c.db.View(func(tx *bolt.Tx) error {
		if got := tx.Bucket(bucketMeta).Get(h[:]); !bytes.Equal(got, encodeLastUse(touched)) {
			t.Errorf("stored last use %x, want %x", got, encodeLastUse(touched))
		}
		return nil
	})
}

func TestAudioCacheDropsCorruptEntries(t *testing.T) {
	path := filepath.Join(t.TempDir(), "audio.bolt")
	c, err := OpenAudioCache(path, 1000)
	if err != nil {
		t.Fatal(err)
	}
	mustPut(t, c, "good", pcmOf("g", 10))
	mustPut(t, c, "badmeta", pcmOf("b", 10))
	orphan, badmeta := hashKey("orphan"), hashKey("badmeta")
	err = c.db.Update(func(tx *bolt.Tx) error {
		// Audio with no last-use record, a record with no audio, a record
		// of the wrong length, and a key that is not a hash.
		tx.Bucket(bucketAudio).Put(orphan[:], []byte{1, 2})
		tx.Bucket(bucketMeta).Put([]byte("short"), encodeLastUse(1))
		tx.Bucket(bucketMeta).Put(badmeta[:], []byte{1})
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	c.Close()

	c = openTestAudioCache(t, path, 1000)
	if c.Len() != 1 || c.Bytes() != 10 {
		t.Fatalf("Len, Bytes = %d, %d; want 1, 10", c.Len(), c.Bytes())
	}
	if _, ok := c.Get("good"); !ok {
		t.Error("the good entry was dropped")
	}
	if _, ok := c.Get("badmeta"); ok {
		t.Error("the entry with a bad record was kept")
	}
	c.db.View(func(tx *bolt.Tx) error {
		if n := tx.Bucket(bucketAudio).Stats().KeyN; n != 1 {
			t.Errorf("%d audio values left in the file, want 1", n)
		}
		if n := tx.Bucket(bucketMeta).Stats().KeyN; n != 1 {
			t.Errorf("%d records left in the file, want 1", n)
		}
		return nil
	})

	// The file changing under the index (it cannot, short of a bug or a
	// second writer) is a miss, and the entry goes.
	good := hashKey("good")
	c.db.Update(func(tx *bolt.Tx) error { return tx.Bucket(bucketAudio).Put(good[:], []byte{1}) })
	if _, ok := c.Get("good"); ok {
		t.Error("hit on an entry whose size disagrees with the index")
	}
	if c.Len() != 0 || c.Bytes() != 0 {
		t.Fatalf("Len, Bytes = %d, %d; want 0, 0", c.Len(), c.Bytes())
	}
}

func TestAudioCacheForgetsAnotherFormat(t *testing.T) {
	path := filepath.Join(t.TempDir(), "audio.bolt")
	c, err := OpenAudioCache(path, 1000)
	if err != nil {
		t.Fatal(err)
	}
	mustPut(t, c, "a", pcmOf("a", 10))
	c.db.Update(func(tx *bolt.Tx) error { return tx.Bucket(bucketInfo).Put(infoFormatKey, []byte("0")) })
	c.Close()

	c = openTestAudioCache(t, path, 1000)
	if c.Len() != 0 {
		t.Fatalf("Len = %d after a format change, want 0", c.Len())
	}
	mustPut(t, c, "a", pcmOf("a", 10))
	wantCached(t, c, "a", "")
}

func TestAudioCacheInUse(t *testing.T) {
	defer func(d time.Duration) { audioCacheLockTimeout = d }(audioCacheLockTimeout)
	audioCacheLockTimeout = 100 * time.Millisecond

	path := filepath.Join(t.TempDir(), "audio.bolt")
	openTestAudioCache(t, path, 1000)
	// bbolt's flock is per open file, so a second open in this process
	// stands in for a second server on the same data dir.
	_, err := OpenAudioCache(path, 1000)
	if err == nil || !strings.Contains(err.Error(), "is in use by another process") {
		t.Fatalf("second open: %v, want an in-use error", err)
	}
}

func TestAudioCacheClosed(t *testing.T) {
	c, err := OpenAudioCache(filepath.Join(t.TempDir(), "audio.bolt"), 1000)
	if err != nil {
		t.Fatal(err)
	}
	mustPut(t, c, "a", pcmOf("a", 10))
	c.Close()
	if _, ok := c.Get("a"); ok {
		t.Error("hit after Close")
	}
	if err := c.Put("b", pcmOf("b", 10)); !errors.Is(err, ErrAudioCacheClosed) {
		t.Errorf("Put after Close: %v", err)
	}
}

func TestAudioCacheConcurrent(t *testing.T) {
	path := filepath.Join(t.TempDir(), "audio.bolt")
	const maxBytes = 4000
	c, err := OpenAudioCache(path, maxBytes)
	if err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	for g := range 8 {
		wg.Go(func() {
			r := rand.New(rand.NewPCG(uint64(g), 1))
			for range 200 {
				k := fmt.Sprintf("k%02d", r.IntN(40))
				if r.IntN(3) == 0 {
					// Content is a function of the key so a hit can be checked.
					if err := c.Put(k, bytes.Repeat([]byte(k), 10+r.IntN(20))); err != nil {
						t.Error(err)
						return
					}
					continue
				}
				if got, ok := c.Get(k); ok && (len(got)%len(k) != 0 || !bytes.Equal(got, bytes.Repeat([]byte(k), len(got)/len(k)))) {
					t.Errorf("Get(%q) returned another entry's audio", k)
					return
				}
				c.Len()
				c.Bytes()
			}
		})
	}
	wg.Wait()

	c.mu.Lock()
	var sum int64
	for el := c.lru.Front(); el != nil; el = el.Next() {
		sum += el.Value.(*audioEntry).size
	}
	if sum != c.bytes || c.bytes > maxBytes || c.lru.Len() != len(c.index) {
		t.Errorf("index out of step: list %d bytes in %d entries, counted %d bytes in %d", sum, c.lru.Len(), c.bytes, len(c.index))
	}
	c.mu.Unlock()
	n, size := c.Len(), c.Bytes()
	if err := c.Close(); err != nil {
		t.Fatal(err)
	}
	c = openTestAudioCache(t, path, maxBytes)
	if c.Len() != n || c.Bytes() != size {
		t.Errorf("reopened Len, Bytes = %d, %d; before close %d, %d", c.Len(), c.Bytes(), n, size)
	}
}
