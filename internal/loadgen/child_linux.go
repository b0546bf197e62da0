package loadgen

import "syscall"

// sysProcAttr kills a child when the bench dies, so no server outlives it.
func sysProcAttr() *syscall.SysProcAttr { return &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL} }
