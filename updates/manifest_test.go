package updates

import (
	"encoding/json"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"
)

const goodRelease = `{"version":"1.7.0","build":170,"file":"Nexy-1.7.0.dmg","length":5,
 "sha256":"0000000000000000000000000000000000000000000000000000000000000000",
 "ed_signature":"AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA==",
 "pub_date":"2025-06-01T12:00:00Z"}`

func TestParseManifest(t *testing.T) {
	m, err := ParseManifest([]byte(`{"channel":"stable","releases":[` + goodRelease + `]}`))
	if err != nil || m.Current().Build != 170 {
		t.Fatalf("%v %+v", err, m)
	}
	for _, c := range []struct{ name, json, want string }{
		{"not json", `nope`, "not a manifest"},
		{"trailing", `{"channel":"stable","releases":[]} {}`, "after the JSON"},
		{"unknown field", `{"channel":"stable","releases":[],"critical":true}`, "unknown field"},
		{"unknown release field", `{"channel":"stable","releases":[` + strings.Replace(goodRelease, `"build"`, `"critcal":true,"build"`, 1) + `]}`, "unknown field"},
		{"channel", `{"channel":"nightly","releases":[]}`, "channel"},
		{"build as string", `{"channel":"stable","releases":[` + strings.Replace(goodRelease, `170`, `"170"`, 1) + `]}`, "not a manifest"},
		{"order", `{"channel":"stable","releases":[` + goodRelease + `,` + goodRelease + `]}`, "strictly increasing"},
	} {
		if _, err := ParseManifest([]byte(c.json)); err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%s: error %v, want %q", c.name, err, c.want)
		}
	}
}

func TestReleaseValidate(t *testing.T) {
	var base Release
	must(t, json.Unmarshal([]byte(goodRelease), &base))
	must(t, base.Validate())
	for _, c := range []struct {
		name string
		mod  func(*Release)
	}{
		{"empty version", func(r *Release) { r.Version = "" }},
		{"control in version", func(r *Release) { r.Version = "1.0\n" }},
		{"zero build", func(r *Release) { r.Build = 0 }},
		{"no file or url", func(r *Release) { r.File = "" }},
		{"file and url", func(r *Release) { r.URL = "https://example.com/a.dmg" }},
		{"path in file", func(r *Release) { r.File = "../a.dmg" }},
		{"slash in file", func(r *Release) { r.File = "a/b.dmg" }},
		{"backslash in file", func(r *Release) { r.File = `a\b.dmg` }},
		{"hidden file", func(r *Release) { r.File = ".a.dmg" }},
		{"dotdot file", func(r *Release) { r.File = ".." }},
		{"nul in file", func(r *Release) { r.File = "a\x00.dmg" }},
		{"http url", func(r *Release) { r.File, r.URL = "", "http://example.com/a.dmg" }},
		{"appcast url", func(r *Release) { r.File, r.URL = "", "https://example.com/updates/appcast.xml" }},
		{"relative url", func(r *Release) { r.File, r.URL = "", "/a.dmg" }},
		{"zero length", func(r *Release) { r.Length = 0 }},
		{"short sha", func(r *Release) { r.SHA256 = "00" }},
		{"upper sha", func(r *Release) { r.SHA256 = strings.Repeat("AB", 32) }},
		{"bad signature", func(r *Release) { r.EdSignature = "AAAA" }},
		{"no date", func(r *Release) { r.PubDate = time.Time{} }},
		{"negative phased", func(r *Release) { r.PhasedRolloutInterval = -1 }},
		{"javascript notes", func(r *Release) { r.ReleaseNotesLink = "javascript:alert(1)" }},
		{"bad os", func(r *Release) { r.MinimumSystemVersion = "13.x" }},
	} {
		r := base
		c.mod(&r)
		if err := r.Validate(); err == nil {
			t.Errorf("%s: %+v accepted", c.name, r)
		}
	}
	ok := base
	ok.File, ok.URL = "", "http://127.0.0.1:8080/a.dmg" // a local test server
	must(t, ok.Validate())
}

func TestReadManifest(t *testing.T) {
	dir := t.TempDir()
	m, err := ReadManifest(dir, Beta)
	if err != nil || m.Channel != Beta || m.Releases == nil || len(m.Releases) != 0 {
		t.Fatalf("missing manifest: %+v %v", m, err)
	}
	must(t, os.WriteFile(filepath.Join(dir, "beta.json"), []byte(`{"channel":"stable","releases":[]}`), 0o644))
	if _, err := ReadManifest(dir, Beta); err == nil || !strings.Contains(err.Error(), `channel "stable", want "beta"`) {
		t.Errorf("wrong channel: %v", err)
	}
	must(t, os.WriteFile(filepath.Join(dir, "stable.json"), make([]byte, maxManifestBytes+1), 0o644))
	if _, err := ReadManifest(dir, Stable); err == nil || strings.Contains(err.Error(), dir) {
		t.Errorf("huge manifest: %v (must not name the directory)", err)
	}
}

func TestWriteManifestRoundTrip(t *testing.T) {
	dir := t.TempDir()
	m, err := ParseManifest([]byte(`{"channel":"beta","releases":[` + goodRelease + `]}`))
	must(t, err)
	must(t, WriteManifest(dir, m))
	back, err := ReadManifest(dir, Beta)
	must(t, err)
	if !reflect.DeepEqual(back, m) {
		t.Errorf("round trip:\n%+v\n%+v", back, m)
	}
	entries, _ := os.ReadDir(dir)
	if len(entries) != 1 {
		t.Errorf("temporary files left: %v", entries)
	}
	m.Releases[0].Build = -1
	if err := WriteManifest(dir, m); err == nil {
		t.Error("an invalid manifest was written")
	}
}

// FuzzParseManifest: never panics; what parses is valid and survives a
// write/read round trip unchanged.
func FuzzParseManifest(f *testing.F) {
	f.Add([]byte(`{"channel":"stable","releases":[` + goodRelease + `]}`))
	f.Add([]byte(`{"channel":"beta","releases":[]}`))
	f.Add([]byte(`{"channel":"stable","releases":[` + strings.Replace(goodRelease, `"file":"Nexy-1.7.0.dmg"`, `"url":"https://e.com/a.dmg","critical":true,"phased_rollout_interval":60,"release_notes_link":"https://e.com/n","minimum_system_version":"13.0"`, 1) + `]}`))
	f.Add([]byte(`{"channel":"stable","releases":null}`))
	f.Fuzz(func(t *testing.T, data []byte) {
		m, err := ParseManifest(data)
		if err != nil {
			return
		}
		if err := m.Validate(); err != nil {
			t.Fatalf("parsed but invalid: %v", err)
		}
		out, err := json.Marshal(m)
		if err != nil {
			t.Fatal(err)
		}
		again, err := ParseManifest(out)
		if err != nil {
			t.Fatalf("re-parse of %s: %v", out, err)
		}
		for i := range m.Releases {
			a, b := m.Releases[i], again.Releases[i]
			if !a.PubDate.Equal(b.PubDate) {
				t.Fatalf("pub_date %v → %v", a.PubDate, b.PubDate)
			}
			a.PubDate = b.PubDate
			if a != b {
				t.Fatalf("round trip changed a release:\n%+v\n%+v", a, b)
			}
		}
		if _, err := renderAppcast(m.Channel, "https://e.com", m.Releases); err != nil {
			t.Fatalf("a valid manifest does not render: %v", err)
		}
	})
}
