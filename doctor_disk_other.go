//go:build !(linux || darwin || freebsd || dragonfly)

package main

// diskFree is unknown where syscall has no Statfs with these fields.
func diskFree(string) (int64, error) { return 0, errDiskFreeUnknown }
