package buildinfo

import (
	"runtime"
	"runtime/debug"
	"strings"
	"testing"
)

func TestFromBuildInfo(t *testing.T) {
	stamped := &debug.BuildInfo{
		GoVersion: "go1.26.1",
		Main:      debug.Module{Path: "github.com/nexy-server/nexy", Version: "(devel)"},
		Settings: []debug.BuildSetting{
			{Key: "vcs", Value: "git"},
			{Key: "vcs.revision", Value: "0123456789abcdef0123456789abcdef01234567"},
			{Key: "vcs.time", Value: "2025-06-01T12:00:00Z"},
			{Key: "vcs.modified", Value: "true"},
		},
	}
	tagged := &debug.BuildInfo{GoVersion: "go1.26.1", Main: debug.Module{Version: "v1.2.0"},
		Settings: []debug.BuildSetting{{Key: "vcs.revision", Value: "abc"}, {Key: "vcs.modified", Value: "false"}}}
	cases := []struct {
		bi       *debug.BuildInfo
		override string
		want     string
		commit   string
	}{
		{stamped, "dev", "dev (commit 0123456789ab+dirty, 2025-06-01T12:00:00Z, go1.26.1)", "0123456789ab+dirty"},
		{stamped, "v9.9.9", "v9.9.9 (commit 0123456789ab+dirty, 2025-06-01T12:00:00Z, go1.26.1)", "0123456789ab+dirty"},
		{tagged, "", "v1.2.0 (commit abc, go1.26.1)", "abc"},
		{tagged, "v2.0.0", "v2.0.0 (commit abc, go1.26.1)", "abc"},
		{nil, "dev", "dev", ""},
		{&debug.BuildInfo{GoVersion: "go1.26.1", Main: debug.Module{Version: "(devel)"}}, "", "dev (go1.26.1)", ""},
	}
	for _, c := range cases {
		info := fromBuildInfo(c.bi, c.override)
		if got := info.String(); got != c.want {
			t.Errorf("String() = %q, want %q", got, c.want)
		}
		if got := info.Commit(); got != c.commit {
			t.Errorf("Commit() = %q, want %q", got, c.commit)
		}
	}
}

func TestReadRunningBinary(t *testing.T) {
	s := String("dev")
	if !strings.Contains(s, runtime.Version()) {
		t.Errorf("String() = %q lacks the Go version %s", s, runtime.Version())
	}
	_ = Revision() // test binaries carry no VCS stamp; must not panic
}
