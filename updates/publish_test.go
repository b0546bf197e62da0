package updates

import (
	"crypto/ed25519"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

func TestPublishRefusals(t *testing.T) {
	dir := fixture(t)
	before := snapshotDir(t, dir)
	req := func(build int64, file string, data []byte) PublishRequest {
		return PublishRequest{Channel: Stable, Artifact: data, Release: Release{Version: "9", Build: build, File: file},
			Key: testKey(), PublicKey: testPub(), Now: day0}
	}
	for _, c := range []struct {
		name string
		req  PublishRequest
		want string
	}{
		{"equal build", req(161, "New.dmg", []byte("new")), "build 161, stable is at build 161"},
		{"lower build", req(100, "New.dmg", []byte("new")), "build not greater"},
		{"other content under a published name", req(200, "Nexy-1.6.0.dmg", []byte("different")), "already exists with other content"},
		{"wrong key", func() PublishRequest { r := req(200, "New.dmg", []byte("new")); r.Key = otherKey(); return r }(), "does not match the server's public key"},
		{"no server key", func() PublishRequest { r := req(200, "New.dmg", []byte("new")); r.PublicKey = nil; return r }(), "no public key"},
		{"bad name", req(200, "../New.dmg", []byte("new")), "want a plain name"},
		{"channel", func() PublishRequest { r := req(200, "New.dmg", []byte("new")); r.Channel = "nightly"; return r }(), "channel"},
		{"empty artifact", req(200, "New.dmg", nil), "length 0"},
	} {
		_, err := Publish(dir, c.req)
		if err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%s: %v, want %q", c.name, err, c.want)
		}
		if after := snapshotDir(t, dir); after != before {
			t.Errorf("%s: the directory changed:\n%s\n---\n%s", c.name, before, after)
		}
	}
	if _, err := Publish(dir, req(161, "x.dmg", []byte("x"))); !errors.Is(err, ErrStaleBuild) {
		t.Errorf("stale build error %v is not ErrStaleBuild", err)
	}
	// A corrupt manifest is not overwritten: its history would be lost.
	must(t, os.WriteFile(filepath.Join(dir, "stable.json"), []byte("{"), 0o644))
	if _, err := Publish(dir, req(300, "New.dmg", []byte("new"))); err == nil || !strings.Contains(err.Error(), "fix or remove it") {
		t.Errorf("corrupt manifest: %v", err)
	}
}

// snapshotDir lists every file with its content, for "nothing changed".
func snapshotDir(t *testing.T, dir string) string {
	t.Helper()
	var b strings.Builder
	must(t, filepath.Walk(dir, func(p string, fi os.FileInfo, err error) error {
		if err != nil || fi.IsDir() {
			return err
		}
		data, err := os.ReadFile(p)
		b.WriteString(p + " " + sha256Hex(data) + "\n")
		return err
	}))
	return b.String()
}

func TestPublishSameFileTwice(t *testing.T) {
	dir := t.TempDir()
	data := artifact("same ", 500)
	publish(t, dir, Beta, "Nexy.dmg", "1.0", 10, data)
	publish(t, dir, Stable, "Nexy.dmg", "1.0", 10, data) // same bytes: reused
	f := openFeed(t, dir)
	if st := f.State(); st.Degraded || st.Channels[0].Build != 10 || st.Channels[1].Build != 10 {
		t.Errorf("%+v", st)
	}
}

func TestPromote(t *testing.T) {
	dir := fixture(t)
	later := day0.AddDate(0, 1, 0)
	r, err := Promote(dir, Beta, Stable, testPub(), later)
	must(t, err)
	beta, _ := ReadManifest(dir, Beta)
	stable, _ := ReadManifest(dir, Stable)
	cur := stable.Current()
	if r.Build != 170 || cur.Build != 170 || cur.File != beta.Current().File || cur.EdSignature != beta.Current().EdSignature ||
		!cur.PubDate.Equal(later) || len(stable.Releases) != 3 || cur.PhasedRolloutInterval != 43200 {
		t.Errorf("promoted %+v; stable now %+v", r, stable)
	}
	if !beta.Current().PubDate.Before(later) {
		t.Error("promotion re-dated the beta release")
	}
	if _, err := Promote(dir, Beta, Stable, testPub(), later); !errors.Is(err, ErrStaleBuild) {
		t.Errorf("second promotion: %v", err)
	}
	for _, c := range [][2]string{{Beta, Beta}, {"nightly", Stable}} {
		if _, err := Promote(dir, c[0], c[1], testPub(), later); err == nil {
			t.Errorf("promote %s → %s accepted", c[0], c[1])
		}
	}
	if _, err := Promote(t.TempDir(), Beta, Stable, testPub(), later); err == nil || !strings.Contains(err.Error(), "no release") {
		t.Errorf("empty beta: %v", err)
	}
	f := openFeed(t, dir)
	if v, b, _ := f.Latest(); b != 170 || v != "1.7.0 beta 1" {
		t.Errorf("Latest after promotion: %s %d", v, b)
	}
}

// Promotion verifies the artifact again: a tampered beta is not promoted.
func TestPromoteVerifies(t *testing.T) {
	dir := fixture(t)
	p := filepath.Join(dir, DownloadsDir, "Nexy-1.7.0b1.dmg")
	data, _ := os.ReadFile(p)
	data[0] ^= 1
	must(t, os.WriteFile(p, data, 0o644))
	if _, err := Promote(dir, Beta, Stable, testPub(), time.Now()); err == nil || !strings.Contains(err.Error(), "sha256") {
		t.Errorf("tampered promotion: %v", err)
	}
	if _, err := Promote(fixture(t), Beta, Stable, otherKey().Public().(ed25519.PublicKey), time.Now()); err == nil || !strings.Contains(err.Error(), "does not verify") {
		t.Errorf("promotion under another key: %v", err)
	}
}
