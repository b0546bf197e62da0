//go:build unix

package tts

import (
	"os/exec"
	"syscall"
)

// killGroup makes the command the leader of its own process group and kills
// the whole group on cancel, so a wrapper (sh -c 'a | b') cannot leave its
// children running after the turn ends.
func killGroup(cmd *exec.Cmd) {
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	cmd.Cancel = func() error {
		if cmd.Process == nil {
			return nil
		}
		return syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL)
	}
}
