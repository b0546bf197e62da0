// Package buildinfo describes the running binary from what the Go toolchain
// stamped into it (module version, VCS revision and time, Go version), so
// `nexy version` and the server's logs can say exactly what is running.
package buildinfo

import (
	"runtime/debug"
	"strings"
)

// Version is the release version, set at build time:
//
//	go build -ldflags "-X github.com/nexy-server/nexy/internal/buildinfo.Version=1.7.0"
//
// It lives here, not in the server, so every package (the update feed, the
// store's backups) can name the running version without importing server.
var Version = "dev"

// Current is the running binary's Info with Version applied.
func Current() Info { return Read(Version) }

// Info is what is known about the running binary. Empty fields are unknown.
type Info struct {
	Version   string // the release: the -ldflags override, else the module version, else "dev"
	Revision  string // VCS commit, shortened to 12 characters
	Time      string // commit time (RFC 3339)
	Modified  bool   // built from a working tree with uncommitted changes
	GoVersion string // e.g. "go1.26.1"
}

// Read returns the running binary's Info. override is a version set at link
// time (Version via -ldflags "-X …"); "" and "dev" mean not set.
func Read(override string) Info {
	bi, _ := debug.ReadBuildInfo() // nil when the binary carries none
	return fromBuildInfo(bi, override)
}

func fromBuildInfo(bi *debug.BuildInfo, override string) Info {
	info := Info{Version: "dev"}
	if bi != nil {
		info.GoVersion = bi.GoVersion
		if v := bi.Main.Version; v != "" && v != "(devel)" {
			info.Version = v
		}
		for _, s := range bi.Settings {
			switch s.Key {
			case "vcs.revision":
				info.Revision = s.Value[:min(12, len(s.Value))]
			case "vcs.time":
				info.Time = s.Value
			case "vcs.modified":
				info.Modified = s.Value == "true"
			}
		}
	}
	if override != "" && override != "dev" {
		info.Version = override
	}
	return info
}

// Commit is the short revision with "+dirty" for a modified tree, or "" when
// the binary was built without VCS information.
func (i Info) Commit() string {
	if i.Revision == "" {
		return ""
	}
	if i.Modified {
		return i.Revision + "+dirty"
	}
	return i.Revision
}

// String is one line: "v1.2.0 (commit 0123456789ab+dirty, 2025-06-01T12:00:00Z, go1.26.1)".
func (i Info) String() string {
	var parts []string
	if c := i.Commit(); c != "" {
		parts = append(parts, "commit "+c)
	}
	if i.Time != "" {
		parts = append(parts, i.Time)
	}
	if i.GoVersion != "" {
		parts = append(parts, i.GoVersion)
	}
	if len(parts) == 0 {
		return i.Version
	}
	return i.Version + " (" + strings.Join(parts, ", ") + ")"
}

// String describes the running binary in one line; see Read for override.
func String(override string) string { return Read(override).String() }

// Revision is the running binary's short commit ("+dirty" when modified), or "".
func Revision() string { return Read("").Commit() }
