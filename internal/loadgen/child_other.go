//go:build !linux

package loadgen

import "syscall"

// sysProcAttr: without Pdeathsig a child may outlive a killed bench; the
// floor still ends when its stdin closes.
func sysProcAttr() *syscall.SysProcAttr { return nil }
