// Command nexy is a self-hosted server for the Nexy voice assistant, and a
// small client to try it.
//
//	nexy serve [-config nexy.toml]   run the server
//	nexy ask [flags] "question"      ask a running server, print the answer, save the speech
//	nexy version                     print the version
//	nexy doctor [--json]             check the config, providers, TLS and ports
//	nexy bench [flags]               load-test a server (or a child it starts) with fake providers
package main

import (
	"bytes"
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/signal"
	"syscall"

	"github.com/nexy-server/nexy/internal/buildinfo"
)

func main() {
	os.Exit(run(os.Args[1:], os.Stdout, os.Stderr))
}

const usage = `nexy — a self-hosted server for the Nexy voice assistant

usage:
  nexy serve [-config nexy.toml]   run the server (no config file: safe local defaults)
  nexy ask [flags] "question"      ask a running server; prints text, action and timings,
                                   writes the speech to a WAV file (nexy ask -h for flags)
  nexy version                     print the version, commit and Go version
  nexy doctor [--json]             check config, data dir, database, LLM, TTS, TLS, the public
                                   port and keepalive; exit 1 if any check fails (nexy doctor -h)
  nexy bench [flags]               load-test a server like many devices at once: latency per stage,
                                   turns/s, CPU and memory, against fake providers (nexy bench -h;
                                   nexy bench --targets runs the performance targets)

the history (each reads the same config as serve; -config nexy.toml):
  nexy memory show|export|forget HARDWARE_ID      a device's memory: show it, export it as JSON,
                                                  or forget it (facts retired, rows kept)
  nexy usage [--since 7d] [--device ID] [--json]  tokens and estimated cost per device, source, model
  nexy backup [--out FILE]         a checked copy of the history, safe while the server runs
  nexy restore FILE [--force]      replace the history with a checked backup (server stopped)
  nexy drill                       prove the newest backup restores; the result is recorded

the devices (same config; nexy devices -h; a change applies from the device's next request):
  nexy devices list [--json]       every device: status, first request, today's use and limits
  nexy devices approve|revoke ID   let a device ask, or refuse it (also ahead of its first request)
  nexy devices rename ID NAME...   name a device
  nexy devices limit ID [--turns N] [--tokens N] [--default]
                                   its daily limits (0 = unlimited; --default = the quotas.*)
  nexy devices token ID [--remove] give it a bearer token, printed once; or remove its token

the app's update feed (same config; nexy keys -h, nexy release -h):
  nexy keys generate [--out FILE]  make the update signing key; prints SUPublicEDKey
  nexy release sign FILE           print sparkle:edSignature and length, as sign_update
  nexy release publish FILE --version V --build N --channel stable|beta [...]
                                   sign, verify and publish a build of the app
  nexy release promote beta stable make beta's current release stable's
  nexy release show [--json]       each channel's current release, checked
`

func run(args []string, stdout, stderr io.Writer) int {
	if len(args) == 0 {
		fmt.Fprint(stderr, usage)
		return 2
	}
	switch args[0] {
	case "serve":
		return serve(args[1:], stdout, stderr)
	case "ask":
		ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
		defer stop()
		return ask(ctx, args[1:], stdout, stderr)
	case "memory":
		return memoryCmd(args[1:], stdout, stderr)
	case "usage":
		return usageCmd(args[1:], stdout, stderr)
	case "backup":
		return backupCmd(args[1:], stdout, stderr)
	case "restore":
		return restoreCmd(args[1:], stdout, stderr)
	case "drill":
		return drillCmd(args[1:], stdout, stderr)
	case "devices":
		return devicesCmd(args[1:], stdout, stderr)
	case "keys":
		return keysCmd(args[1:], stdout, stderr)
	case "release":
		return releaseCmd(args[1:], stdout, stderr)
	case "doctor":
		return doctorCmd(args[1:], stdout, stderr)
	case "bench":
		return bench(args[1:], stdout, stderr)
	case "version":
		if len(args) > 1 {
			fmt.Fprintf(stderr, "nexy version: unexpected argument %q\n", args[1])
			return 2
		}
		fmt.Fprintln(stdout, "nexy", buildinfo.Current().String())
		return 0
	case "help", "-h", "-help", "--help":
		fmt.Fprint(stdout, usage)
		return 0
	default:
		fmt.Fprintf(stderr, "nexy: unknown command %q\n\n%s", args[0], usage)
		return 2
	}
}

// stopOnSignal returns a context cancelled by the first SIGTERM or SIGINT,
// and logs which one started the shutdown. After it a second signal is no
// longer caught, so it ends the process at once (an impatient Ctrl-C).
// The returned stop releases the signals and the goroutine watching them.
func stopOnSignal(log *slog.Logger) (ctx context.Context, stop func()) {
	ctx, cancel := context.WithCancel(context.Background())
	sigs := make(chan os.Signal, 1)
	signal.Notify(sigs, os.Interrupt, syscall.SIGTERM)
	done := make(chan struct{})
	go func() {
		defer close(done)
		select {
		case sig := <-sigs:
			signal.Stop(sigs)
			log.Info("Signal received: shutting down (a second signal stops at once)", "scope", "server", "decision", "signal", "signal", sig.String())
			cancel()
		case <-ctx.Done():
		}
	}()
	return ctx, func() { signal.Stop(sigs); cancel(); <-done }
}

// parseFlags parses args; -h/-help/--help prints the usage to stdout (exit 0),
// a bad flag prints the error and the usage to stderr (exit 2). ok is false
// when the command should stop with code.
func parseFlags(fs *flag.FlagSet, args []string, stdout, stderr io.Writer) (code int, ok bool) {
	var msg bytes.Buffer
	fs.SetOutput(&msg)
	err := fs.Parse(args)
	switch {
	case errors.Is(err, flag.ErrHelp):
		fs.SetOutput(stdout)
		fs.Usage()
		return 0, false
	case err != nil:
		// flag printed "flag provided but not defined: -x" and the usage.
		fmt.Fprintf(stderr, "nexy %s: %s", fs.Name(), msg.String())
		return 2, false
	}
	fs.SetOutput(stderr)
	return 0, true
}
