// Package proto holds the Nexy wire contract (streaming.proto) and its generated Go code.
//
// Regenerate with `go generate ./proto` (see gen.sh for the pinned tool versions).
package proto

//go:generate ./gen.sh
