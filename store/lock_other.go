//go:build !unix

package store

import (
	"fmt"
	"os"
	"path/filepath"
)

// LockDataDir on systems without flock creates <dir>/nexy.lock exclusively;
// a crash leaves it behind, and the error says to remove it by hand.
func LockDataDir(dir string) (unlock func(), err error) {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, fmt.Errorf("store: data directory: %w", err)
	}
	path := filepath.Join(dir, DataDirLockName)
	f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE|os.O_EXCL, 0o600)
	if os.IsExist(err) {
		return nil, &InUseError{Path: path}
	}
	if err != nil {
		return nil, fmt.Errorf("store: lock %s: %w", path, err)
	}
	return func() { f.Close(); _ = os.Remove(path) }, nil
}
