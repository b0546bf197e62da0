package updates

import (
	"crypto/ed25519"
	"encoding/base64"
	"encoding/hex"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// Sign is standard Ed25519 (PureEdDSA over the whole message), which is
// what Sparkle's sign_update computes: RFC 8032 §7.1 test 2 gives the
// same signature.
func TestSignRFC8032(t *testing.T) {
	seed, _ := hex.DecodeString("4ccd089b28ff96da9db6c346ec114e0f5b8a319f35aba624da8cf6ed4fb8a6fb")
	wantPub := "3d4017c3e843895a92b70aa74d1b7ebc9c982ccf2ec4968cc0cd55f12af4660c"
	wantSig := "92a009a9f0d4cab8720e820b5f642540a2b27b5416503f8fb3762223ebdb69da" +
		"085ac1e43e15996e458f3613d0f11d8c387b2eaeb4302aeeb00d291612bb0c00"
	priv := ed25519.NewKeyFromSeed(seed)
	s := Sign(priv, []byte{0x72})
	sig, _ := base64.StdEncoding.DecodeString(s.EdSignature)
	if hex.EncodeToString(sig) != wantSig || hex.EncodeToString(priv.Public().(ed25519.PublicKey)) != wantPub || s.Length != 1 {
		t.Errorf("signature %x, want %s", sig, wantSig)
	}
	if s.SHA256 != "454349e422f05297191ead13e21d3db520e5abef52055e4964b82fb213f593a1" {
		t.Errorf("sha256 %s", s.SHA256)
	}
}

func TestGenerateKey(t *testing.T) {
	path := filepath.Join(t.TempDir(), "data", KeyFileName)
	pub, err := GenerateKey(path)
	must(t, err)
	priv, err := ReadPrivateKey(path)
	must(t, err)
	if !priv.Public().(ed25519.PublicKey).Equal(pub) {
		t.Error("the private key file does not hold the printed key")
	}
	filePub, err := ReadPublicKey(PublicKeyFile(path))
	if err != nil || !filePub.Equal(pub) {
		t.Errorf("public key file: %v", err)
	}
	raw, _ := os.ReadFile(path)
	if seed, err := base64.StdEncoding.DecodeString(strings.TrimSpace(string(raw))); err != nil || len(seed) != 32 {
		t.Errorf("private key file %q: want the base64 of the 32-byte seed (Sparkle's format)", raw)
	}
	for p, want := range map[string]os.FileMode{path: 0o600, PublicKeyFile(path): 0o644} {
		if fi, err := os.Stat(p); err != nil || fi.Mode().Perm() != want {
			t.Errorf("%s: mode %v, want %v", p, fi.Mode().Perm(), want)
		}
	}
	if _, err := GenerateKey(path); err == nil || !strings.Contains(err.Error(), "already exists") {
		t.Errorf("second generate: %v", err)
	}
	after, _ := os.ReadFile(path)
	if string(after) != string(raw) {
		t.Error("the key was replaced")
	}
	// Only the .pub left over still blocks a new key: it is what the server trusts.
	must(t, os.Remove(path))
	if _, err := GenerateKey(path); err == nil {
		t.Error("generate replaced an existing public key")
	}
}

func TestReadPrivateKeyFormats(t *testing.T) {
	dir := t.TempDir()
	for _, c := range []struct{ name, content, want string }{
		{"old", base64.StdEncoding.EncodeToString(make([]byte, 96)), "old-format Sparkle key"},
		{"short", base64.StdEncoding.EncodeToString(make([]byte, 16)), "16 bytes"},
		{"text", "not base64!", "not a private key"},
	} {
		p := filepath.Join(dir, c.name)
		must(t, os.WriteFile(p, []byte(c.content), 0o600))
		if _, err := ReadPrivateKey(p); err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%s: %v, want %q", c.name, err, c.want)
		}
	}
	if _, err := ParsePublicKey("AAAA"); err == nil {
		t.Error("a 3-byte public key parsed")
	}
}
