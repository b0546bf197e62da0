package updates

import (
	"bytes"
	"crypto/ed25519"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"time"
)

// ErrStaleBuild refuses a release whose build is not above the channel's
// current one: clients update only to a higher build, so a lower or equal
// one would never be installed (and a mistake here is easy to make).
var ErrStaleBuild = errors.New("build not greater than the channel's current build")

// PublishRequest is one `nexy release publish`.
type PublishRequest struct {
	Channel string
	// Artifact is the bytes to publish, read once so that what is hashed,
	// signed, verified and copied is the same.
	Artifact []byte
	// Release carries Version, Build and the options (Critical,
	// PhasedRolloutInterval, ReleaseNotesLink, MinimumSystemVersion) and
	// either File (copied into downloads/ under that name) or URL (hosted
	// elsewhere; Artifact only provides length, hash and signature).
	Release Release
	// Key signs the artifact.
	Key ed25519.PrivateKey
	// PublicKey is the key the server verifies with; the signature must
	// verify with it before anything changes.
	PublicKey ed25519.PublicKey
	// Now is the release's pub_date.
	Now time.Time
}

// Publish signs an artifact, checks it, copies it into downloads/ (unless
// it is hosted elsewhere) and adds it to the channel's manifest as the
// current release. Nothing changes unless every check passes: the build
// is above the channel's, the signature verifies with the server's public
// key, and an existing download of that name has the same bytes.
func Publish(dir string, req PublishRequest) (Release, error) {
	unlock, err := lockDir(dir)
	if err != nil {
		return Release{}, err
	}
	defer unlock()
	if !ValidChannel(req.Channel) {
		return Release{}, fmt.Errorf("channel %q: want %s or %s", req.Channel, Stable, Beta)
	}
	r := req.Release
	s := Sign(req.Key, req.Artifact)
	r.Length, r.SHA256, r.EdSignature = s.Length, s.SHA256, s.EdSignature
	r.PubDate = req.Now.UTC().Truncate(time.Second)
	if err := r.Validate(); err != nil {
		return Release{}, err
	}
	if err := Verify(req.PublicKey, req.Artifact, &r); err != nil {
		return Release{}, fmt.Errorf("%v: the key does not match the server's public key", err)
	}
	m, err := readForUpdate(dir, req.Channel, r.Build)
	if err != nil {
		return Release{}, err
	}
	if r.File != "" {
		if err := placeArtifact(dir, r.File, req.Artifact); err != nil {
			return Release{}, err
		}
	}
	m.Releases = append([]Release{r}, m.Releases...)
	return r, WriteManifest(dir, m)
}

// readForUpdate reads a channel's manifest to add build to it. A manifest
// that does not parse is an error here (not "empty"): writing over it
// would lose its history.
func readForUpdate(dir, channel string, build int64) (*Manifest, error) {
	m, err := ReadManifest(dir, channel)
	if err != nil {
		return nil, fmt.Errorf("%v (fix or remove it first)", err)
	}
	if cur := m.Current(); cur != nil && build <= cur.Build {
		return nil, fmt.Errorf("%w: build %d, %s is at build %d (%s)", ErrStaleBuild, build, channel, cur.Build, cur.Version)
	}
	return m, nil
}

// placeArtifact writes data as downloads/name, atomically. A file already
// there with the same bytes is kept (promoting, or publishing the same
// file to both channels); one with other bytes is refused, because earlier
// releases and caches (max-age one day) rely on a name's bytes never
// changing.
func placeArtifact(dir, name string, data []byte) error {
	dl := filepath.Join(dir, DownloadsDir)
	if err := os.MkdirAll(dl, 0o755); err != nil {
		return err
	}
	path := filepath.Join(dl, name)
	old, err := os.ReadFile(path)
	switch {
	case err == nil && bytes.Equal(old, data):
		return nil
	case err == nil:
		return fmt.Errorf("%s already exists with other content: publish under a new file name (e.g. with the version in it)", path)
	case !errors.Is(err, fs.ErrNotExist):
		return err
	}
	if err := writeAtomic(dl, name, data, 0o644); err != nil {
		return err
	}
	back, err := os.ReadFile(path)
	if err != nil {
		return err
	}
	if sha256.Sum256(back) != sha256.Sum256(data) {
		return fmt.Errorf("%s: the copy reads back different bytes", path)
	}
	return nil
}

// Promote copies the current release of channel from to channel to (e.g.
// beta → stable) with a new pub_date: the phased rollout, if any, starts
// over on the new channel. The artifact is verified again with the
// server's public key first, and the build must be above to's.
func Promote(dir, from, to string, pub ed25519.PublicKey, now time.Time) (Release, error) {
	unlock, err := lockDir(dir)
	if err != nil {
		return Release{}, err
	}
	defer unlock()
	if !ValidChannel(from) || !ValidChannel(to) || from == to {
		return Release{}, fmt.Errorf("promote %q to %q: want two different channels (%s, %s)", from, to, Stable, Beta)
	}
	src, err := ReadManifest(dir, from)
	if err != nil {
		return Release{}, err
	}
	cur := src.Current()
	if cur == nil {
		return Release{}, fmt.Errorf("%s has no release to promote", from)
	}
	r := *cur
	if err := verifyPublished(dir, &r, pub); err != nil {
		return Release{}, fmt.Errorf("%s build %d: %w", from, r.Build, err)
	}
	m, err := readForUpdate(dir, to, r.Build)
	if err != nil {
		return Release{}, err
	}
	r.PubDate = now.UTC().Truncate(time.Second)
	m.Releases = append([]Release{r}, m.Releases...)
	return r, WriteManifest(dir, m)
}

// verifyPublished checks a release's download against its record. An
// externally hosted artifact is not fetched; its signature was verified
// when it was published.
func verifyPublished(dir string, r *Release, pub ed25519.PublicKey) error {
	if len(pub) != ed25519.PublicKeySize {
		return errors.New("no public key to verify with")
	}
	if r.URL != "" {
		return nil
	}
	root, err := os.OpenRoot(filepath.Join(dir, DownloadsDir))
	if err != nil {
		return err
	}
	defer root.Close()
	data, err := root.ReadFile(r.File)
	if err != nil {
		return err
	}
	return Verify(pub, data, r)
}

// sha256Hex is the lower-case hex SHA-256 of data, as manifests record it.
func sha256Hex(data []byte) string {
	sum := sha256.Sum256(data)
	return hex.EncodeToString(sum[:])
}

// lockName is the lock file that keeps two publishes (or promotes) from
// reading the same manifest and each writing its own version of it.
const lockName = ".release.lock"

// lockDir takes the updates directory's release lock, without waiting. A
// lock left by a crashed publish names itself in the error.
func lockDir(dir string) (unlock func(), err error) {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, err
	}
	path := filepath.Join(dir, lockName)
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
	if errors.Is(err, os.ErrExist) {
		return nil, fmt.Errorf("another nexy release is running (lock %s; remove it if none is)", path)
	}
	if err != nil {
		return nil, err
	}
	fmt.Fprintf(f, "pid %d\n", os.Getpid())
	f.Close()
	return func() { _ = os.Remove(path) }, nil
}
