//go:build unix

package updates

import (
	"os"
	"syscall"
)

// mapFile maps n bytes of f read-only: verifying a release of hundreds of
// megabytes then reads it from the page cache instead of copying it onto
// the heap of a server that may run on a small VPS.
func mapFile(f *os.File, n int64) (data []byte, release func(), err error) {
	if n == 0 {
		return nil, func() {}, nil
	}
	data, err = syscall.Mmap(int(f.Fd()), 0, int(n), syscall.PROT_READ, syscall.MAP_SHARED)
	if err != nil {
		return nil, nil, err
	}
	return data, func() { _ = syscall.Munmap(data) }, nil
}
