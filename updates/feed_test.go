package updates

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// A manifest that stops parsing keeps the last good one serving, and
// Status says degraded and why; fixing it recovers.
func TestReloadKeepsLastGood(t *testing.T) {
	dir := fixture(t)
	f := openFeed(t, dir)
	if st := f.State(); st.Degraded || st.Status != "OK" {
		t.Fatalf("fixture degraded: %+v", st)
	}
	good := get(f, "GET", "/updates/appcast.xml").Body.String()
	path := filepath.Join(dir, ManifestFile(Stable))
	saved, err := os.ReadFile(path)
	must(t, err)

	for _, bad := range []string{`{"channel":"stable","releases":[{"version":`, `{"channel":"stable","releases":[],"extra":1}`, `{"channel":"beta","releases":[]}`} {
		must(t, os.WriteFile(path, []byte(bad), 0o644))
		if err := f.Reload(); err == nil {
			t.Errorf("%s: Reload reported no problem", bad)
		}
		st := f.State()
		if !st.Degraded || st.Status != "degraded" || !strings.Contains(st.Reason, "stable.json") || !strings.Contains(st.Reason, "last good") {
			t.Errorf("%s: status %+v", bad, st)
		}
		if got := get(f, "GET", "/updates/appcast.xml").Body.String(); got != good {
			t.Errorf("%s: the appcast changed:\n%s", bad, got)
		}
		if v, b, _ := f.Latest(); v != "1.6.1" || b != 161 {
			t.Errorf("%s: Latest %s %d", bad, v, b)
		}
		if h := get(f, "GET", "/updates/health").Body.String(); !strings.Contains(h, `"status":"degraded"`) || strings.Contains(h, dir) {
			t.Errorf("%s: health %s", bad, h)
		}
	}

	must(t, os.WriteFile(path, saved, 0o644))
	publish(t, dir, Stable, "Nexy-1.6.2.dmg", "1.6.2", 162, artifact("one-six-two ", 1000))
	if err := f.Reload(); err != nil {
		t.Fatal(err)
	}
	if st := f.State(); st.Degraded || st.Reason != "" {
		t.Errorf("fixed, still degraded: %+v", st)
	}
	if v, b, _ := f.Latest(); v != "1.6.2" || b != 162 {
		t.Errorf("after the fix: Latest %s %d", v, b)
	}
}

// A release whose artifact does not match its record is left out of the
// feed (older releases stay), and the feed is degraded.
func TestReleaseFailingVerification(t *testing.T) {
	for _, c := range []struct {
		name   string
		break_ func(t *testing.T, dir string)
		reason string
	}{
		{"tampered", func(t *testing.T, dir string) {
			p := filepath.Join(dir, DownloadsDir, "Nexy-1.7.0.dmg")
			b, _ := os.ReadFile(p)
			b[10] ^= 1
			must(t, os.WriteFile(p, b, 0o644))
		}, "sha256 differs"},
		{"truncated", func(t *testing.T, dir string) {
			must(t, os.Truncate(filepath.Join(dir, DownloadsDir, "Nexy-1.7.0.dmg"), 10))
		}, "10 bytes, manifest says 4000"},
		{"missing", func(t *testing.T, dir string) {
			must(t, os.Remove(filepath.Join(dir, DownloadsDir, "Nexy-1.7.0.dmg")))
		}, "no such file"},
		{"directory", func(t *testing.T, dir string) {
			p := filepath.Join(dir, DownloadsDir, "Nexy-1.7.0.dmg")
			must(t, os.Remove(p))
			must(t, os.Mkdir(p, 0o755))
		}, "not a regular file"},
		{"other key", func(t *testing.T, dir string) {
			m, _ := ReadManifest(dir, Stable)
			data, _ := os.ReadFile(filepath.Join(dir, DownloadsDir, "Nexy-1.7.0.dmg"))
			m.Releases[0].EdSignature = Sign(otherKey(), data).EdSignature
			must(t, WriteManifest(dir, m))
		}, "does not verify"},
	} {
		t.Run(c.name, func(t *testing.T) {
			dir := fixture(t)
			publish(t, dir, Stable, "Nexy-1.7.0.dmg", "1.7.0", 170, artifact("seven ", 4000))
			c.break_(t, dir)
			f := openFeed(t, dir)
			st := f.State()
			if !st.Degraded || !strings.Contains(st.Reason, "build 170") || !strings.Contains(st.Reason, c.reason) {
				t.Errorf("status %+v, want degraded with %q", st, c.reason)
			}
			if strings.Contains(st.Reason, dir) {
				t.Errorf("the reason shows a path: %s", st.Reason)
			}
			if v, b, _ := f.Latest(); b != 161 {
				t.Errorf("Latest %s %d, want the previous release 161", v, b)
			}
			if w := get(f, "GET", "/updates/downloads/Nexy-1.7.0.dmg"); w.Code != 404 {
				t.Errorf("the failing artifact answers %d", w.Code)
			}
			if body := get(f, "GET", "/updates/appcast.xml").Body.String(); strings.Contains(body, "Nexy-1.7.0.dmg") || strings.Contains(body, ">170<") {
				t.Errorf("the failing release is in the appcast:\n%s", body)
			}
		})
	}
}

// The server holds only the public key; without it nothing is served
// (and the feed says so), and a key appearing later is picked up.
func TestPublicKeyFile(t *testing.T) {
	dir := fixture(t)
	keyFile := filepath.Join(t.TempDir(), "update_key.pub")
	f := openFeed(t, dir, func(o *Options) { o.PublicKey, o.PublicKeyFile = nil, keyFile })
	st := f.State()
	if !st.Degraded || !strings.Contains(st.Reason, "update_key.pub") || strings.Contains(st.Reason, keyFile) {
		t.Errorf("no key: %+v", st)
	}
	if _, _, ok := f.Latest(); ok {
		t.Error("no key, yet a release is served")
	}
	must(t, os.WriteFile(keyFile, []byte(EncodePublicKey(testPub())+"\n"), 0o644))
	must(t, f.Reload())
	if st := f.State(); st.Degraded || st.PublicKey != EncodePublicKey(testPub()) {
		t.Errorf("with the key: %+v", st)
	}
	if _, err := Open(dir, Options{PublicKey: testPub()[:10]}); err == nil {
		t.Error("Open took a 10-byte public key")
	}
	if _, err := Open(dir, Options{PublicURL: "ftp://x"}); err == nil {
		t.Error("Open took an ftp public URL")
	}
}

// An empty or missing updates directory is an empty, healthy feed.
func TestEmptyFeed(t *testing.T) {
	f := openFeed(t, filepath.Join(t.TempDir(), "nothing-here"))
	if st := f.State(); st.Degraded {
		t.Errorf("empty feed degraded: %+v", st)
	}
	w := get(f, "GET", "/updates/appcast.xml")
	p, err := parseAppcast(w.Body.Bytes())
	if w.Code != 200 || err != nil || len(p.Channel.Items) != 0 || p.Channel.Title != "Nexy Updates" {
		t.Errorf("%d %v %+v", w.Code, err, p)
	}
	if _, _, ok := f.Latest(); ok {
		t.Error("Latest ok on an empty feed")
	}
}

// Polling re-hashes nothing that did not change.
func TestReloadCachesVerification(t *testing.T) {
	dir := fixture(t)
	f := openFeed(t, dir)
	before := verifications.Load()
	must(t, f.Reload())
	must(t, f.Reload())
	if n := verifications.Load() - before; n != 0 {
		t.Errorf("%d files re-read on unchanged reloads", n)
	}
	publish(t, dir, Beta, "Nexy-1.7.1.dmg", "1.7.1", 171, artifact("x", 100))
	must(t, f.Reload())
	if n := verifications.Load() - before; n != 1 {
		t.Errorf("%d files read after one new release, want 1", n)
	}
}

// Watch notices a published release and a broken manifest by itself.
func TestWatch(t *testing.T) {
	dir := fixture(t)
	f := openFeed(t, dir, func(o *Options) { o.PollInterval = 10 * time.Millisecond })
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { f.Watch(ctx); close(done) }()
	defer func() { cancel(); <-done }()

	publish(t, dir, Stable, "Nexy-1.6.5.dmg", "1.6.5", 165, artifact("five ", 700))
	waitFor(t, "the new release", func() bool { _, b, _ := f.Latest(); return b == 165 })
	must(t, os.WriteFile(filepath.Join(dir, ManifestFile(Stable)), []byte("{"), 0o644))
	waitFor(t, "degraded", func() bool { return f.State().Degraded })
	if _, b, _ := f.Latest(); b != 165 {
		t.Errorf("a broken manifest changed Latest to %d", b)
	}
	// The served artifact disappears: noticed without a manifest change.
	must(t, os.Remove(filepath.Join(dir, DownloadsDir, "Nexy-1.6.5.dmg")))
	waitFor(t, "the missing artifact", func() bool { return strings.Contains(f.State().Reason, "Nexy-1.6.5.dmg") })
}

func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// A file replaced after verification is not served until a reload has
// verified it again.
func TestDownloadChangedAfterVerification(t *testing.T) {
	dir := fixture(t)
	f := openFeed(t, dir)
	p := filepath.Join(dir, DownloadsDir, "Nexy-1.6.0.dmg")
	must(t, os.WriteFile(p, []byte("replaced"), 0o644))
	if w := get(f, "GET", "/updates/downloads/Nexy-1.6.0.dmg"); w.Code != 404 {
		t.Errorf("changed file: %d, want 404", w.Code)
	}
}
