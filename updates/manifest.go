package updates

import (
	"bytes"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"net"
	"net/url"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"time"
	"unicode"
	"unicode/utf8"
)

// The channels. Each has its own manifest file and feed URL: installed
// clients are configured with a feed URL, so channels are not mixed in one
// feed with <sparkle:channel>.
const (
	Stable = "stable"
	Beta   = "beta"
)

// Channels lists every channel, stable first.
var Channels = []string{Stable, Beta}

// DownloadsDir is the sub-directory of the updates directory that holds
// the artifacts served under /updates/downloads/.
const DownloadsDir = "downloads"

// maxManifestBytes bounds a manifest read: a channel's history is a few KB.
const maxManifestBytes = 1 << 20

// Release is one published build of the app, as recorded in a channel's
// manifest.
type Release struct {
	// Version is the version people see (CFBundleShortVersionString), e.g. "1.7.0".
	Version string `json:"version"`
	// Build is the machine version (CFBundleVersion) clients compare with
	// their own; strictly increasing within a channel.
	Build int64 `json:"build"`
	// File is the artifact's name in the downloads directory; exactly one
	// of File and URL is set.
	File string `json:"file,omitempty"`
	// URL is where an externally hosted artifact is downloaded from.
	URL string `json:"url,omitempty"`
	// Length is the artifact's size in bytes.
	Length int64 `json:"length"`
	// SHA256 is the artifact's SHA-256, lower-case hex.
	SHA256 string `json:"sha256"`
	// EdSignature is the base64 Ed25519 signature of the artifact's bytes,
	// as Sparkle's sign_update makes it.
	EdSignature string `json:"ed_signature"`
	// PubDate is when the release was published to this channel; phased
	// rollouts count from it, so it never changes once written.
	PubDate time.Time `json:"pub_date"`
	// Critical marks an update that clients show at once and cannot skip.
	Critical bool `json:"critical,omitempty"`
	// PhasedRolloutInterval spreads the release over Sparkle's 7 groups,
	// this many seconds apart; 0 = everyone at once.
	PhasedRolloutInterval int64 `json:"phased_rollout_interval,omitempty"`
	// ReleaseNotesLink is an HTML or Markdown page describing the release.
	ReleaseNotesLink string `json:"release_notes_link,omitempty"`
	// MinimumSystemVersion is the oldest macOS the release runs on, e.g. "13.0".
	MinimumSystemVersion string `json:"minimum_system_version,omitempty"`
}

// Manifest is a channel's releases, newest (highest build) first.
type Manifest struct {
	Channel  string    `json:"channel"`
	Releases []Release `json:"releases"`
}

// Current is the channel's newest release, or nil when nothing is published.
func (m *Manifest) Current() *Release {
	if m == nil || len(m.Releases) == 0 {
		return nil
	}
	return &m.Releases[0]
}

// ManifestFile is the manifest's file name in the updates directory.
func ManifestFile(channel string) string { return channel + ".json" }

// ValidChannel reports whether name is a channel.
func ValidChannel(name string) bool { return name == Stable || name == Beta }

// ParseManifest decodes and validates a manifest. Unknown fields and
// trailing data are errors: a typo in a hand edit must not silently drop a
// setting such as critical.
func ParseManifest(data []byte) (*Manifest, error) {
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.DisallowUnknownFields()
	var m Manifest
	if err := dec.Decode(&m); err != nil {
		return nil, fmt.Errorf("not a manifest: %w", err)
	}
	if _, err := dec.Token(); err != io.EOF {
		return nil, errors.New("not a manifest: data after the JSON object")
	}
	if err := m.Validate(); err != nil {
		return nil, err
	}
	return &m, nil
}

// Validate checks the channel name and every release, and that builds
// strictly decrease from the first (newest) release on.
func (m *Manifest) Validate() error {
	if !ValidChannel(m.Channel) {
		return fmt.Errorf("channel %q: want %q or %q", m.Channel, Stable, Beta)
	}
	for i := range m.Releases {
		r := &m.Releases[i]
		if err := r.Validate(); err != nil {
			return fmt.Errorf("release %d (build %d): %w", i+1, r.Build, err)
		}
		if i > 0 && r.Build >= m.Releases[i-1].Build {
			return fmt.Errorf("release %d: build %d is not lower than build %d before it (newest first, builds strictly increasing)", i+1, r.Build, m.Releases[i-1].Build)
		}
	}
	return nil
}

// Validate checks one release's fields.
func (r *Release) Validate() error {
	if err := validVersion(r.Version); err != nil {
		return err
	}
	if r.Build <= 0 {
		return fmt.Errorf("build %d: want a positive integer", r.Build)
	}
	if err := r.validSource(); err != nil {
		return err
	}
	if r.Length <= 0 {
		return fmt.Errorf("length %d: want the artifact's size in bytes", r.Length)
	}
	if len(r.SHA256) != 64 || strings.ToLower(r.SHA256) != r.SHA256 || !isHex(r.SHA256) {
		return fmt.Errorf("sha256 %q: want 64 lower-case hex digits", r.SHA256)
	}
	if sig, err := base64.StdEncoding.DecodeString(r.EdSignature); err != nil || len(sig) != 64 {
		return fmt.Errorf("ed_signature: want the base64 of a 64-byte Ed25519 signature")
	}
	if r.PubDate.IsZero() {
		return errors.New("pub_date: missing")
	}
	if r.PhasedRolloutInterval < 0 {
		return fmt.Errorf("phased_rollout_interval %d: want seconds ≥ 0", r.PhasedRolloutInterval)
	}
	if r.ReleaseNotesLink != "" {
		if err := validWebURL(r.ReleaseNotesLink, false); err != nil {
			return fmt.Errorf("release_notes_link: %w", err)
		}
	}
	return validOSVersion(r.MinimumSystemVersion)
}

func (r *Release) validSource() error {
	switch {
	case r.File != "" && r.URL != "":
		return errors.New("both file and url: want one (a file in downloads/, or an external URL)")
	case r.File != "":
		if !ValidFileName(r.File) {
			return fmt.Errorf("file %q: want a plain name of letters, digits, '.', '_', '-', '+' (no directories, not starting with '.')", r.File)
		}
	case r.URL != "":
		if err := validWebURL(r.URL, true); err != nil {
			return fmt.Errorf("url: %w", err)
		}
	default:
		return errors.New("no file or url")
	}
	return nil
}

func validVersion(v string) error {
	if v == "" || len(v) > 64 || !utf8.ValidString(v) || strings.TrimSpace(v) != v {
		return fmt.Errorf("version %q: want 1 to 64 characters, no surrounding spaces", v)
	}
	for _, c := range v {
		if unicode.IsControl(c) {
			return fmt.Errorf("version %q: control character", v)
		}
	}
	return nil
}

// validOSVersion accepts "", "13", "13.0", "10.15.7".
func validOSVersion(v string) error {
	if v == "" {
		return nil
	}
	parts := strings.Split(v, ".")
	ok := len(parts) <= 3 && len(v) <= 32
	for _, p := range parts {
		ok = ok && p != "" && isDigits(p)
	}
	if !ok {
		return fmt.Errorf("minimum_system_version %q: want a macOS version such as 13.0", v)
	}
	return nil
}

// validWebURL accepts an absolute https URL, or http to a loopback host
// (a local test server). artifact adds the upstream fail-closed rule that
// an enclosure never points at an appcast.
func validWebURL(s string, artifact bool) error {
	u, err := url.Parse(s)
	if err != nil || u.Host == "" || u.Opaque != "" || u.User != nil || strings.ContainsFunc(s, unicode.IsControl) || strings.ContainsRune(s, ' ') {
		return fmt.Errorf("%q: want an absolute https URL", s)
	}
	switch u.Scheme {
	case "https":
	case "http":
		if !isLoopback(u.Hostname()) {
			return fmt.Errorf("%q: http only for localhost; use https", s)
		}
	default:
		return fmt.Errorf("%q: want an https URL", s)
	}
	if artifact && (strings.HasSuffix(u.Path, "/appcast.xml") || strings.HasSuffix(u.Path, "/appcast-beta.xml")) {
		return fmt.Errorf("%q points at an appcast, not an artifact", s)
	}
	return nil
}

func isLoopback(host string) bool {
	if host == "localhost" {
		return true
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}

// ValidFileName reports whether name can be an artifact in the downloads
// directory: a short plain name of portable characters, never a path, never
// hidden (temporary files while publishing start with '.'). Serving only
// such names, and only when a release lists them, leaves no room for path
// tricks.
func ValidFileName(name string) bool {
	if name == "" || len(name) > 200 || name[0] == '.' || name[0] == '-' {
		return false
	}
	for i := 0; i < len(name); i++ {
		c := name[i]
		ok := c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '.' || c == '_' || c == '-' || c == '+'
		if !ok {
			return false
		}
	}
	return !strings.Contains(name, "..")
}

func isHex(s string) bool {
	_, err := hex.DecodeString(s)
	return err == nil
}

func isDigits(s string) bool {
	for i := 0; i < len(s); i++ {
		if s[i] < '0' || s[i] > '9' {
			return false
		}
	}
	return s != ""
}

// ReadManifest reads the channel's manifest from the updates directory. A
// missing file is an empty channel, not an error: nothing was published.
func ReadManifest(dir, channel string) (*Manifest, error) {
	name := ManifestFile(channel)
	data, err := readSmall(filepath.Join(dir, name), maxManifestBytes)
	if errors.Is(err, fs.ErrNotExist) {
		return &Manifest{Channel: channel, Releases: []Release{}}, nil
	}
	if err != nil {
		return nil, fmt.Errorf("%s: %w", name, err)
	}
	m, err := ParseManifest(data)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", name, err)
	}
	if m.Channel != channel {
		return nil, fmt.Errorf("%s: channel %q, want %q", name, m.Channel, channel)
	}
	if m.Releases == nil {
		m.Releases = []Release{}
	}
	return m, nil
}

// readSmall reads a file of at most limit bytes. Errors name no path: they
// reach /updates/health, which must not show the server's file system.
func readSmall(path string, limit int64) ([]byte, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, bareErr(err)
	}
	defer f.Close()
	data, err := io.ReadAll(io.LimitReader(f, limit+1))
	if err != nil {
		return nil, bareErr(err)
	}
	if int64(len(data)) > limit {
		return nil, fmt.Errorf("larger than %d bytes", limit)
	}
	return data, nil
}

// bareErr drops the path from a *fs.PathError, keeping what went wrong.
func bareErr(err error) error {
	var pe *fs.PathError
	if errors.As(err, &pe) {
		return pe.Err
	}
	return err
}

// WriteManifest validates m and replaces its channel's manifest atomically
// (temporary file, fsync, rename, directory fsync): a running server reads
// either the old manifest or the new one, never half of one, and a crash
// cannot lose the new one after WriteManifest returns.
func WriteManifest(dir string, m *Manifest) error {
	if err := m.Validate(); err != nil {
		return err
	}
	data, err := json.MarshalIndent(m, "", "  ")
	if err != nil {
		return err
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return err
	}
	return writeAtomic(dir, ManifestFile(m.Channel), append(data, '\n'), 0o644)
}

// writeAtomic writes name in dir through a hidden temporary file.
func writeAtomic(dir, name string, data []byte, perm os.FileMode) (err error) {
	tmp, err := os.CreateTemp(dir, "."+name+".tmp-*")
	if err != nil {
		return err
	}
	defer func() {
		if err != nil {
			tmp.Close()
			os.Remove(tmp.Name())
		}
	}()
	if _, err = tmp.Write(data); err != nil {
		return err
	}
	if err = tmp.Chmod(perm); err != nil {
		return err
	}
	if err = tmp.Sync(); err != nil {
		return err
	}
	if err = tmp.Close(); err != nil {
		return err
	}
	if err = os.Rename(tmp.Name(), filepath.Join(dir, name)); err != nil {
		return err
	}
	return syncDir(dir)
}

// syncDir makes a rename in dir durable. Windows cannot open a directory
// for syncing; its renames are durable through the file system's journal.
func syncDir(dir string) error {
	if runtime.GOOS == "windows" {
		return nil
	}
	d, err := os.Open(dir)
	if err != nil {
		return err
	}
	defer d.Close()
	return d.Sync()
}
