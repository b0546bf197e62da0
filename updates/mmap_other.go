//go:build !unix

package updates

import (
	"io"
	"os"
)

// mapFile reads n bytes of f (no mmap here).
func mapFile(f *os.File, n int64) ([]byte, func(), error) {
	data := make([]byte, n)
	if _, err := io.ReadFull(f, data); err != nil {
		return nil, nil, err
	}
	return data, func() {}, nil
}
