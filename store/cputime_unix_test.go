//go:build unix

package store

import (
	"syscall"
	"time"
)

// cpuTime is the CPU time this process has used (user + system), the
// writer's goroutine included. Benchmarks report it per op besides wall
// time: on a shared, busy machine wall time also counts the time other
// processes held the CPU.
func cpuTime() time.Duration {
	var ru syscall.Rusage
	if syscall.Getrusage(syscall.RUSAGE_SELF, &ru) != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}
