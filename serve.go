package main

import (
	"flag"
	"fmt"
	"io"
	"os"

	"github.com/nexy-server/nexy/config"
	"github.com/nexy-server/nexy/server"
)

func serve(args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("serve", flag.ContinueOnError)
	path := fs.String("config", "", "config file (default $NEXY_CONFIG, else ./nexy.toml when present)")
	fs.Usage = func() {
		fmt.Fprint(fs.Output(), "usage: nexy serve [-config nexy.toml]\n\nRuns the server. Settings: nexy.toml and NEXY_* environment variables.\n\n")
		fs.PrintDefaults()
	}
	if code, ok := parseFlags(fs, args, stdout, stderr); !ok {
		return code
	}
	if fs.NArg() > 0 {
		fmt.Fprintf(stderr, "nexy serve: unexpected argument %q (settings go in nexy.toml or NEXY_* variables)\n\n", fs.Arg(0))
		fs.SetOutput(stderr)
		fs.Usage()
		return 2
	}
	cfg, err := config.Load(*path, os.Environ())
	if err != nil {
		fmt.Fprintln(stderr, "nexy:", err)
		return 1
	}
	log := server.NewLogger(stderr, cfg.Log, cfg.Secrets())
	source := cfg.Path
	if source == "" {
		source = "built-in defaults (no nexy.toml)"
	}
	log.Info("Configuration loaded", "scope", "server", "decision", "config", "source", source, "profile", cfg.Server.Profile)
	for _, name := range cfg.UnknownEnv {
		log.Warn("Unknown environment setting ignored (typo?)", "scope", "server", "decision", "config", "env", name)
	}
	srv, err := server.New(&cfg.Config, log)
	if err != nil {
		fmt.Fprintln(stderr, "nexy:", err)
		return 1
	}
	if err := srv.Listen(); err != nil {
		fmt.Fprintln(stderr, "nexy:", err)
		return 1
	}
	ctx, stop := stopOnSignal(log)
	defer stop()
	if err := srv.Serve(ctx); err != nil {
		fmt.Fprintln(stderr, "nexy:", err)
		return 1
	}
	return 0
}
