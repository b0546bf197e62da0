//go:build !unix

package cputime

import "time"

// Self is not measured here; benchmarks then report cpu-ns/op as 0.
func Self() time.Duration { return 0 }
