// Package updates is the Nexy app's Sparkle update feed: per-channel
// release manifests, their verification (length, SHA-256, Ed25519 against
// the public key only), the appcast XML, the artifact downloads, and the
// publishing steps the release command line uses.
//
// Layout of the updates directory (config: updates.dir, default
// <data_dir>/updates):
//
//	stable.json, beta.json   one manifest per channel (Manifest), newest release first
//	downloads/               the artifacts the manifests name in "file"
package updates

import (
	"context"
	"crypto/ed25519"
	"crypto/sha256"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/url"
	"os"
	"path/filepath"
	"runtime/debug"
	"strings"
	"sync"
	"sync/atomic"
	"time"
)

// Options configures a Feed.
type Options struct {
	// PublicURL is the server's base URL for the appcast's links, e.g.
	// "https://nexy.example.com"; "" = the scheme and Host of each request.
	PublicURL string
	// BetaEnabled serves the beta channel; off, /updates/appcast-beta.xml
	// answers 404 and beta-only artifacts are not served.
	BetaEnabled bool
	// PublicKey verifies release signatures. When nil, PublicKeyFile is
	// read at every reload (so a key generated later is picked up).
	PublicKey ed25519.PublicKey
	// PublicKeyFile is the public key file, normally
	// PublicKeyFile(DefaultKeyFile(data_dir)).
	PublicKeyFile string
	// Log receives one line per reload; nil = no log.
	Log *slog.Logger
	// Now is the clock; nil = time.Now.
	Now func() time.Time
	// PollInterval is how often Watch looks for changes; 0 = 2 s.
	PollInterval time.Duration
}

// Feed serves the update feed from the manifests in one directory. Every
// request reads an immutable snapshot; Reload builds a new one and swaps
// it in whole, so a request never sees half a reload.
type Feed struct {
	dir  string
	opts Options
	snap atomic.Pointer[snapshot]

	mu       sync.Mutex            // serialises reloads; guards the fields below
	lastGood map[string]*Manifest  // the last manifest of each channel that parsed
	checked  map[checkKey]checkRes // verification results, so polls do not re-hash
	seen     string                // fingerprint of the inputs of the last reload
}

// Open builds a feed on dir and loads it once. Problems with manifests,
// artifacts or the key do not fail Open: the feed starts degraded and
// Status says why. Open fails only on bad options.
func Open(dir string, opts Options) (*Feed, error) {
	if opts.PublicURL != "" {
		u, err := url.Parse(opts.PublicURL)
		if err != nil || (u.Scheme != "https" && u.Scheme != "http") || u.Host == "" || u.RawQuery != "" || u.Fragment != "" {
			return nil, fmt.Errorf("updates: public URL %q: want an absolute http(s) URL such as https://nexy.example.com", opts.PublicURL)
		}
		opts.PublicURL = strings.TrimRight(opts.PublicURL, "/")
	}
	if opts.PublicKey != nil && len(opts.PublicKey) != ed25519.PublicKeySize {
		return nil, fmt.Errorf("updates: public key: %d bytes, want %d", len(opts.PublicKey), ed25519.PublicKeySize)
	}
	if opts.Log == nil {
		opts.Log = slog.New(slog.DiscardHandler)
	}
	if opts.Now == nil {
		opts.Now = time.Now
	}
	if opts.PollInterval <= 0 {
		opts.PollInterval = 2 * time.Second
	}
	f := &Feed{dir: dir, opts: opts, lastGood: map[string]*Manifest{}, checked: map[checkKey]checkRes{}}
	_ = f.Reload() // its problems are in Status
	return f, nil
}

// snapshot is what one reload found: immutable once stored.
type snapshot struct {
	channels map[string][]Release  // verified releases served per channel, newest first
	files    map[string]servedFile // artifact name → the verified file
	status   FeedStatus
	renders  *renderCache
}

// servedFile identifies the verified bytes of an artifact, so a download
// never serves a file that changed after verification.
type servedFile struct {
	size    int64
	modTime time.Time
	sha256  string
}

// checkKey names one verification: the same file (by size and mtime)
// checked against the same expectations gives the same answer.
type checkKey struct {
	file, sha, sig, pub string
	size                int64
	modTime             time.Time
}

type checkRes struct{ err error }

// verifications counts artifacts read in full (the tests check the cache).
var verifications atomic.Int64

// FeedStatus is the feed's state for /status and `nexy release show`.
type FeedStatus struct {
	Status      string          `json:"status"` // "OK" or "degraded"
	Degraded    bool            `json:"degraded"`
	Reason      string          `json:"reason,omitempty"` // every problem, "; "-separated
	LastReload  time.Time       `json:"last_reload"`
	PublicKey   string          `json:"public_key,omitempty"` // SUPublicEDKey releases are verified with
	BetaEnabled bool            `json:"beta_enabled"`
	Channels    []ChannelStatus `json:"channels"`
}

// ChannelStatus is one channel's part of FeedStatus.
type ChannelStatus struct {
	Name     string   `json:"name"`
	Enabled  bool     `json:"enabled"`
	Version  string   `json:"version,omitempty"` // the current (newest served) release
	Build    int64    `json:"build,omitempty"`
	Served   int      `json:"served"` // releases in the feed
	Listed   int      `json:"listed"` // releases in the manifest
	Problems []string `json:"problems,omitempty"`
}

// Reload reads the key and the manifests, verifies every release and
// swaps in the result. A manifest that does not parse keeps the channel's
// last good manifest; a release that fails verification is left out. Both
// make the feed degraded, and the returned error says why (the feed is
// still updated).
func (f *Feed) Reload() error {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.seen = f.fingerprint()
	p := f.newPass()
	defer p.close()
	next := &snapshot{channels: map[string][]Release{}, files: p.files, renders: newRenderCache()}
	st := FeedStatus{Status: "OK", LastReload: f.opts.Now().UTC(), BetaEnabled: f.opts.BetaEnabled}
	if p.pub != nil {
		st.PublicKey = EncodePublicKey(p.pub)
	}
	var problems []string
	for _, ch := range Channels {
		cs, served := f.loadChannel(p, ch)
		next.channels[ch] = served
		st.Channels = append(st.Channels, cs)
		for _, prob := range cs.Problems {
			problems = append(problems, ch+": "+prob)
		}
	}
	f.checked = p.checked
	if len(problems) > 0 {
		st.Degraded, st.Status, st.Reason = true, "degraded", strings.Join(problems, "; ")
	}
	next.status = st
	f.snap.Store(next)
	f.logReload(st)
	if st.Degraded {
		return errors.New("updates: degraded: " + st.Reason)
	}
	return nil
}

// pass is one reload's inputs (key, downloads directory, the previous
// verification results) and findings.
type pass struct {
	pub     ed25519.PublicKey
	keyErr  error
	root    *os.Root // nil when downloads/ cannot be opened (rootErr)
	rootErr error
	prev    map[checkKey]checkRes
	checked map[checkKey]checkRes
	files   map[string]servedFile
}

func (f *Feed) newPass() *pass {
	p := &pass{prev: f.checked, checked: map[checkKey]checkRes{}, files: map[string]servedFile{}}
	p.pub, p.keyErr = f.publicKey()
	p.root, p.rootErr = os.OpenRoot(filepath.Join(f.dir, DownloadsDir))
	return p
}

func (p *pass) close() {
	if p.root != nil {
		p.root.Close()
	}
}

// loadChannel reads and verifies one channel. A disabled channel is not
// read: nothing of it is served, so nothing of it can degrade the feed.
func (f *Feed) loadChannel(p *pass, ch string) (ChannelStatus, []Release) {
	cs := ChannelStatus{Name: ch, Enabled: ch == Stable || f.opts.BetaEnabled}
	if !cs.Enabled {
		return cs, nil
	}
	m := f.manifest(ch, &cs)
	if m == nil {
		return cs, nil
	}
	var served []Release
	for i := range m.Releases {
		r := &m.Releases[i]
		if err := p.verify(r); err != nil {
			cs.Problems = append(cs.Problems, fmt.Sprintf("build %d (%s) not served: %v", r.Build, r.Version, err))
			continue
		}
		served = append(served, *r)
	}
	cs.Listed, cs.Served = len(m.Releases), len(served)
	if len(served) > 0 {
		cs.Version, cs.Build = served[0].Version, served[0].Build
	}
	return cs, served
}

// manifest reads a channel's manifest, falling back to the last good one.
func (f *Feed) manifest(ch string, cs *ChannelStatus) *Manifest {
	m, err := ReadManifest(f.dir, ch)
	if err == nil {
		f.lastGood[ch] = m
		return m
	}
	if f.lastGood[ch] != nil {
		cs.Problems = append(cs.Problems, err.Error()+" (serving the last good manifest)")
	} else {
		cs.Problems = append(cs.Problems, err.Error()+" (nothing served)")
	}
	return f.lastGood[ch]
}

// verify checks one release: its artifact's length, SHA-256 and signature,
// and records the file to serve. An externally hosted artifact cannot be
// read here; `nexy release publish` verified its bytes before recording
// it, and Sparkle checks the signature again on every client.
func (p *pass) verify(r *Release) error {
	if p.pub == nil {
		return p.keyErr
	}
	if r.URL != "" {
		return nil
	}
	if p.root == nil {
		return fmt.Errorf("%s/: %v", DownloadsDir, bareErr(p.rootErr))
	}
	file, err := p.root.Open(r.File) // os.Root: a symlink out of downloads/ fails here
	if err != nil {
		return fmt.Errorf("%s/%s: %v", DownloadsDir, r.File, bareErr(err))
	}
	defer file.Close()
	fi, err := file.Stat()
	switch {
	case err != nil:
		return fmt.Errorf("%s/%s: %v", DownloadsDir, r.File, bareErr(err))
	case !fi.Mode().IsRegular():
		return fmt.Errorf("%s/%s: not a regular file", DownloadsDir, r.File)
	case fi.Size() != r.Length:
		return fmt.Errorf("%s/%s: %d bytes, manifest says %d", DownloadsDir, r.File, fi.Size(), r.Length)
	}
	key := checkKey{file: r.File, sha: r.SHA256, sig: r.EdSignature, pub: string(p.pub), size: fi.Size(), modTime: fi.ModTime()}
	res, ok := p.prev[key]
	if !ok {
		res = checkRes{err: verifyFile(file, p.pub, r)}
	}
	p.checked[key] = res
	if res.err == nil {
		p.files[r.File] = servedFile{size: fi.Size(), modTime: fi.ModTime(), sha256: r.SHA256}
	}
	return res.err
}

// verifyFile reads the whole artifact: Ed25519 (PureEdDSA, as Sparkle
// uses it) signs the message itself, not a hash, so it cannot stream. A
// file is mapped, not copied onto the heap. The result is cached by size
// and mtime, so this happens once per file.
func verifyFile(file io.Reader, pub ed25519.PublicKey, r *Release) (err error) {
	verifications.Add(1)
	// A mapped file truncated while it is read faults; that must fail this
	// release, not crash the server.
	defer debug.SetPanicOnFault(debug.SetPanicOnFault(true))
	defer func() {
		if recover() != nil {
			err = fmt.Errorf("%s/%s: the file changed while it was being verified", DownloadsDir, r.File)
		}
	}()
	var data []byte
	if f, ok := file.(*os.File); ok {
		mapped, release, err := mapFile(f, r.Length)
		if err != nil {
			return fmt.Errorf("%s/%s: %v", DownloadsDir, r.File, bareErr(err))
		}
		defer release()
		data = mapped
	} else {
		data = make([]byte, r.Length)
		if _, err := io.ReadFull(file, data); err != nil {
			return fmt.Errorf("%s/%s: %v", DownloadsDir, r.File, bareErr(err))
		}
	}
	if err := Verify(pub, data, r); err != nil {
		return fmt.Errorf("%s/%s: %v", DownloadsDir, r.File, err)
	}
	return nil
}

// publicKey is the configured key, or the key file's (re-read each reload).
func (f *Feed) publicKey() (ed25519.PublicKey, error) {
	if f.opts.PublicKey != nil {
		return f.opts.PublicKey, nil
	}
	if f.opts.PublicKeyFile == "" {
		return nil, errors.New("no public key configured to verify releases with")
	}
	pub, err := ReadPublicKey(f.opts.PublicKeyFile)
	if err != nil {
		return nil, fmt.Errorf("public key %s: %v (run nexy keys generate)", filepath.Base(f.opts.PublicKeyFile), err)
	}
	return pub, nil
}

func (f *Feed) logReload(st FeedStatus) {
	args := []any{"scope", "updates", "decision", "reload"}
	for _, c := range st.Channels {
		args = append(args, c.Name, fmt.Sprintf("%s (%d), %d served", c.Version, c.Build, c.Served))
	}
	if st.Degraded {
		f.opts.Log.Warn("Update feed degraded", append(args, "reason", st.Reason)...)
		return
	}
	f.opts.Log.Info("Update feed loaded", args...)
}

// fingerprint summarises everything a reload reads: the manifests' and
// key's contents (small; content, so a same-second rewrite is noticed) and
// the artifacts' sizes and mtimes.
func (f *Feed) fingerprint() string {
	h := sha256.New()
	for _, ch := range Channels {
		data, err := readSmall(filepath.Join(f.dir, ManifestFile(ch)), maxManifestBytes)
		fmt.Fprintf(h, "%s %v %x\n", ch, err, sha256.Sum256(data))
		for _, r := range f.lastGood[ch].releasesOrNil() {
			if r.File == "" {
				continue
			}
			if fi, err := os.Stat(filepath.Join(f.dir, DownloadsDir, r.File)); err == nil {
				fmt.Fprintf(h, "%s %d %d %v\n", r.File, fi.Size(), fi.ModTime().UnixNano(), fi.Mode())
			} else {
				fmt.Fprintf(h, "%s %v\n", r.File, err)
			}
		}
	}
	if f.opts.PublicKeyFile != "" {
		data, err := readSmall(f.opts.PublicKeyFile, 4096)
		fmt.Fprintf(h, "key %v %x\n", err, sha256.Sum256(data))
	}
	return string(h.Sum(nil))
}

func (m *Manifest) releasesOrNil() []Release {
	if m == nil {
		return nil
	}
	return m.Releases
}

// Watch reloads the feed whenever its manifests, key or artifacts change,
// until ctx ends. It polls (every Options.PollInterval) rather than using
// file notifications: portable, and a poll is a few small reads and stats.
func (f *Feed) Watch(ctx context.Context) {
	t := time.NewTicker(f.opts.PollInterval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		f.mu.Lock()
		changed := f.fingerprint() != f.seen
		f.mu.Unlock()
		if changed {
			_ = f.Reload() // logged, and in Status
		}
	}
}

// Latest is the stable channel's current release, for /health.
func (f *Feed) Latest() (version string, build int64, ok bool) {
	rs := f.snap.Load().channels[Stable]
	if len(rs) == 0 {
		return "", 0, false
	}
	return rs[0].Version, rs[0].Build, true
}

// Status is the feed's FeedStatus (as any, for the server's /status).
func (f *Feed) Status() any { return f.snap.Load().status }

// State is the feed's FeedStatus, typed.
func (f *Feed) State() FeedStatus { return f.snap.Load().status }

// Releases is the channel's served releases, newest first.
func (f *Feed) Releases(channel string) []Release {
	return append([]Release(nil), f.snap.Load().channels[channel]...)
}
