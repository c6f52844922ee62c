// Command codegen turns a Go interface into a typed handle and an action
// table for shmex agents, so that calling an agent reads like calling a
// method. Run it from go:generate next to the interface:
//
//	//go:generate go run github.com/shmex/shmex/codegen -type Counter
//	type Counter interface {
//		Increment(ctx context.Context, by int) (int, error)
//		Get(ctx context.Context) (int, error)
//		Reset(ctx context.Context) error
//	}
//
// It writes <file>_shmex.go (-output to choose) holding, for each type:
//
//   - CounterHandle, which implements Counter by calling the actions of a
//     remote agent through an [agent.Handle] (the call waits for the
//     result), plus an <Method>Async form of each method that returns an
//     [agent.Future];
//   - AddCounterActions(b, impl), which registers impl's methods as the
//     actions of a behavior.
//
// Action names: by default the snake_case form of the method's name
// (Increment is "increment", GetValue "get_value"), which is what Academy's
// Python agents and callers use; -names go keeps the Go names, -names camel
// makes "getValue". A line "//shmex:action NAME" in a method's doc comment
// names its action whatever the rule.
//
// Every method takes a context.Context first, then at most one argument,
// and returns an error last, after at most one result. Arguments and
// results travel as MessagePack. The generator type-checks the package
// (with the go command) and refuses, with the file, the line and the
// reason, any argument or result the agent runtime has no codec for (see
// [agent.CodecFor]): it accepts the basic types and named types over them,
// []byte, types with msgp codecs (or structs of a file that runs msgp from
// go:generate) and pointers to them, slices of these, and maps from strings
// or integers to these.
package main

import (
	"flag"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
)

func main() {
	os.Exit(run(os.Args[1:], os.Stderr))
}

func run(args []string, stderr io.Writer) int {
	fl := flag.NewFlagSet("codegen", flag.ContinueOnError)
	fl.SetOutput(stderr)
	types := fl.String("type", "", "comma-separated names of the interfaces to generate for (required)")
	output := fl.String("output", "", "output file (default <file>_shmex.go, from $GOFILE, else <first type>_shmex.go)")
	dir := fl.String("dir", ".", "directory of the package holding the interfaces")
	naming := fl.String("names", string(NamingSnake), "how action names are made from method names: snake (GetValue is get_value), go (GetValue) or camel (getValue); a method's doc line \"//shmex:action NAME\" overrides it")
	if err := fl.Parse(args); err != nil {
		return 2
	}
	if *types == "" || fl.NArg() != 0 {
		fmt.Fprintln(stderr, "usage: codegen -type Name[,Name...] [-output file] [-dir dir] [-names snake|go|camel]")
		return 2
	}
	names := strings.Split(*types, ",")
	out := *output
	if out == "" {
		base := strings.ToLower(names[0])
		if f := os.Getenv("GOFILE"); f != "" {
			base = strings.TrimSuffix(f, ".go")
		}
		out = base + "_shmex.go"
	}
	if !filepath.IsAbs(out) {
		out = filepath.Join(*dir, out)
	}
	src, err := Generate(*dir, Config{Names: names, Output: filepath.Base(out), Naming: Naming(*naming)})
	if err != nil {
		fmt.Fprintln(stderr, "codegen:", err)
		return 1
	}
	if err := os.WriteFile(out, src, 0o644); err != nil {
		fmt.Fprintln(stderr, "codegen:", err)
		return 1
	}
	return 0
}
