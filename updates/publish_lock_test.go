package updates

import (
	"strings"
	"testing"
	"time"
)

// Two releases at once: the second is refused instead of racing the first
// for the manifest; after the first, the lock is gone.
func TestReleaseLock(t *testing.T) {
	dir := t.TempDir()
	unlock, err := lockDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := Promote(dir, Beta, Stable, nil, nowForLock()); err == nil || !strings.Contains(err.Error(), "another nexy release is running") {
		t.Fatalf("promote while locked: %v", err)
	}
	unlock()
	again, err := lockDir(dir)
	if err != nil {
		t.Fatalf("lock after unlock: %v", err)
	}
	again()
}

func nowForLock() time.Time { return time.Now() }
