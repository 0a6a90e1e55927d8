// Package proto holds the .proto sources of gatewire's gRPC APIs and the Go
// code generated from them. Regenerate after editing a .proto file with
//
//	go generate ./proto
//
// which lints them with buf and generates the code with tools/protogen
// (protocompile and the protoc-gen-go and protoc-gen-go-grpc plugins), all
// pinned in tools/go.mod.
package proto

//go:generate go tool -modfile=../tools/go.mod buf lint
//go:generate go run -C ../tools ./protogen -root ../proto
