//go:build unix

package store

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"syscall"
)

// LockDataDir takes an exclusive flock on <dir>/nexy.lock, without waiting.
// The server holds it while serving and nexy restore takes it, so a restore
// never swaps the file under a running server. The lock dies with the
// process, so a crash never leaves it stale. It returns *InUseError when
// another process (or another open of the file) holds it.
func LockDataDir(dir string) (unlock func(), err error) {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, fmt.Errorf("store: data directory: %w", err)
	}
	path := filepath.Join(dir, DataDirLockName)
	f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE, 0o600)
	if err != nil {
		return nil, fmt.Errorf("store: lock %s: %w", path, err)
	}
	if err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX|syscall.LOCK_NB); err != nil {
		f.Close()
		if errors.Is(err, syscall.EWOULDBLOCK) {
			return nil, &InUseError{Path: path}
		}
		return nil, fmt.Errorf("store: lock %s: %w", path, err)
	}
	// The file is left in place: removing it would let a second process
	// lock a new file while the first still holds the old one.
	return func() {
		_ = syscall.Flock(int(f.Fd()), syscall.LOCK_UN)
		f.Close()
	}, nil
}
