//go:build !unix

package tts

import "os/exec"

// killGroup: elsewhere the default (kill the direct process) applies.
func killGroup(*exec.Cmd) {}
