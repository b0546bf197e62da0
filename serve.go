package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"time"

	"github.com/nexy-server/nexy/config"
	"github.com/nexy-server/nexy/internal/httpclient"
	"github.com/nexy-server/nexy/internal/providers"
	"github.com/nexy-server/nexy/server"
	"github.com/nexy-server/nexy/store"
	"github.com/nexy-server/nexy/updates"
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
	closeAll, deps, err := wire(&cfg.Config, log)
	if err != nil {
		fmt.Fprintln(stderr, "nexy:", err)
		return 1
	}
	// Deferred: runs after Serve has ended every turn and memory update, so
	// the writer is flushed before the database closes (SPEC §10).
	defer closeAll()
	srv, err := server.New(&cfg.Config, log, deps)
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
	// A failing public port stops the server too, with an error.
	ctx, fail := context.WithCancelCause(ctx)
	defer fail(nil)
	pub, err := openPublic(ctx, &cfg.Config, srv, log)
	if err != nil {
		fmt.Fprintln(stderr, "nexy:", err)
		return 1
	}
	pub.start(ctx, cfg.Limits.GracePeriod.Duration, fail)
	err = srv.Serve(ctx)
	pub.wait()
	if cause := context.Cause(ctx); err == nil && cause != nil && !errors.Is(cause, context.Canceled) {
		err = cause
	}
	if err != nil {
		fmt.Fprintln(stderr, "nexy:", err)
		return 1
	}
	return 0
}

// wire is the composition root: store, audio cache and providers, built from
// the config in that order; closeAll releases them in reverse.
func wire(cfg *config.Config, log *slog.Logger) (closeAll func(), deps server.Deps, err error) {
	var closers []func()
	closeAll = func() {
		for i := len(closers) - 1; i >= 0; i-- {
			closers[i]()
		}
	}
	defer func() {
		if err != nil {
			closeAll()
		}
	}()
	// One server per data dir; `nexy restore` takes the same lock, so it
	// cannot swap the file under a running server.
	unlock, err := store.LockDataDir(cfg.Server.DataDir)
	if err != nil {
		return nil, deps, err
	}
	closers = append(closers, unlock)
	dbPath := filepath.Join(cfg.Server.DataDir, store.FileName)
	db, err := store.Open(dbPath, store.Options{QueueSize: cfg.Store.Queue, Log: log})
	if err != nil {
		return nil, deps, err
	}
	// A fresh install has nothing to back up yet; once it holds history, an
	// unproven backup is worth a warning at every start.
	if has, err := db.HasHistory(context.Background()); err == nil && has {
		if warn := store.DrillWarning(context.Background(), db, time.Now()); warn != "" {
			log.Warn(warn, "scope", "store", "decision", "drill_overdue")
		}
	}
	closers = append(closers, func() {
		if err := db.Close(); err != nil {
			log.Error("Closing the database failed", "scope", "store", "decision", "close", "error", err.Error())
		}
		log.Info("Database closed", "scope", "store", "decision", "close", "path", dbPath)
	})
	deps.Store = db
	if n := cfg.Store.AudioCacheBytes; n > 0 {
		cache, err := store.OpenAudioCache(filepath.Join(cfg.Server.DataDir, store.AudioCacheFile), int64(n))
		if err != nil {
			return nil, deps, err
		}
		closers = append(closers, func() { _ = cache.Close() })
		deps.AudioCache = cache
	}
	feed, err := updates.Open(cfg.UpdatesDirectory(), updates.Options{PublicURL: cfg.Updates.PublicURL, BetaEnabled: cfg.Updates.BetaEnabled,
		PublicKeyFile: updates.PublicKeyFile(updates.DefaultKeyFile(cfg.Server.DataDir)), Log: log})
	if err != nil {
		return nil, deps, err
	}
	// The feed re-reads its manifests when `nexy release` changes them.
	watchCtx, stopWatch := context.WithCancel(context.Background())
	watched := make(chan struct{})
	go func() { defer close(watched); feed.Watch(watchCtx) }()
	closers = append(closers, func() { stopWatch(); <-watched })
	deps.Feed = feed
	// One transport for every HTTP provider: a warm connection spares a turn
	// the TCP and TLS handshakes before its first token and first audio. A
	// turn holds up to tts.lookahead speech calls to one host at once.
	transport := httpclient.NewTransport(cfg.Limits.MaxConcurrentStreams * max(cfg.TTS.Lookahead, 1))
	closers = append(closers, transport.Close)
	deps.HTTPStats = transport.Counts
	build := providers.Builder{HTTP: transport.Client()}
	if deps.LLM, deps.LLMMissing, err = build.LLM(cfg, log); err != nil {
		return nil, deps, err
	}
	if deps.TTS, err = build.TTS(cfg); err != nil {
		return nil, deps, err
	}
	if deps.TTSFallback, err = build.TTSFallback(cfg); err != nil {
		return nil, deps, err
	}
	log.Info("Store opened", "scope", "store", "decision", "open", "path", dbPath, "audio_cache_bytes", cfg.Store.AudioCacheBytes)
	return closeAll, deps, nil
}
