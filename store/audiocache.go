package store

// The phrase-audio cache: synthesized speech (the welcome text, phrases the
// assistant repeats) kept in bbolt, a file of its own next to the SQLite
// database, so a repeated phrase costs neither a provider call nor its latency.

import (
	"bytes"
	"container/list"
	"crypto/sha256"
	"encoding/binary"
	"errors"
	"fmt"
	"sort"
	"sync"
	"time"

	bolt "go.etcd.io/bbolt"
	bolterrors "go.etcd.io/bbolt/errors"
)

// Bucket layout. Audio values are the raw PCM, keyed by sha256 of the
// caller's key; the last-use times live apart in "meta" so touching an entry
// never rewrites its (large) audio value.
var (
	bucketInfo  = []byte("info")  // "format" → audioCacheFormat
	bucketAudio = []byte("audio") // sha256(key) → PCM
	bucketMeta  = []byte("meta")  // sha256(key) → last use, unix nanoseconds, big-endian uint64

	infoFormatKey    = []byte("format")
	audioCacheFormat = []byte("1")
)

// audioCacheLockTimeout bounds the wait for bbolt's file lock: another process
// holding the file is a configuration mistake to report, not a reason to hang
// at start-up.
var audioCacheLockTimeout = 2 * time.Second // a var so the test need not wait the full time

// ErrAudioCacheClosed is returned by Put after Close.
var ErrAudioCacheClosed = errors.New("audio cache is closed")

// AudioCache is a bounded cache of synthesized speech on bbolt. Keys are
// opaque strings chosen by the caller (the tts decorator puts provider, voice,
// language and text in them); values are raw PCM. The total size of the
// values never exceeds the bound given to OpenAudioCache: the least recently
// used entries are dropped to make room, and an entry larger than a quarter of
// the bound is not cached at all, so one long answer cannot flush every short
// phrase.
//
// An in-memory index (size and last use of every entry) is loaded at open, so
// Get and eviction never scan the database. Being a cache, it never turns its
// own trouble into the user's: an entry that is unknown or inconsistent is
// dropped, and a failed read is a miss.
//
// AudioCache is safe for concurrent use.
type AudioCache struct {
	db       *bolt.DB
	path     string
	maxBytes int64

	// wmu serializes the writers (Put, drop, Close) so the index can be
	// planned, written and applied without holding mu across a bbolt commit
	// (an fsync): Gets only ever wait for the index bookkeeping.
	wmu sync.Mutex

	mu     sync.Mutex
	index  map[[sha256.Size]byte]*list.Element // value: *audioEntry
	lru    *list.List                          // front = most recently used
	bytes  int64
	dirty  map[[sha256.Size]byte]struct{} // last use changed by Get, not yet written
	clock  int64                          // last last-use handed out, see tickLocked
	closed bool
}

type audioEntry struct {
	hash    [sha256.Size]byte
	size    int64
	lastUse int64 // unix nanoseconds
}

// OpenAudioCache opens (creating if needed) the audio cache in the bbolt file
// at path, holding at most maxBytes of audio; maxBytes <= 0 caches nothing.
// Entries beyond the bound (the file was written with a larger one) are
// evicted, least recently used first, before it returns. If another process
// holds the file, it fails after a short wait instead of blocking.
func OpenAudioCache(path string, maxBytes int64) (*AudioCache, error) {
	db, err := bolt.Open(path, 0o600, &bolt.Options{Timeout: audioCacheLockTimeout})
	if errors.Is(err, bolterrors.ErrTimeout) {
		return nil, fmt.Errorf("audio cache %s is in use by another process: %w", path, err)
	}
	if err != nil {
		return nil, fmt.Errorf("audio cache %s: %w", path, err)
	}
	c := &AudioCache{
		db:       db,
		path:     path,
		maxBytes: maxBytes,
		index:    make(map[[sha256.Size]byte]*list.Element),
		lru:      list.New(),
		dirty:    make(map[[sha256.Size]byte]struct{}),
	}
	if err := db.Update(c.load); err != nil {
		db.Close()
		return nil, fmt.Errorf("audio cache %s: %w", path, err)
	}
	return c, nil
}

// load builds the index from the file inside one write transaction, dropping
// whatever it cannot vouch for: a file of another format, audio without a
// last-use record or the reverse, and entries that do not fit the bound.
func (c *AudioCache) load(tx *bolt.Tx) error {
	info, err := tx.CreateBucketIfNotExists(bucketInfo)
	if err != nil {
		return err
	}
	if f := info.Get(infoFormatKey); f != nil && !bytes.Equal(f, audioCacheFormat) {
		// Written by a different layout: its contents mean nothing to us.
		for _, name := range [][]byte{bucketAudio, bucketMeta} {
			if err := tx.DeleteBucket(name); err != nil && !errors.Is(err, bolterrors.ErrBucketNotFound) {
				return err
			}
		}
	}
	if err := info.Put(infoFormatKey, audioCacheFormat); err != nil {
		return err
	}
	audio, err := tx.CreateBucketIfNotExists(bucketAudio)
	if err != nil {
		return err
	}
	meta, err := tx.CreateBucketIfNotExists(bucketMeta)
	if err != nil {
		return err
	}

	var entries []*audioEntry
	var dropAudio, dropMeta [][]byte // bbolt forbids deleting while iterating
	err = meta.ForEach(func(k, v []byte) error {
		a := audio.Get(k)
		if len(k) != sha256.Size || len(v) != 8 || a == nil {
			dropMeta = append(dropMeta, bytes.Clone(k))
			if a != nil {
				dropAudio = append(dropAudio, bytes.Clone(k))
			}
			return nil
		}
		e := &audioEntry{size: int64(len(a)), lastUse: int64(binary.BigEndian.Uint64(v))}
		copy(e.hash[:], k)
		entries = append(entries, e)
		return nil
	})
	if err != nil {
		return err
	}
	err = audio.ForEach(func(k, _ []byte) error {
		if meta.Get(k) == nil {
			dropAudio = append(dropAudio, bytes.Clone(k))
		}
		return nil
	})
	if err != nil {
		return err
	}

	// Most recent first, so the list is built front to back and the bound is
	// enforced by keeping the most recently used entries that fit.
	sort.Slice(entries, func(i, j int) bool { return entries[i].lastUse > entries[j].lastUse })
	full := false
	for _, e := range entries {
		// Once one entry does not fit, all older ones go too: eviction is
		// strictly least recently used first, as it is in Put.
		full = full || c.bytes+e.size > c.maxBytes
		if full || !c.fits(e.size) {
			dropAudio = append(dropAudio, e.hash[:])
			dropMeta = append(dropMeta, e.hash[:])
			continue
		}
		c.clock = max(c.clock, e.lastUse)
		c.index[e.hash] = c.lru.PushBack(e)
		c.bytes += e.size
	}
	for _, k := range dropAudio {
		if err := audio.Delete(k); err != nil {
			return err
		}
	}
	for _, k := range dropMeta {
		if err := meta.Delete(k); err != nil {
			return err
		}
	}
	return nil
}

// fits reports whether an entry of n bytes may be cached at all.
func (c *AudioCache) fits(n int64) bool {
	return n > 0 && n <= c.maxBytes/4
}

// tickLocked returns the time to record as a last use: the wall clock, but
// strictly increasing (also across restarts, as load starts from the newest
// recorded time) so the order survives equal readings and a clock stepped
// back.
func (c *AudioCache) tickLocked() int64 {
	c.clock = max(time.Now().UnixNano(), c.clock+1)
	return c.clock
}

func hashKey(key string) [sha256.Size]byte { return sha256.Sum256([]byte(key)) }

func encodeLastUse(t int64) []byte {
	return binary.BigEndian.AppendUint64(nil, uint64(t))
}

// Get returns a copy of the audio cached under key. A missing, unreadable or
// inconsistent entry is a miss (and the latter two are dropped).
func (c *AudioCache) Get(key string) ([]byte, bool) {
	h := hashKey(key)
	c.mu.Lock()
	el, ok := c.index[h]
	closed := c.closed
	c.mu.Unlock()
	if !ok || closed {
		return nil, false
	}
	want := el.Value.(*audioEntry).size

	var pcm []byte
	err := c.db.View(func(tx *bolt.Tx) error {
		if b := tx.Bucket(bucketAudio); b != nil {
			// bbolt's slice is only valid inside the transaction.
			pcm = bytes.Clone(b.Get(h[:]))
		}
		return nil
	})
	if err != nil {
		return nil, false // closed under us, or a read failure: a miss either way
	}
	if int64(len(pcm)) != want {
		// Evicted or replaced between the index look-up and the read (fine,
		// a miss) or the file disagrees with the index (drop the entry).
		c.dropIfStale(h, el)
		return nil, false
	}

	c.mu.Lock()
	if cur, ok := c.index[h]; ok && cur == el && !c.closed {
		c.lru.MoveToFront(el)
		el.Value.(*audioEntry).lastUse = c.tickLocked()
		c.dirty[h] = struct{}{}
	}
	c.mu.Unlock()
	return pcm, true
}

// dropIfStale removes the entry h from the index and the file if it is still
// the one Get saw (el) and the file still disagrees with it.
func (c *AudioCache) dropIfStale(h [sha256.Size]byte, el *list.Element) {
	c.wmu.Lock()
	defer c.wmu.Unlock()
	c.mu.Lock()
	if cur, ok := c.index[h]; !ok || cur != el || c.closed {
		c.mu.Unlock()
		return
	}
	c.mu.Unlock()
	// Only writers change the file, and we hold wmu: re-check, then delete.
	_ = c.db.Update(func(tx *bolt.Tx) error {
		a, m := tx.Bucket(bucketAudio), tx.Bucket(bucketMeta)
		if int64(len(a.Get(h[:]))) == el.Value.(*audioEntry).size {
			return nil
		}
		if err := a.Delete(h[:]); err != nil {
			return err
		}
		return m.Delete(h[:])
	})
	c.mu.Lock()
	c.removeLocked(h, el)
	c.mu.Unlock()
}

func (c *AudioCache) removeLocked(h [sha256.Size]byte, el *list.Element) {
	c.lru.Remove(el)
	delete(c.index, h)
	delete(c.dirty, h)
	c.bytes -= el.Value.(*audioEntry).size
}

// Put caches pcm under key, replacing any previous value, and evicts the
// least recently used entries as needed to stay within the bound. Audio that
// is empty or larger than a quarter of the bound is not cached (and that is
// not an error). The caller may reuse pcm after Put returns. An error means
// the write failed and nothing changed; the cache remains usable.
func (c *AudioCache) Put(key string, pcm []byte) error {
	size := int64(len(pcm))
	if !c.fits(size) {
		return nil
	}
	h := hashKey(key)

	c.wmu.Lock()
	defer c.wmu.Unlock()

	// Plan under mu: which entries go, and which last-use times to persist.
	c.mu.Lock()
	if c.closed {
		c.mu.Unlock()
		return ErrAudioCacheClosed
	}
	now := c.tickLocked()
	total := c.bytes + size
	old := c.index[h]
	if old != nil {
		total -= old.Value.(*audioEntry).size
	}
	var victims []*list.Element
	for el := c.lru.Back(); el != nil && total > c.maxBytes; el = el.Prev() {
		if el == old {
			continue
		}
		victims = append(victims, el)
		total -= el.Value.(*audioEntry).size
	}
	gone := make(map[[sha256.Size]byte]bool, len(victims)+1)
	gone[h] = true // written below with its own time
	for _, v := range victims {
		gone[v.Value.(*audioEntry).hash] = true
	}
	touched := make(map[[sha256.Size]byte]int64, len(c.dirty))
	for d := range c.dirty {
		if !gone[d] {
			touched[d] = c.index[d].Value.(*audioEntry).lastUse
		}
	}
	c.mu.Unlock()

	// Gets may move entries meanwhile; a victim touched in this window is
	// evicted anyway, which costs one re-synthesis at worst.
	err := c.db.Update(func(tx *bolt.Tx) error {
		a, m := tx.Bucket(bucketAudio), tx.Bucket(bucketMeta)
		for _, v := range victims {
			vh := v.Value.(*audioEntry).hash
			if err := a.Delete(vh[:]); err != nil {
				return err
			}
			if err := m.Delete(vh[:]); err != nil {
				return err
			}
		}
		if err := a.Put(h[:], pcm); err != nil {
			return err
		}
		if err := m.Put(h[:], encodeLastUse(now)); err != nil {
			return err
		}
		// Last-use times from Gets ride along with this commit for free.
		for d, t := range touched {
			if err := m.Put(d[:], encodeLastUse(t)); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		return fmt.Errorf("audio cache %s: %w", c.path, err)
	}

	c.mu.Lock()
	defer c.mu.Unlock()
	for _, v := range victims {
		c.removeLocked(v.Value.(*audioEntry).hash, v)
	}
	if old != nil {
		c.removeLocked(h, old)
	}
	for d, t := range touched {
		// A Get after the plan may have touched it again; then it stays dirty.
		if el, ok := c.index[d]; ok && el.Value.(*audioEntry).lastUse == t {
			delete(c.dirty, d)
		}
	}
	c.index[h] = c.lru.PushFront(&audioEntry{hash: h, size: size, lastUse: now})
	c.bytes += size
	return nil
}

// Len returns the number of cached entries.
func (c *AudioCache) Len() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return len(c.index)
}

// Bytes returns the total size of the cached audio.
func (c *AudioCache) Bytes() int64 {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.bytes
}

// Close writes the last-use times that Gets changed since the last Put and
// closes the file. Later Gets miss and later Puts fail; Close is idempotent.
func (c *AudioCache) Close() error {
	c.wmu.Lock()
	defer c.wmu.Unlock()
	c.mu.Lock()
	if c.closed {
		c.mu.Unlock()
		return nil
	}
	c.closed = true
	touched := make(map[[sha256.Size]byte]int64, len(c.dirty))
	for d := range c.dirty {
		touched[d] = c.index[d].Value.(*audioEntry).lastUse
	}
	clear(c.dirty)
	c.mu.Unlock()

	var flushErr error
	if len(touched) > 0 {
		flushErr = c.db.Update(func(tx *bolt.Tx) error {
			m := tx.Bucket(bucketMeta)
			for d, t := range touched {
				if err := m.Put(d[:], encodeLastUse(t)); err != nil {
					return err
				}
			}
			return nil
		})
	}
	// bbolt's Close waits for read transactions in flight (Gets) to finish.
	if err := errors.Join(flushErr, c.db.Close()); err != nil {
		return fmt.Errorf("audio cache %s: %w", c.path, err)
	}
	return nil
}
