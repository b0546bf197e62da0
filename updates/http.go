package updates

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"io"
	"mime"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"time"
)

// Cache lifetimes, one Cache-Control per response. Appcasts change when a
// release is published, so caches re-check after a minute. An artifact's
// bytes never change under its name (publish refuses to replace a file
// with different content, and the feed serves only verified bytes), so a
// day is safe and spares the server re-sending large files.
const (
	cacheAppcast  = "public, max-age=60"
	cacheHealth   = "public, max-age=30"
	cacheDownload = "public, max-age=86400"
	cacheError    = "no-store"
)

// ServeHTTP answers the feed's paths under /updates/: appcast.xml,
// appcast-beta.xml, health and downloads/FILE (GET and HEAD); anything
// else is 404, another method 405.
func (f *Feed) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	w = &oneCacheControl{ResponseWriter: w}
	// The escaped path, so an encoded slash or dot stays visible as such.
	rest, ok := strings.CutPrefix(r.URL.EscapedPath(), "/updates/")
	var serve func(http.ResponseWriter, *http.Request)
	switch {
	case !ok:
	case rest == "appcast.xml":
		serve = func(w http.ResponseWriter, r *http.Request) { f.serveAppcast(w, r, Stable) }
	case rest == "appcast-beta.xml":
		serve = func(w http.ResponseWriter, r *http.Request) { f.serveAppcast(w, r, Beta) }
	case rest == "health":
		serve = f.serveHealth
	case strings.HasPrefix(rest, DownloadsDir+"/"):
		serve = func(w http.ResponseWriter, r *http.Request) {
			f.serveDownload(w, r, strings.TrimPrefix(rest, DownloadsDir+"/"))
		}
	}
	if serve == nil {
		plainError(w, "not found", http.StatusNotFound)
		return
	}
	if r.Method != http.MethodGet && r.Method != http.MethodHead {
		w.Header().Set("Allow", "GET, HEAD")
		plainError(w, "method not allowed", http.StatusMethodNotAllowed)
		return
	}
	serve(w, r)
}

func plainError(w http.ResponseWriter, msg string, code int) {
	w.Header().Set("Cache-Control", cacheError)
	http.Error(w, msg, code)
}

func (f *Feed) serveAppcast(w http.ResponseWriter, r *http.Request, channel string) {
	if channel == Beta && !f.opts.BetaEnabled {
		plainError(w, "Beta channel is disabled", http.StatusNotFound) // upstream's text
		return
	}
	snap := f.snap.Load()
	page, err := snap.renders.get(channel, f.base(r), snap.channels[channel])
	if err != nil {
		f.opts.Log.Error("Appcast not rendered", "scope", "updates", "decision", "error", "channel", channel, "err", err)
		plainError(w, "Error generating AppCast XML", http.StatusInternalServerError)
		return
	}
	h := w.Header()
	h.Set("Content-Type", "application/xml; charset=utf-8")
	h.Set("Cache-Control", cacheAppcast)
	h.Set("ETag", page.etag)
	// ServeContent answers If-None-Match (lists, *, weak tags) with 304,
	// HEAD without a body, and sets Content-Length.
	http.ServeContent(w, r, "", time.Time{}, bytes.NewReader(page.body))
}

// base is the absolute URL the appcast's links start with. Only r.TLS
// decides https: a forwarded-proto header is the client's word.
func (f *Feed) base(r *http.Request) string {
	if f.opts.PublicURL != "" {
		return f.opts.PublicURL
	}
	scheme, host := "http", r.Host
	if r.TLS != nil {
		scheme = "https"
	}
	if host == "" {
		host = "localhost"
	}
	return scheme + "://" + host
}

// serveDownload serves a verified artifact. seg is the escaped path
// segment after downloads/: it must decode to a valid file name that a
// served release lists, or nothing is opened at all.
func (f *Feed) serveDownload(w http.ResponseWriter, r *http.Request, seg string) {
	name, err := url.PathUnescape(seg)
	if err != nil || strings.Contains(seg, "/") || !ValidFileName(name) {
		plainError(w, "bad file name", http.StatusBadRequest)
		return
	}
	want, ok := f.snap.Load().files[name]
	if !ok {
		plainError(w, "File not found", http.StatusNotFound)
		return
	}
	file, ok := f.openVerified(name, want)
	if !ok {
		plainError(w, "File not found", http.StatusNotFound)
		return
	}
	defer file.Close()
	h := w.Header()
	h.Set("Content-Type", "application/octet-stream")
	h.Set("Content-Disposition", mime.FormatMediaType("attachment", map[string]string{"filename": name}))
	h.Set("Cache-Control", cacheDownload)
	h.Set("ETag", `"`+want.sha256+`"`)
	// Range, If-Range, If-None-Match, If-Modified-Since and HEAD.
	http.ServeContent(w, r, name, want.modTime, file)
}

// openVerified opens an artifact inside the downloads directory (os.Root:
// no symlink or path leads out of it) and checks it is still the file
// that was verified; a file changed since is not served until the next
// reload verifies it again.
func (f *Feed) openVerified(name string, want servedFile) (*os.File, bool) {
	root, err := os.OpenRoot(filepath.Join(f.dir, DownloadsDir))
	if err != nil {
		return nil, false
	}
	defer root.Close()
	file, err := root.Open(name)
	if err != nil {
		return nil, false
	}
	fi, err := file.Stat()
	if err != nil || !fi.Mode().IsRegular() || fi.Size() != want.size || !fi.ModTime().Equal(want.modTime) {
		file.Close()
		f.opts.Log.Warn("Artifact changed since it was verified; not served", "scope", "updates", "decision", "refuse", "file", name)
		return nil, false
	}
	return file, true
}

// healthJSON is /updates/health: no file system paths, only what a
// monitor needs.
type healthJSON struct {
	Status        string    `json:"status"`
	LatestVersion string    `json:"latest_version,omitempty"`
	LatestBuild   int64     `json:"latest_build,omitempty"`
	BetaEnabled   bool      `json:"beta_updates_enabled"`
	Reason        string    `json:"reason,omitempty"`
	LastReload    time.Time `json:"last_reload"`
}

func (f *Feed) serveHealth(w http.ResponseWriter, r *http.Request) {
	st := f.State()
	out := healthJSON{Status: st.Status, BetaEnabled: st.BetaEnabled, Reason: st.Reason, LastReload: st.LastReload}
	out.LatestVersion, out.LatestBuild, _ = f.Latest()
	body, err := json.Marshal(out)
	if err != nil {
		plainError(w, err.Error(), http.StatusInternalServerError)
		return
	}
	h := w.Header()
	h.Set("Content-Type", "application/json; charset=utf-8")
	h.Set("Cache-Control", cacheHealth)
	h.Set("Content-Length", strconv.Itoa(len(body)+1))
	w.WriteHeader(http.StatusOK)
	if r.Method != http.MethodHead {
		w.Write(append(body, '\n'))
	}
}

// page is a rendered appcast with its strong ETag.
type page struct {
	body []byte
	etag string
}

// renderCache keeps a snapshot's rendered appcasts by channel and base
// URL. Without updates.public_url the base comes from the Host header,
// which any client chooses, so the cache is bounded: past maxRenders
// pages are rendered per request (cheap) instead of remembered.
type renderCache struct {
	mu    sync.Mutex
	pages map[string]*page
}

const maxRenders = 16

func newRenderCache() *renderCache { return &renderCache{pages: map[string]*page{}} }

func (c *renderCache) get(channel, base string, releases []Release) (*page, error) {
	key := channel + "\x00" + base
	c.mu.Lock()
	p := c.pages[key]
	c.mu.Unlock()
	if p != nil {
		return p, nil
	}
	body, err := renderAppcast(channel, base, releases)
	if err != nil {
		return nil, err
	}
	sum := sha256.Sum256(body)
	p = &page{body: body, etag: `"` + hex.EncodeToString(sum[:16]) + `"`}
	c.mu.Lock()
	if len(c.pages) < maxRenders {
		c.pages[key] = p
	}
	c.mu.Unlock()
	return p, nil
}

// oneCacheControl guarantees exactly one Cache-Control on every response:
// http.ServeContent drops the handler's header on its own errors (416,
// 412), and an error must not be cached as if it were the content.
type oneCacheControl struct {
	http.ResponseWriter
	wrote bool
}

func (w *oneCacheControl) WriteHeader(code int) {
	if !w.wrote {
		w.wrote = true
		if w.Header().Get("Cache-Control") == "" {
			w.Header().Set("Cache-Control", cacheError)
		}
	}
	w.ResponseWriter.WriteHeader(code)
}

func (w *oneCacheControl) Write(b []byte) (int, error) {
	if !w.wrote {
		w.WriteHeader(http.StatusOK)
	}
	return w.ResponseWriter.Write(b)
}

// ReadFrom keeps the server's sendfile path for downloads.
func (w *oneCacheControl) ReadFrom(src io.Reader) (int64, error) {
	if !w.wrote {
		w.WriteHeader(http.StatusOK)
	}
	if rf, ok := w.ResponseWriter.(io.ReaderFrom); ok {
		return rf.ReadFrom(src)
	}
	return io.Copy(w.ResponseWriter, src)
}

// Unwrap lets http.ResponseController reach the real writer.
func (w *oneCacheControl) Unwrap() http.ResponseWriter { return w.ResponseWriter }
