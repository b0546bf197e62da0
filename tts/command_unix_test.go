//go:build unix

package tts

import (
	"context"
	"io"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"
)

// TestCommandCancelKillsChildren: a wrapper script's children die with it.
func TestCommandCancelKillsChildren(t *testing.T) {
	needSh(t)
	pidFile := filepath.Join(t.TempDir(), "child")
	c, err := NewCommand(CommandConfig{
		Command: `sh -c 'sleep 30 & echo $! > "$1"; cat "$0"; wait' ` + strconv.Quote(fixturePath("azure_hello_48k.pcm")) + " " + strconv.Quote(pidFile),
		Format:  "raw", SampleRate: 48000,
	})
	if err != nil {
		t.Fatal(err)
	}
	rc, err := c.Synthesize(context.Background(), Request{Text: "Hello"})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := io.ReadFull(rc, make([]byte, len(provFixture(t, "azure_hello_48k.pcm")))); err != nil {
		t.Fatal(err)
	}
	b, err := os.ReadFile(pidFile)
	if err != nil {
		t.Fatal(err)
	}
	child, err := strconv.Atoi(strings.TrimSpace(string(b)))
	if err != nil {
		t.Fatal(err)
	}
	if deadOrZombie(child) {
		t.Fatal("child gone before Close")
	}
	rc.Close()
	deadline := time.Now().Add(10 * time.Second)
	for !deadOrZombie(child) {
		if time.Now().After(deadline) {
			t.Fatal("the wrapper's child survived Close")
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// deadOrZombie: a killed orphan may stay a zombie where nothing reaps it.
func deadOrZombie(pid int) bool {
	if processGone(pid) {
		return true
	}
	stat, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
	if err != nil {
		return true
	}
	fields := strings.Fields(string(stat[strings.LastIndexByte(string(stat), ')')+1:]))
	return len(fields) > 0 && fields[0] == "Z"
}
