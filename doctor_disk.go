//go:build linux || darwin || freebsd || dragonfly

package main

import "syscall"

// diskFree is the space an unprivileged process may still use on the file
// system holding path (statfs's available blocks).
func diskFree(path string) (int64, error) {
	var st syscall.Statfs_t
	if err := syscall.Statfs(path, &st); err != nil {
		return 0, err
	}
	return int64(uint64(st.Bavail) * uint64(st.Bsize)), nil
}
