package updates

import (
	"crypto/ed25519"
	"crypto/rand"
	"encoding/base64"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
)

// KeyFileName is the private update key's file name in server.data_dir;
// the public key is next to it with ".pub" appended.
const KeyFileName = "update_key"

// DefaultKeyFile is where `nexy keys generate` writes the private key.
func DefaultKeyFile(dataDir string) string { return filepath.Join(dataDir, KeyFileName) }

// PublicKeyFile is the public key written next to a private key file; the
// server verifies releases with <data_dir>/update_key.pub.
func PublicKeyFile(privateKeyFile string) string { return privateKeyFile + ".pub" }

// GenerateKey makes a new Ed25519 key pair and writes it to privPath
// (mode 0600) and PublicKeyFile(privPath) (0644). The private key file
// holds the base64 of the 32-byte seed followed by a newline: the format
// Sparkle's generate_keys -x exports and sign_update --ed-key-file reads,
// so either tool can sign with the key. It refuses to replace either file:
// a lost signing key means installed apps reject every later update.
func GenerateKey(privPath string) (ed25519.PublicKey, error) {
	pubPath := PublicKeyFile(privPath)
	for _, p := range []string{privPath, pubPath} {
		if _, err := os.Lstat(p); err == nil {
			return nil, fmt.Errorf("%s already exists: refusing to replace a signing key (installed apps trust only its public key)", p)
		} else if !errors.Is(err, fs.ErrNotExist) {
			return nil, err
		}
	}
	pub, priv, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		return nil, err
	}
	if err := os.MkdirAll(filepath.Dir(privPath), 0o700); err != nil {
		return nil, err
	}
	if err := writeNew(privPath, base64.StdEncoding.EncodeToString(priv.Seed())+"\n", 0o600); err != nil {
		return nil, err
	}
	if err := writeNew(pubPath, EncodePublicKey(pub)+"\n", 0o644); err != nil {
		os.Remove(privPath) // a private key without its public file would be refused next time
		return nil, err
	}
	return pub, syncDir(filepath.Dir(privPath))
}

// writeNew creates path exclusively (O_EXCL: never follows or replaces an
// existing file) and syncs it.
func writeNew(path, content string, perm os.FileMode) error {
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_EXCL, perm)
	if err != nil {
		return err
	}
	_, err = io.WriteString(f, content)
	if err == nil {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		os.Remove(path)
	}
	return err
}

// EncodePublicKey is the SUPublicEDKey value of the app's Info.plist: the
// base64 of the 32-byte key.
func EncodePublicKey(pub ed25519.PublicKey) string { return base64.StdEncoding.EncodeToString(pub) }

// ParsePublicKey reads an SUPublicEDKey value.
func ParsePublicKey(s string) (ed25519.PublicKey, error) {
	b, err := base64.StdEncoding.DecodeString(strings.TrimSpace(s))
	if err != nil || len(b) != ed25519.PublicKeySize {
		return nil, errors.New("not an Ed25519 public key (want the base64 of 32 bytes, as SUPublicEDKey)")
	}
	return ed25519.PublicKey(b), nil
}

// ReadPublicKey reads a public key file (PublicKeyFile).
func ReadPublicKey(path string) (ed25519.PublicKey, error) {
	data, err := readSmall(path, 4096)
	if err != nil {
		return nil, err
	}
	return ParsePublicKey(string(data))
}

// ReadPrivateKey reads a private key file: the base64 of a 32-byte seed, as
// GenerateKey and Sparkle's generate_keys -x write it. Sparkle's old
// 96-byte format holds an expanded key that crypto/ed25519 cannot sign
// with; such a key must be used with Sparkle's sign_update.
func ReadPrivateKey(path string) (ed25519.PrivateKey, error) {
	data, err := readSmall(path, 4096)
	if err != nil {
		return nil, err
	}
	b, err := base64.StdEncoding.DecodeString(strings.TrimSpace(string(data)))
	switch {
	case err != nil:
		return nil, errors.New("not a private key: want the base64 of a 32-byte Ed25519 seed")
	case len(b) == 96:
		return nil, errors.New("an old-format Sparkle key (96 bytes): sign with Sparkle's sign_update, or generate a new key with nexy keys generate")
	case len(b) != ed25519.SeedSize:
		return nil, fmt.Errorf("not a private key: %d bytes, want a 32-byte Ed25519 seed", len(b))
	}
	return ed25519.NewKeyFromSeed(b), nil
}

// Signed is what a release records about an artifact's bytes.
type Signed struct {
	Length      int64
	SHA256      string // lower-case hex
	EdSignature string // base64, as sign_update prints it
}

// Sign hashes and signs an artifact's bytes. Ed25519 here is PureEdDSA over
// the whole file, exactly what sign_update computes, so the signature is
// byte-for-byte the one Sparkle would make with the same key.
func Sign(priv ed25519.PrivateKey, data []byte) Signed {
	return Signed{Length: int64(len(data)), SHA256: sha256Hex(data),
		EdSignature: base64.StdEncoding.EncodeToString(ed25519.Sign(priv, data))}
}

// Verify checks data against a release's length, SHA-256 and signature.
func Verify(pub ed25519.PublicKey, data []byte, r *Release) error {
	if int64(len(data)) != r.Length {
		return fmt.Errorf("length %d, manifest says %d", len(data), r.Length)
	}
	if sha256Hex(data) != r.SHA256 {
		return errors.New("sha256 differs from the manifest")
	}
	return verifySignature(pub, data, r.EdSignature)
}

func verifySignature(pub ed25519.PublicKey, data []byte, sig string) error {
	if len(pub) != ed25519.PublicKeySize {
		return errors.New("no public key to verify the signature with")
	}
	b, err := base64.StdEncoding.DecodeString(sig)
	if err != nil || !ed25519.Verify(pub, data, b) {
		return errors.New("ed_signature does not verify with the public key")
	}
	return nil
}
