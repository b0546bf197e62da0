package tts

import (
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os/exec"
	"regexp"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/nexy-server/nexy/audio"
)

// Command output formats.
const (
	CommandFormatWAV = "wav" // default: espeak-ng --stdout, piper --output_file /dev/stdout
	CommandFormatRaw = "raw" // s16le mono at SampleRate: piper --output-raw
)

const (
	commandWaitDelay = 2 * time.Second // after a kill, how long stray pipe holders may linger
	commandStderrMax = 4 << 10         // stderr bytes kept for error messages
	commandMaxArg    = 100 << 10       // text bytes allowed inside one argv element
)

var commandVoiceRe = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9_.+:@-]{0,99}$`)

// CommandConfig configures a local TTS program that writes audio to stdout.
type CommandConfig struct {
	// Command is the program and its arguments, split with shell-like quoting
	// ('…', "…", \x) but never run through a shell. {text} and {voice} are
	// replaced inside arguments; without {text} the text is written to stdin.
	// Examples: "espeak-ng --stdout -v {voice}",
	// "piper --model /voices/en_US-lessac-medium.onnx --output-raw".
	Command       string
	Format        string        // "wav" (default) or "raw"
	SampleRate    int           // rate of "raw" output (required for raw), e.g. 22050
	Voice         string        // default for {voice}
	Timeout       time.Duration // whole call incl. reading the stream; 0 = 30 s
	MaxAudioBytes int64         // stdout bytes accepted per call; 0 = 32 MiB
}

// Command speaks by running a local program (piper, espeak-ng, …) per call.
type Command struct {
	cfg      CommandConfig
	path     string   // resolved program
	args     []string // arguments with placeholders still in
	stdin    bool     // text goes to stdin (no {text} in args)
	useVoice bool
}

// NewCommand validates cfg, resolves the program on PATH and returns the provider.
func NewCommand(cfg CommandConfig) (*Command, error) {
	argv, err := SplitCommand(cfg.Command)
	if err != nil {
		return nil, errorf("command", "Command: %w", err)
	}
	if len(argv) == 0 {
		return nil, errorf("command", "Command is empty")
	}
	if strings.Contains(argv[0], "{") {
		return nil, errorf("command", "Command: the program name %q may not contain a placeholder", argv[0])
	}
	path, err := exec.LookPath(argv[0])
	if err != nil {
		return nil, startErr(fmt.Errorf("Command: %w", err))
	}
	c := &Command{cfg: cfg, path: path, args: argv[1:], stdin: true, useVoice: CommandUsesVoice(argv)}
	for _, a := range c.args {
		c.stdin = c.stdin && !strings.Contains(a, "{text}")
	}
	switch c.cfg.Format {
	case "":
		c.cfg.Format = CommandFormatWAV
	case CommandFormatWAV:
	case CommandFormatRaw:
		if cfg.SampleRate < 8000 || cfg.SampleRate > 192000 {
			return nil, errorf("command", "SampleRate %d: raw output needs the program's rate (8000…192000)", cfg.SampleRate)
		}
	default:
		return nil, errorf("command", "Format %q: want \"wav\" or \"raw\"", cfg.Format)
	}
	if c.useVoice && !validCommandVoice(cfg.Voice) {
		return nil, errorf("command", "Voice %q: Command uses {voice}, so a voice name of letters, digits and _.+:@- is required", truncate(cfg.Voice, 80))
	}
	if err := commonLimits("command", &c.cfg.Timeout, &c.cfg.MaxAudioBytes); err != nil {
		return nil, err
	}
	return c, nil
}

func validCommandVoice(v string) bool {
	return commandVoiceRe.MatchString(v) && !strings.Contains(v, "..")
}

// Name implements Synthesizer.
func (c *Command) Name() string { return "command" }

// Synthesize implements Synthesizer: one process per call, killed when ctx
// ends or the stream is closed; a non-zero exit is a Read error carrying the
// program's stderr.
func (c *Command) Synthesize(ctx context.Context, req Request) (io.ReadCloser, error) {
	text := strings.Join(strings.Fields(strings.ToValidUTF8(req.Text, " ")), " ")
	if text == "" {
		return nil, badRequestf("command", "empty text")
	}
	voice := req.Voice
	if voice == "" {
		voice = c.cfg.Voice
	}
	if c.useVoice && !validCommandVoice(voice) {
		return nil, badRequestf("command", "voice %q: want letters, digits and _.+:@-", truncate(voice, 80))
	}
	if !c.stdin && len(text) > commandMaxArg {
		return nil, badRequestf("command", "text of %d bytes is too long for a command-line argument (max %d); leave {text} out to use stdin", len(text), commandMaxArg)
	}
	callCtx, cancel := context.WithTimeout(ctx, c.cfg.Timeout)
	cmd := exec.CommandContext(callCtx, c.path, c.expand(text, voice)...)
	cmd.WaitDelay = commandWaitDelay
	killGroup(cmd)
	stderr := &tailBuffer{max: commandStderrMax}
	cmd.Stderr = stderr
	if c.stdin {
		cmd.Stdin = strings.NewReader(text + "\n")
	}
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		cancel()
		return nil, errorf("command", "%w", err)
	}
	if err := cmd.Start(); err != nil {
		cancel()
		return nil, startErr(fmt.Errorf("start %s: %w", c.path, err))
	}
	enc, format := audio.WAV, audio.Format{}
	if c.cfg.Format == CommandFormatRaw {
		enc, format = audio.PCM16, audio.Format{SampleRate: c.cfg.SampleRate, Channels: 1}
	}
	proc := &procWait{cmd: cmd, wrap: func(err error) error { return c.exitErr(callCtx, err, stderr) }}
	src := &capReader{r: &procReader{r: stdout, proc: proc}, name: "command", max: c.cfg.MaxAudioBytes}
	pcm, err := audio.Decode(src, enc, format)
	if err != nil {
		cancel()
		proc.wait()
		return nil, errorf("command", "decoder: %w", err)
	}
	return newPCMStream("command", &ctxErrReader{r: pcm, ctx: callCtx, name: "command", timeout: c.cfg.Timeout}, cancel, nil, proc.wait, proc.cause), nil
}

// procWait reaps the process once and remembers how it ended.
type procWait struct {
	cmd  *exec.Cmd
	wrap func(error) error
	once sync.Once
	done atomic.Bool
	err  error
}

func (p *procWait) wait() error {
	p.once.Do(func() {
		if err := p.cmd.Wait(); err != nil {
			p.err = p.wrap(err)
		}
		p.done.Store(true)
	})
	return p.err
}

// cause is the exit error if the process has already been reaped.
func (p *procWait) cause() error {
	if p.done.Load() {
		return p.err
	}
	return nil
}

// procReader reads stdout and, at its end, reaps the process: a failed exit
// replaces EOF, so the decoder reports the program's error (with its stderr)
// rather than "truncated WAV".
type procReader struct {
	r    io.Reader
	proc *procWait
}

func (p *procReader) Read(b []byte) (int, error) {
	n, err := p.r.Read(b)
	if err == io.EOF {
		if werr := p.proc.wait(); werr != nil {
			return n, werr
		}
	}
	return n, err
}

// expand substitutes the placeholders. Substitution happens after splitting,
// so text can never become extra arguments; text standing alone as an
// argument gets a leading space if it would otherwise look like an option.
func (c *Command) expand(text, voice string) []string {
	out := make([]string, len(c.args))
	for i, a := range c.args {
		t := text
		if a == "{text}" && strings.HasPrefix(t, "-") {
			t = " " + t
		}
		out[i] = strings.ReplaceAll(strings.ReplaceAll(a, "{voice}", voice), "{text}", t)
	}
	return out
}

// startErr classifies a program that cannot be run. One that is missing or
// not executable (exec.ErrNotFound, fs.ErrNotExist, fs.ErrPermission) is a
// setting the operator must fix, and retrying cannot help. None of the
// shared kinds names "local misconfiguration": Auth would send the operator
// to a key this provider does not have, and Unavailable is retried, so it is
// fault.BadRequest (not retryable) with a message naming tts.command. Any
// other start failure (fork limits, out of memory) is Unavailable, as is a
// program that runs and exits with an error (exitErr): those may pass.
func startErr(err error) error {
	if errors.Is(err, exec.ErrNotFound) || errors.Is(err, fs.ErrNotExist) || errors.Is(err, fs.ErrPermission) {
		return badRequestf("command", "%w (check tts.command)", err)
	}
	return named("command", err)
}

func (c *Command) exitErr(ctx context.Context, err error, stderr *tailBuffer) error {
	if ctx.Err() != nil {
		return timeoutErr("command", ctx, c.cfg.Timeout, ctx.Err())
	}
	msg := strings.Join(strings.Fields(stderr.String()), " ")
	if msg == "" {
		return errorf("command", "%s: %w", c.path, err)
	}
	return errorf("command", "%s: %w: %s", c.path, err, msg)
}

// tailBuffer keeps the last max bytes written to it (error messages are
// usually at the end of stderr).
type tailBuffer struct {
	max int
	b   []byte
	cut bool
}

func (t *tailBuffer) Write(p []byte) (int, error) {
	t.b = append(t.b, p...)
	if over := len(t.b) - t.max; over > 0 {
		t.b = append(t.b[:0], t.b[over:]...)
		t.cut = true
	}
	return len(p), nil
}

func (t *tailBuffer) String() string {
	s := strings.ToValidUTF8(string(t.b), "")
	if t.cut {
		return "…" + s
	}
	return s
}

// SplitCommand splits a command line into arguments the way a POSIX shell
// would for plain words and quoting: whitespace separates, '…' is literal,
// "…" allows \" and \\, a backslash outside quotes escapes the next
// character. Unquoted shell operators are refused, since no shell runs them.
func SplitCommand(s string) ([]string, error) {
	var (
		args  []string
		cur   strings.Builder
		inArg bool
	)
	for i := 0; i < len(s); i++ {
		ch := s[i]
		switch {
		case ch == ' ' || ch == '\t' || ch == '\n' || ch == '\r':
			if inArg {
				args = append(args, cur.String())
				cur.Reset()
				inArg = false
			}
		case ch == '\'':
			end := strings.IndexByte(s[i+1:], '\'')
			if end < 0 {
				return nil, errors.New("unterminated single quote")
			}
			cur.WriteString(s[i+1 : i+1+end])
			i += end + 1
			inArg = true
		case ch == '"':
			n, err := readDoubleQuoted(s[i+1:], &cur)
			if err != nil {
				return nil, err
			}
			i += n + 1
			inArg = true
		case ch == '\\':
			if i+1 >= len(s) {
				return nil, errors.New("trailing backslash")
			}
			i++
			cur.WriteByte(s[i])
			inArg = true
		case strings.IndexByte("|&;<>`", ch) >= 0:
			return nil, fmt.Errorf("shell operator %q is not supported (no shell is run); quote it, or run a shell explicitly: sh -c '…'", ch)
		default:
			cur.WriteByte(ch)
			inArg = true
		}
	}
	if inArg {
		args = append(args, cur.String())
	}
	return args, nil
}

// readDoubleQuoted copies the inside of a "…" string (s starts after the
// opening quote) to cur and returns the index of the closing quote.
func readDoubleQuoted(s string, cur *strings.Builder) (int, error) {
	for j := 0; j < len(s); j++ {
		switch s[j] {
		case '"':
			return j, nil
		case '\\':
			if j+1 < len(s) && (s[j+1] == '"' || s[j+1] == '\\') {
				j++
			}
		}
		cur.WriteByte(s[j])
	}
	return 0, errors.New("unterminated double quote")
}
