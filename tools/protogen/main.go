// Command protogen compiles the .proto files under a directory and runs
// protoc plugins on them, writing what the plugins generate under -out: what
// `buf generate` did, without building buf. buf and its dependencies take
// about 2.5 minutes to compile from an empty build cache on a 2-vCPU machine,
// which a fresh CI machine pays for a freshness check of three small files;
// its compiler, protocompile, and the two plugins take about 30 seconds.
//
// Run it from the tools directory (the plugins are this module's tools):
//
//	go run ./protogen -root ../proto -out ../proto
//
// Each plugin gets one request naming every file, with the parameter
// paths=source_relative, so a file's code lands beside its .proto file.
package main

import (
	"bytes"
	"context"
	"errors"
	"flag"
	"fmt"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"slices"

	"github.com/bufbuild/protocompile"
	"github.com/bufbuild/protocompile/protoutil"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/reflect/protoreflect"
	"google.golang.org/protobuf/types/descriptorpb"
	"google.golang.org/protobuf/types/pluginpb"
)

// plugins are the code generators run, each as `go tool NAME`.
var plugins = []string{"protoc-gen-go", "protoc-gen-go-grpc"}

// parameter is what every plugin is told.
const parameter = "paths=source_relative"

func main() {
	root := flag.String("root", "../proto", "directory holding the .proto files (their import root)")
	out := flag.String("out", "", "directory the generated files are written under (default: -root)")
	flag.Parse()
	if *out == "" {
		*out = *root
	}
	if err := run(context.Background(), *root, *out); err != nil {
		fmt.Fprintln(os.Stderr, "protogen:", err)
		os.Exit(1)
	}
}

func run(ctx context.Context, root, out string) error {
	names, err := protoFiles(root)
	if err != nil {
		return err
	}
	if len(names) == 0 {
		return fmt.Errorf("no .proto files under %s", root)
	}
	files, err := compile(ctx, root, names)
	if err != nil {
		return err
	}
	// Every plugin gets the same request.
	req, err := proto.Marshal(&pluginpb.CodeGeneratorRequest{FileToGenerate: names, Parameter: proto.String(parameter), ProtoFile: files})
	if err != nil {
		return err
	}
	for _, plugin := range plugins {
		resp, err := runPlugin(ctx, plugin, req)
		if err != nil {
			return err
		}
		if err := write(out, resp); err != nil {
			return fmt.Errorf("%s: %w", plugin, err)
		}
	}
	return nil
}

// protoFiles lists the .proto files under root, relative to it and sorted.
func protoFiles(root string) ([]string, error) {
	var names []string
	err := filepath.WalkDir(root, func(path string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() || filepath.Ext(path) != ".proto" {
			return err
		}
		rel, err := filepath.Rel(root, path)
		names = append(names, filepath.ToSlash(rel))
		return err
	})
	slices.Sort(names)
	return names, err
}

// compile parses and links names with their comments (the plugins copy them
// into the code), and returns them with their imports, each after the files
// it imports, as a CodeGeneratorRequest wants them.
func compile(ctx context.Context, root string, names []string) ([]*descriptorpb.FileDescriptorProto, error) {
	c := protocompile.Compiler{
		Resolver:       protocompile.WithStandardImports(&protocompile.SourceResolver{ImportPaths: []string{root}}),
		SourceInfoMode: protocompile.SourceInfoStandard,
	}
	linked, err := c.Compile(ctx, names...)
	if err != nil {
		return nil, err
	}
	var files []*descriptorpb.FileDescriptorProto
	seen := map[string]bool{}
	var visit func(fd protoreflect.FileDescriptor)
	visit = func(fd protoreflect.FileDescriptor) {
		if seen[fd.Path()] {
			return
		}
		seen[fd.Path()] = true
		imports := fd.Imports()
		for i := range imports.Len() {
			visit(imports.Get(i).FileDescriptor)
		}
		files = append(files, protoutil.ProtoFromFileDescriptor(fd))
	}
	for _, f := range linked {
		visit(f)
	}
	return files, nil
}

// runPlugin runs `go tool plugin` with the encoded CodeGeneratorRequest req
// on its standard input.
func runPlugin(ctx context.Context, plugin string, req []byte) (*pluginpb.CodeGeneratorResponse, error) {
	var stdout, stderr bytes.Buffer
	cmd := exec.CommandContext(ctx, "go", "tool", plugin)
	cmd.Stdin, cmd.Stdout, cmd.Stderr = bytes.NewReader(req), &stdout, &stderr
	if err := cmd.Run(); err != nil {
		return nil, fmt.Errorf("go tool %s: %w\n%s", plugin, err, stderr.Bytes())
	}
	resp := &pluginpb.CodeGeneratorResponse{}
	if err := proto.Unmarshal(stdout.Bytes(), resp); err != nil {
		return nil, fmt.Errorf("go tool %s: its response: %w", plugin, err)
	}
	if resp.Error != nil {
		return nil, fmt.Errorf("go tool %s: %s", plugin, resp.GetError())
	}
	return resp, nil
}

// write writes the files of resp under out.
func write(out string, resp *pluginpb.CodeGeneratorResponse) error {
	for _, f := range resp.GetFile() {
		name := filepath.FromSlash(f.GetName())
		if f.InsertionPoint != nil || !filepath.IsLocal(name) {
			return fmt.Errorf("unexpected output file %q", f.GetName())
		}
		path := filepath.Join(out, name)
		if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
			return err
		}
		if err := os.WriteFile(path, []byte(f.GetContent()), 0o644); err != nil {
			return err
		}
	}
	if len(resp.GetFile()) == 0 {
		return errors.New("generated nothing")
	}
	return nil
}
