// Package cputime reads the CPU time this process has used, for benchmarks
// that report it per op beside wall time: on a shared, busy machine wall
// time also counts the time other processes held the CPU.
package cputime

import (
	"testing"
	"time"
)

// Report adds cpu-ns/op to b: the process's CPU time since start (from Self)
// over b.N. Background goroutines (a store's writer) are included.
func Report(b *testing.B, start time.Duration) {
	b.ReportMetric(float64(Self()-start)/float64(b.N), "cpu-ns/op")
}
