package updates

import (
	"bytes"
	"crypto/ed25519"
	"flag"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

var update = flag.Bool("update", false, "rewrite the golden files in testdata/")

// testKey is a fixed key, so signatures (and the golden appcasts holding
// them) are the same on every run.
func testKey() ed25519.PrivateKey {
	seed := make([]byte, ed25519.SeedSize)
	for i := range seed {
		seed[i] = byte(i + 1)
	}
	return ed25519.NewKeyFromSeed(seed)
}

func testPub() ed25519.PublicKey { return testKey().Public().(ed25519.PublicKey) }

// otherKey signs with a key the feed does not trust.
func otherKey() ed25519.PrivateKey {
	return ed25519.NewKeyFromSeed(bytes.Repeat([]byte{0xee}, ed25519.SeedSize))
}

var day0 = time.Date(2025, 6, 1, 12, 0, 0, 0, time.UTC)

// artifact is deterministic content of n bytes.
func artifact(tag string, n int) []byte {
	return bytes.Repeat([]byte(tag), n/len(tag)+1)[:n]
}

// publish adds a release through Publish, failing the test on error.
func publish(t *testing.T, dir, channel, file, version string, build int64, data []byte, opts ...func(*Release)) Release {
	t.Helper()
	rel := Release{Version: version, Build: build, File: file}
	for _, o := range opts {
		o(&rel)
	}
	r, err := Publish(dir, PublishRequest{Channel: channel, Artifact: data, Release: rel, Key: testKey(),
		PublicKey: testPub(), Now: day0.Add(time.Duration(build) * time.Hour)})
	if err != nil {
		t.Fatalf("publish %s %d: %v", channel, build, err)
	}
	return r
}

// fixture is an updates directory with two stable releases (one hosted
// elsewhere) and one beta release.
func fixture(t *testing.T) string {
	t.Helper()
	dir := t.TempDir()
	publish(t, dir, Stable, "Nexy-1.6.0.dmg", "1.6.0", 160, artifact("one-six ", 3000), func(r *Release) { r.MinimumSystemVersion = "12.0" })
	publish(t, dir, Stable, "", "1.6.1", 161, artifact("one-six-one ", 2000), func(r *Release) {
		r.URL = "https://github.com/example/nexy/releases/download/v1.6.1/Nexy-1.6.1.dmg"
		r.MinimumSystemVersion = "13.0"
	})
	publish(t, dir, Beta, "Nexy-1.7.0b1.dmg", "1.7.0 beta 1", 170, artifact("one-seven ", 5000), func(r *Release) {
		r.MinimumSystemVersion = "13.0"
		r.ReleaseNotesLink = "https://nexy.example.com/notes/1.7.0b1.html"
		r.PhasedRolloutInterval = 43200
	})
	return dir
}

// openFeed opens a feed on dir with the test key and beta on.
func openFeed(t *testing.T, dir string, mod ...func(*Options)) *Feed {
	t.Helper()
	o := Options{PublicKey: testPub(), BetaEnabled: true, PublicURL: "https://updates.example.com",
		Now: func() time.Time { return day0 }}
	for _, m := range mod {
		m(&o)
	}
	f, err := Open(dir, o)
	if err != nil {
		t.Fatal(err)
	}
	return f
}

// get runs one request through the feed (no mux: the handler must defend
// itself against paths a mux would have cleaned).
func get(f http.Handler, method, target string, hdr ...string) *httptest.ResponseRecorder {
	r := httptest.NewRequest(method, "http://updates.example.com/", nil)
	// Parsed as a request line is, without resolving dot segments.
	u, err := url.ParseRequestURI(target)
	if err != nil {
		panic(err)
	}
	r.URL, r.RequestURI = u, target
	for i := 0; i+1 < len(hdr); i += 2 {
		r.Header.Set(hdr[i], hdr[i+1])
	}
	w := httptest.NewRecorder()
	f.ServeHTTP(w, r)
	return w
}

// oneCacheControlHeader fails unless the response has exactly one
// Cache-Control header.
func oneCacheControlHeader(t *testing.T, w *httptest.ResponseRecorder, want string) {
	t.Helper()
	got := w.Result().Header.Values("Cache-Control")
	if len(got) != 1 || (want != "" && got[0] != want) {
		t.Errorf("Cache-Control %q, want exactly one %q", got, want)
	}
}

// golden compares got with testdata/name, or rewrites it with -update.
func golden(t *testing.T, name string, got []byte) {
	t.Helper()
	path := filepath.Join("testdata", name)
	if *update {
		if err := os.WriteFile(path, got, 0o644); err != nil {
			t.Fatal(err)
		}
		return
	}
	want, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("%v (run go test ./updates -run %s -update)", err, t.Name())
	}
	if !bytes.Equal(got, want) {
		t.Errorf("%s differs from the golden file (go test -update rewrites it):\n--- got\n%s\n--- want\n%s", path, got, want)
	}
}

func contains(s string, subs ...string) string {
	for _, sub := range subs {
		if !strings.Contains(s, sub) {
			return sub
		}
	}
	return ""
}
