//go:build !unix

package store

import "time"

// cpuTime is not measured here; benchmarks then report cpu-ns/op as 0.
func cpuTime() time.Duration { return 0 }
