// Package proto holds the .proto sources of gatewire's gRPC APIs and the Go
// code generated from them. Regenerate after editing a .proto file with
//
//	go generate ./proto
//
// which runs buf with plugins pinned in tools/go.mod.
package proto

//go:generate go tool -modfile=../tools/go.mod buf lint
//go:generate go tool -modfile=../tools/go.mod buf generate
