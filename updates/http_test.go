package updates

import (
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
)

func TestAppcastETag(t *testing.T) {
	f := openFeed(t, fixture(t))
	w := get(f, "GET", "/updates/appcast.xml")
	oneCacheControlHeader(t, w, "public, max-age=60")
	etag := w.Header().Get("ETag")
	if !strings.HasPrefix(etag, `"`) || len(etag) < 10 || w.Header().Get("Content-Type") != "application/xml; charset=utf-8" {
		t.Fatalf("ETag %q, Content-Type %q", etag, w.Header().Get("Content-Type"))
	}
	if again := get(f, "GET", "/updates/appcast.xml").Header().Get("ETag"); again != etag {
		t.Errorf("ETag changed between renders: %s, %s", etag, again)
	}
	if beta := get(f, "GET", "/updates/appcast-beta.xml").Header().Get("ETag"); beta == etag {
		t.Error("both channels have the same ETag")
	}
	for _, inm := range []string{etag, `"x", ` + etag, "W/" + etag, "*"} {
		w := get(f, "GET", "/updates/appcast.xml", "If-None-Match", inm)
		if w.Code != http.StatusNotModified || w.Body.Len() != 0 || w.Header().Get("ETag") != etag {
			t.Errorf("If-None-Match %s: %d, %d bytes, ETag %q; want 304", inm, w.Code, w.Body.Len(), w.Header().Get("ETag"))
		}
		oneCacheControlHeader(t, w, "public, max-age=60")
	}
	if w := get(f, "GET", "/updates/appcast.xml", "If-None-Match", `"stale"`); w.Code != 200 {
		t.Errorf("stale ETag: %d, want 200", w.Code)
	}
	head := get(f, "HEAD", "/updates/appcast.xml")
	if head.Code != 200 || head.Body.Len() != 0 || head.Header().Get("Content-Length") != strconv.Itoa(w.Body.Len()) || head.Header().Get("ETag") != etag {
		t.Errorf("HEAD: %d, %d body bytes, Content-Length %q (GET had %d)", head.Code, head.Body.Len(), head.Header().Get("Content-Length"), w.Body.Len())
	}
}

func TestDownload(t *testing.T) {
	dir := fixture(t)
	f := openFeed(t, dir)
	want := artifact("one-six ", 3000)
	w := get(f, "GET", "/updates/downloads/Nexy-1.6.0.dmg")
	if w.Code != 200 || w.Body.String() != string(want) {
		t.Fatalf("GET: %d, %d bytes", w.Code, w.Body.Len())
	}
	oneCacheControlHeader(t, w, "public, max-age=86400")
	h := w.Header()
	etag := `"` + sha256Hex(want) + `"`
	if h.Get("ETag") != etag || h.Get("Content-Type") != "application/octet-stream" || h.Get("Accept-Ranges") != "bytes" || h.Get("Content-Length") != "3000" {
		t.Errorf("headers %v", h)
	}

	w = get(f, "GET", "/updates/downloads/Nexy-1.6.0.dmg", "Range", "bytes=100-199")
	if w.Code != http.StatusPartialContent || w.Header().Get("Content-Range") != "bytes 100-199/3000" || w.Body.String() != string(want[100:200]) {
		t.Errorf("Range: %d %q, %d bytes", w.Code, w.Header().Get("Content-Range"), w.Body.Len())
	}
	oneCacheControlHeader(t, w, "public, max-age=86400")
	w = get(f, "GET", "/updates/downloads/Nexy-1.6.0.dmg", "Range", "bytes=2990-", "If-Range", etag)
	if w.Code != http.StatusPartialContent || w.Body.String() != string(want[2990:]) {
		t.Errorf("If-Range (same ETag): %d, %d bytes", w.Code, w.Body.Len())
	}
	w = get(f, "GET", "/updates/downloads/Nexy-1.6.0.dmg", "Range", "bytes=2990-", "If-Range", `"other"`)
	if w.Code != 200 || w.Body.Len() != 3000 {
		t.Errorf("If-Range (other ETag): %d, %d bytes; want the whole file", w.Code, w.Body.Len())
	}
	w = get(f, "GET", "/updates/downloads/Nexy-1.6.0.dmg", "Range", "bytes=5000-6000")
	if w.Code != http.StatusRequestedRangeNotSatisfiable {
		t.Errorf("unsatisfiable Range: %d", w.Code)
	}
	oneCacheControlHeader(t, w, "no-store") // ServeContent dropped ours; the error must not be cached
	w = get(f, "GET", "/updates/downloads/Nexy-1.6.0.dmg", "If-None-Match", etag)
	if w.Code != http.StatusNotModified || w.Body.Len() != 0 {
		t.Errorf("If-None-Match: %d", w.Code)
	}
	oneCacheControlHeader(t, w, "public, max-age=86400")
	w = get(f, "HEAD", "/updates/downloads/Nexy-1.6.0.dmg")
	if w.Code != 200 || w.Body.Len() != 0 || w.Header().Get("Content-Length") != "3000" || w.Header().Get("ETag") != etag {
		t.Errorf("HEAD: %d, %d bytes, %v", w.Code, w.Body.Len(), w.Header())
	}
}

// Nothing outside the published artifacts is ever served, however the
// path is spelled.
func TestDownloadTraversal(t *testing.T) {
	dir := fixture(t)
	secret := "TOP-SECRET-CONTENT"
	outside := filepath.Join(t.TempDir(), "outside.dmg")
	must(t, os.WriteFile(outside, []byte(secret), 0o644))
	must(t, os.WriteFile(filepath.Join(dir, "secret.dmg"), []byte(secret), 0o644))
	must(t, os.WriteFile(filepath.Join(dir, DownloadsDir, "unlisted.dmg"), []byte(secret), 0o644))
	must(t, os.WriteFile(filepath.Join(dir, DownloadsDir, ".hidden"), []byte(secret), 0o644))
	// A symlink in downloads/ pointing out, listed by a release that is
	// otherwise perfectly signed: os.Root refuses it, so it is not served.
	must(t, os.Symlink(outside, filepath.Join(dir, DownloadsDir, "Evil.dmg")))
	addRelease(t, dir, Beta, "Evil.dmg", 171, []byte(secret))
	f := openFeed(t, dir)
	if !f.State().Degraded || !strings.Contains(f.State().Reason, "Evil.dmg") {
		t.Errorf("a release whose file escapes downloads/ must degrade the feed: %+v", f.State())
	}
	for _, target := range []string{
		"/updates/downloads/Evil.dmg",
		"/updates/downloads/unlisted.dmg",
		"/updates/downloads/.hidden",
		"/updates/downloads/../secret.dmg",
		"/updates/downloads/..%2fsecret.dmg",
		"/updates/downloads/..%2Fsecret.dmg",
		"/updates/downloads/%2e%2e%2fsecret.dmg",
		"/updates/downloads/%2E%2E/secret.dmg",
		"/updates/downloads/%2e%2e",
		"/updates/downloads/..",
		"/updates/downloads/..%5csecret.dmg",
		"/updates/downloads/..%5Csecret.dmg",
		`/updates/downloads/..\secret.dmg`,
		"/updates/downloads/%2ftmp%2fsecret.dmg",
		"/updates/downloads//" + strings.TrimPrefix(outside, "/"),
		"/updates/downloads/" + strings.ReplaceAll(outside, "/", "%2f"),
		"/updates/downloads/Nexy-1.6.0.dmg%00.txt",
		"/updates/downloads/Nexy-1.6.0.dmg%2f",
		"/updates/downloads/Nexy-1.6.0.dmg/",
		"/updates/downloads/",
		"/updates/../secret.dmg",
		"/updates/secret.dmg",
		"/updates/stable.json",
		"/updates/downloads/../stable.json",
	} {
		w := get(f, "GET", target)
		if w.Code != http.StatusNotFound && w.Code != http.StatusBadRequest {
			t.Errorf("%s: %d, want 404 or 400", target, w.Code)
		}
		if strings.Contains(w.Body.String(), secret) || strings.Contains(w.Body.String(), `"releases"`) {
			t.Errorf("%s: served a file: %q", target, w.Body)
		}
		oneCacheControlHeader(t, w, "no-store")
	}
}

// addRelease writes a release straight into a manifest, as a hand edit
// would: signed with the test key, its file already in place.
func addRelease(t *testing.T, dir, channel, file string, build int64, data []byte) {
	t.Helper()
	m, err := ReadManifest(dir, channel)
	must(t, err)
	s := Sign(testKey(), data)
	r := Release{Version: "x", Build: build, File: file, Length: s.Length, SHA256: s.SHA256, EdSignature: s.EdSignature, PubDate: day0}
	m.Releases = append([]Release{r}, m.Releases...)
	must(t, WriteManifest(dir, m))
}

func must(t *testing.T, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}

func TestMethodsAndUnknownPaths(t *testing.T) {
	f := openFeed(t, fixture(t))
	for _, path := range []string{"/updates/appcast.xml", "/updates/appcast-beta.xml", "/updates/health", "/updates/downloads/Nexy-1.6.0.dmg"} {
		for _, m := range []string{"POST", "PUT", "DELETE", "OPTIONS", "PATCH"} {
			w := get(f, m, path)
			if w.Code != http.StatusMethodNotAllowed || w.Header().Get("Allow") != "GET, HEAD" {
				t.Errorf("%s %s: %d, Allow %q", m, path, w.Code, w.Header().Get("Allow"))
			}
			oneCacheControlHeader(t, w, "no-store")
		}
	}
	for _, path := range []string{"/updates/", "/updates/appcast", "/updates/api/versions", "/updates/appcast.xml/x", "/other", "/updates/%61ppcast.xml.bak"} {
		w := get(f, "GET", path)
		if w.Code != http.StatusNotFound {
			t.Errorf("GET %s: %d, want 404", path, w.Code)
		}
		oneCacheControlHeader(t, w, "no-store")
	}
}

func TestBetaSwitch(t *testing.T) {
	dir := fixture(t)
	off := openFeed(t, dir, func(o *Options) { o.BetaEnabled = false })
	w := get(off, "GET", "/updates/appcast-beta.xml")
	if w.Code != http.StatusNotFound || !strings.Contains(w.Body.String(), "Beta channel is disabled") {
		t.Errorf("beta off: %d %q", w.Code, w.Body)
	}
	oneCacheControlHeader(t, w, "no-store")
	if w := get(off, "GET", "/updates/downloads/Nexy-1.7.0b1.dmg"); w.Code != http.StatusNotFound {
		t.Errorf("beta off: the beta artifact answers %d, want 404", w.Code)
	}
	if w := get(off, "GET", "/updates/appcast.xml"); w.Code != 200 {
		t.Errorf("beta off: stable answers %d", w.Code)
	}
	if st := off.State(); st.BetaEnabled || st.Channels[1].Enabled || st.Degraded {
		t.Errorf("status %+v", st)
	}
	on := openFeed(t, dir)
	if w := get(on, "GET", "/updates/appcast-beta.xml"); w.Code != 200 || !strings.Contains(w.Body.String(), "1.7.0 beta 1") {
		t.Errorf("beta on: %d", w.Code)
	}
	if w := get(on, "GET", "/updates/downloads/Nexy-1.7.0b1.dmg"); w.Code != 200 {
		t.Errorf("beta on: artifact %d", w.Code)
	}
}

func TestHealth(t *testing.T) {
	f := openFeed(t, fixture(t))
	w := get(f, "GET", "/updates/health")
	oneCacheControlHeader(t, w, "public, max-age=30")
	var h map[string]any
	if err := json.Unmarshal(w.Body.Bytes(), &h); err != nil || w.Code != 200 {
		t.Fatalf("%d %v %s", w.Code, err, w.Body)
	}
	if h["status"] != "OK" || h["latest_version"] != "1.6.1" || h["latest_build"] != float64(161) || h["beta_updates_enabled"] != true {
		t.Errorf("health %v", h)
	}
	if strings.Contains(w.Body.String(), f.dir) {
		t.Errorf("health shows a file system path: %s", w.Body)
	}
	if head := get(f, "HEAD", "/updates/health"); head.Code != 200 || head.Body.Len() != 0 || head.Header().Get("Content-Length") != strconv.Itoa(w.Body.Len()) {
		t.Errorf("HEAD: %d %d %q", head.Code, head.Body.Len(), head.Header().Get("Content-Length"))
	}
	if v, b, ok := f.Latest(); v != "1.6.1" || b != 161 || !ok {
		t.Errorf("Latest %q %d %v", v, b, ok)
	}
}

// The same attempts through a real server and ServeMux, as a client sends
// them on the wire: the mux's cleaning redirects, the handler refuses.
func TestDownloadTraversalOverHTTP(t *testing.T) {
	dir := fixture(t)
	must(t, os.WriteFile(filepath.Join(dir, "secret.dmg"), []byte("TOP-SECRET"), 0o644))
	mux := http.NewServeMux()
	mux.Handle("/updates/", openFeed(t, dir))
	srv := httptest.NewServer(mux)
	defer srv.Close()
	for _, target := range []string{"/updates/downloads/../secret.dmg", "/updates/downloads/..%2fsecret.dmg", "/updates/downloads/%2e%2e%2fsecret.dmg",
		"/updates/downloads/..%5csecret.dmg", "/updates/downloads/%2e%2e/%2e%2e/stable.json", "/updates/downloads/..;/secret.dmg"} {
		conn, err := net.Dial("tcp", srv.Listener.Addr().String())
		must(t, err)
		fmt.Fprintf(conn, "GET %s HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n", target)
		raw, _ := io.ReadAll(conn)
		conn.Close()
		status, _, _ := strings.Cut(string(raw), "\r\n")
		if strings.Contains(status, " 200 ") || strings.Contains(string(raw), "TOP-SECRET") || strings.Contains(string(raw), `"releases"`) {
			t.Errorf("%s: %s", target, raw)
		}
	}
}
