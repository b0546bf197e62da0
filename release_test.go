package main

import (
	"crypto/ed25519"
	"encoding/base64"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"

	"github.com/nexy-server/nexy/updates"
)

// The release workflow as an operator scripts it, each step a `nexy`
// process: keys, sign, publish, show, the feed serving it, promote, and
// the refusals.
func TestReleaseRoundTrip(t *testing.T) {
	e := newAdminEnv(t)
	out, _ := e.mustNexy(t, "keys", "generate")
	pub, err := updates.ParsePublicKey(out)
	if err != nil || strings.Count(out, "\n") != 1 {
		t.Fatalf("keys generate printed %q: want the SUPublicEDKey alone (%v)", out, err)
	}
	keyFile := filepath.Join(e.data, "update_key")
	if filePub, err := updates.ReadPublicKey(keyFile + ".pub"); err != nil || !filePub.Equal(pub) {
		t.Fatalf("update_key.pub: %v", err)
	}
	if fi, err := os.Stat(keyFile); err != nil || fi.Mode().Perm() != 0o600 {
		t.Fatalf("update_key: %v %v", fi, err)
	}
	expectFail(t, e, 1, "already exists", "keys", "generate")

	artifact := filepath.Join(e.dir, "Nexy-1.7.0.dmg")
	data := []byte(strings.Repeat("nexy 1.7.0 ", 1000))
	noErr(t, os.WriteFile(artifact, data, 0o644))
	out, _ = e.mustNexy(t, "release", "sign", artifact)
	m := regexp.MustCompile(`^sparkle:edSignature="([A-Za-z0-9+/=]+)" length="(\d+)"\n$`).FindStringSubmatch(out)
	if m == nil || m[2] != strconv.Itoa(len(data)) || !verifies(pub, data, m[1]) {
		t.Fatalf("release sign printed %q", out)
	}

	e.mustNexy(t, "release", "publish", artifact, "--version", "1.7.0", "--build", "170", "--channel", "beta",
		"--notes", "https://nexy.example.com/notes/1.7.0.html", "--phased", "86400", "--min-os", "13.0", "--critical")
	expectFail(t, e, 1, "build not greater", "release", "publish", artifact, "--version", "1.7.0", "--build", "170", "--channel", "beta")
	expectFail(t, e, 1, "no such file", "release", "publish", filepath.Join(e.dir, "missing.dmg"), "--version", "1.7.1", "--build", "171", "--channel", "beta")
	expectFail(t, e, 2, "--build and --channel are required", "release", "publish", artifact, "--version", "1.7.1")
	expectFail(t, e, 2, "want stable or beta", "release", "publish", artifact, "--version", "1.7.1", "--build", "171", "--channel", "nightly")

	show := showReport(t, e)
	beta, stable := show.Channels[1], show.Channels[0]
	if stable.Current != nil || beta.Current == nil || beta.Current.Build != 170 || !beta.Served || !beta.Current.Critical ||
		beta.Current.PhasedRolloutInterval != 86400 || beta.Current.MinimumSystemVersion != "13.0" || show.Degraded || show.PublicKey != pubText(pub) {
		t.Fatalf("show after publish: %+v", show)
	}

	feed, srv := serveFeed(t, e)
	appcast := fetchText(t, srv.URL+"/updates/appcast-beta.xml")
	if miss := lacks(appcast, `sparkle:version="170"`, `<sparkle:criticalUpdate>`, `<sparkle:phasedRolloutInterval>86400<`, srv.URL+"/updates/downloads/Nexy-1.7.0.dmg"); miss != "" {
		t.Fatalf("beta appcast lacks %s:\n%s", miss, appcast)
	}
	sig := regexp.MustCompile(`sparkle:edSignature="([^"]+)"`).FindStringSubmatch(appcast)[1]
	if got := fetchText(t, srv.URL+"/updates/downloads/Nexy-1.7.0.dmg"); got != string(data) || !verifies(pub, []byte(got), sig) {
		t.Fatal("the downloaded artifact does not verify with the printed public key")
	}

	out, _ = e.mustNexy(t, "release", "promote", "beta", "stable")
	if !strings.Contains(out, "promoted 1.7.0 (build 170) from beta to stable") {
		t.Errorf("promote printed %q", out)
	}
	expectFail(t, e, 1, "build not greater", "release", "promote", "beta", "stable")
	expectFail(t, e, 2, "needs FROM and TO", "release", "promote", "beta")
	noErr(t, feed.Reload())
	if v, b, ok := feed.Latest(); v != "1.7.0" || b != 170 || !ok {
		t.Errorf("stable after promote: %s %d %v", v, b, ok)
	}
	if appcast := fetchText(t, srv.URL+"/updates/appcast.xml"); !strings.Contains(appcast, `sparkle:version="170"`) {
		t.Errorf("stable appcast after promote:\n%s", appcast)
	}

	// Hosted elsewhere: the file only provides length, hash and signature.
	e.mustNexy(t, "release", "publish", artifact, "--version", "1.7.1", "--build", "171", "--channel", "stable",
		"--url", "https://github.com/example/nexy/releases/download/v1.7.1/Nexy-1.7.1.dmg")
	show = showReport(t, e)
	if cur := show.Channels[0].Current; cur == nil || cur.Build != 171 || cur.File != "" || !strings.HasPrefix(cur.URL, "https://github.com/") || !show.Channels[0].Served {
		t.Errorf("show after --url publish: %+v", show.Channels[0])
	}
	text, _ := e.mustNexy(t, "release", "show")
	if miss := lacks(text, "stable: 1.7.1 (build 171), served", "beta: 1.7.0 (build 170), served", pubText(pub)); miss != "" {
		t.Errorf("show lacks %q:\n%s", miss, text)
	}
}

// A private key other than the one the server trusts is refused before
// anything is written.
func TestReleasePublishWrongKey(t *testing.T) {
	e := newAdminEnv(t)
	e.mustNexy(t, "keys", "generate")
	other := filepath.Join(e.dir, "elsewhere", "other_key")
	e.mustNexy(t, "keys", "generate", "--out", other)
	artifact := filepath.Join(e.dir, "Nexy.dmg")
	noErr(t, os.WriteFile(artifact, []byte("bytes"), 0o644))
	expectFail(t, e, 1, "does not match the server's public key", "release", "publish", artifact, "--version", "1", "--build", "1", "--channel", "stable", "--key", other)
	if _, err := os.Stat(filepath.Join(e.data, "updates", "stable.json")); err == nil {
		t.Error("a manifest was written")
	}
	if _, err := os.Stat(filepath.Join(e.data, "updates", "downloads", "Nexy.dmg")); err == nil {
		t.Error("the artifact was copied")
	}
	// Without any key the server could not verify it either.
	e2 := newAdminEnv(t)
	expectFail(t, e2, 1, "update_key.pub", "release", "publish", artifact, "--version", "1", "--build", "1", "--channel", "stable", "--key", other)
}

func TestReleaseUsage(t *testing.T) {
	e := newAdminEnv(t)
	for _, args := range [][]string{{"keys", "-h"}, {"release", "-h"}, {"release", "publish", "-h"}, {"keys", "generate", "-h"}, {"release", "show", "-h"}} {
		out, errOut, code := e.nexy(t, args...)
		if code != 0 || !strings.Contains(out, "usage") || errOut != "" {
			t.Errorf("%v: exit %d, stdout %q, stderr %q", args, code, out, errOut)
		}
	}
	for _, args := range [][]string{{"keys"}, {"keys", "rotate"}, {"release"}, {"release", "delete"}, {"release", "sign"}, {"release", "show", "extra"}, {"release", "publish", "--nope"}} {
		if _, _, code := e.nexy(t, args...); code != 2 {
			t.Errorf("%v: exit %d, want 2", args, code)
		}
	}
	expectFail(t, e, 1, "update_key", "release", "sign", filepath.Join(e.dir, "nexy.toml"))
}

func expectFail(t *testing.T, e *adminEnv, code int, want string, args ...string) {
	t.Helper()
	out, errOut, got := e.nexy(t, args...)
	if got != code || !strings.Contains(errOut, want) {
		t.Errorf("nexy %v: exit %d, want %d with %q\nstdout: %s\nstderr: %s", args, got, code, want, out, errOut)
	}
}

func showReport(t *testing.T, e *adminEnv) showJSON {
	t.Helper()
	out, _ := e.mustNexy(t, "release", "show", "--json")
	var rep showJSON
	if err := json.Unmarshal([]byte(out), &rep); err != nil || len(rep.Channels) != 2 {
		t.Fatalf("show --json: %v\n%s", err, out)
	}
	return rep
}

// serveFeed serves the env's updates directory as serve would mount it.
func serveFeed(t *testing.T, e *adminEnv) (*updates.Feed, *httptest.Server) {
	t.Helper()
	feed, err := updates.Open(filepath.Join(e.data, "updates"), updates.Options{BetaEnabled: true,
		PublicKeyFile: updates.PublicKeyFile(updates.DefaultKeyFile(e.data))})
	if err != nil {
		t.Fatal(err)
	}
	if st := feed.State(); st.Degraded {
		t.Fatalf("feed degraded: %s", st.Reason)
	}
	mux := http.NewServeMux()
	mux.Handle("/updates/", feed)
	srv := httptest.NewServer(mux)
	t.Cleanup(srv.Close)
	return feed, srv
}

func fetchText(t *testing.T, url string) string {
	t.Helper()
	resp, err := http.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil || resp.StatusCode != 200 {
		t.Fatalf("GET %s: %d %v", url, resp.StatusCode, err)
	}
	return string(b)
}

func verifies(pub ed25519.PublicKey, data []byte, sig string) bool {
	b, err := base64.StdEncoding.DecodeString(sig)
	return err == nil && ed25519.Verify(pub, data, b)
}

func pubText(pub ed25519.PublicKey) string { return updates.EncodePublicKey(pub) }

func lacks(s string, subs ...string) string {
	for _, sub := range subs {
		if !strings.Contains(s, sub) {
			return sub
		}
	}
	return ""
}

func noErr(t *testing.T, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}
