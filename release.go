package main

// The release commands: `nexy keys generate` makes the update signing key,
// `nexy release sign|publish|promote|show` put builds of the app into the
// update feed. They read the same configuration as serve (server.data_dir,
// updates.dir) and write the manifests the running server watches; the
// server itself only ever reads the public key.

import (
	"crypto/ed25519"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/nexy-server/nexy/config"
	"github.com/nexy-server/nexy/updates"
)

// ---- nexy keys ----

const keysUsage = `usage: nexy keys generate [--out FILE] [-config nexy.toml]

Makes the Ed25519 key that signs the app's updates. Prints the public key:
the app's Info.plist must carry it as SUPublicEDKey. Writes the private
key to FILE (default <server.data_dir>/update_key, mode 0600) as the base64
of its 32-byte seed, the format of Sparkle's generate_keys -x, so Sparkle's
sign_update --ed-key-file can use it too; and the public key to FILE.pub.
The server verifies releases with <server.data_dir>/update_key.pub and
never needs the private key: keep it elsewhere (--key) if you like.
Refuses to replace an existing key: apps trust only the key they shipped with.
`

func keysCmd(args []string, stdout, stderr io.Writer) int {
	if len(args) == 0 {
		fmt.Fprint(stderr, "nexy keys: say generate\n\n", keysUsage)
		return 2
	}
	switch args[0] {
	case "-h", "-help", "--help", "help":
		fmt.Fprint(stdout, keysUsage)
		return 0
	case "generate":
	default:
		fmt.Fprintf(stderr, "nexy keys: unknown action %q (generate)\n\n%s", args[0], keysUsage)
		return 2
	}
	fs, cfgPath := commandFlags("keys generate", keysUsage)
	out := fs.String("out", "", "write the private key to `FILE` and the public key to FILE.pub (default <data_dir>/update_key)")
	pos, code, ok := parseArgs(fs, args[1:], stdout, stderr)
	if !ok {
		return code
	}
	if len(pos) > 0 {
		return usageError(fs, stderr, "unexpected argument %q", pos[0])
	}
	path := *out
	if path == "" {
		cfg, err := loadConfig(*cfgPath, stderr)
		if err != nil {
			return fail(stderr, "keys generate", err)
		}
		path = updates.DefaultKeyFile(cfg.Server.DataDir)
	}
	pub, err := updates.GenerateKey(path)
	if err != nil {
		return fail(stderr, "keys generate", err)
	}
	// stdout is the key alone, so a script can capture it.
	fmt.Fprintln(stdout, updates.EncodePublicKey(pub))
	fmt.Fprintf(stderr, "nexy keys generate: wrote the private key to %s (keep it secret and backed up) and the public key to %s.\n"+
		"Add the public key (printed above) to the app's Info.plist:\n    <key>SUPublicEDKey</key>\n    <string>%s</string>\n",
		path, updates.PublicKeyFile(path), updates.EncodePublicKey(pub))
	return 0
}

// fail prints a command's error and returns exit code 1.
func fail(stderr io.Writer, name string, err error) int {
	fmt.Fprintf(stderr, "nexy %s: %v\n", name, err)
	return 1
}

// ---- nexy release ----

const releaseUsage = `usage: nexy release sign|publish|promote|show ... [-config nexy.toml]

  sign FILE [--key KEY]         print sparkle:edSignature="..." length="..." for
                                FILE, as Sparkle's sign_update does
  publish FILE --version V --build N --channel stable|beta
          [--notes URL] [--critical] [--min-os 13.0] [--phased SECONDS]
          [--url URL] [--key KEY]
                                sign FILE, check the signature with the server's
                                public key, copy FILE into <updates>/downloads/
                                (or, with --url, record where it is hosted) and
                                make it the channel's current release
  promote FROM TO               make FROM's current release (e.g. beta) TO's
                                current release (e.g. stable)
  show [--json]                 each channel's current release, and whether the
                                server can serve it

KEY defaults to <server.data_dir>/update_key (nexy keys generate). The
server verifies with <server.data_dir>/update_key.pub; manifests and
downloads live in updates.dir (default <server.data_dir>/updates), and a
running server picks changes up within a few seconds. Builds must strictly
increase per channel: the app updates only to a higher build, compared
with its CFBundleVersion.
`

func releaseCmd(args []string, stdout, stderr io.Writer) int {
	if len(args) == 0 {
		fmt.Fprint(stderr, "nexy release: say sign, publish, promote or show\n\n", releaseUsage)
		return 2
	}
	switch args[0] {
	case "-h", "-help", "--help", "help":
		fmt.Fprint(stdout, releaseUsage)
		return 0
	case "sign":
		return releaseSign(args[1:], stdout, stderr)
	case "publish":
		return releasePublish(args[1:], stdout, stderr)
	case "promote":
		return releasePromote(args[1:], stdout, stderr)
	case "show":
		return releaseShow(args[1:], stdout, stderr)
	}
	fmt.Fprintf(stderr, "nexy release: unknown action %q (sign, publish, promote or show)\n\n%s", args[0], releaseUsage)
	return 2
}

// releaseEnv is what the release commands find through the config.
type releaseEnv struct {
	cfg     *config.Loaded
	dir     string // updates directory
	pubFile string // the public key file the server verifies with
}

func loadReleaseEnv(cfgPath string, stderr io.Writer) (*releaseEnv, error) {
	cfg, err := loadConfig(cfgPath, stderr)
	if err != nil {
		return nil, err
	}
	return &releaseEnv{cfg: cfg, dir: cfg.UpdatesDirectory(),
		pubFile: updates.PublicKeyFile(updates.DefaultKeyFile(cfg.Server.DataDir))}, nil
}

// serverKey is the public key the server will verify with; a release it
// cannot verify would not be served, so publishing without it is refused.
func (e *releaseEnv) serverKey() (ed25519.PublicKey, error) {
	pub, err := updates.ReadPublicKey(e.pubFile)
	if err != nil {
		return nil, fmt.Errorf("the server's public key %s: %v (nexy keys generate writes it; with a key kept elsewhere, copy its .pub file there)", e.pubFile, err)
	}
	return pub, nil
}

func (e *releaseEnv) privateKey(flagValue string) (ed25519.PrivateKey, error) {
	path := flagValue
	if path == "" {
		path = updates.DefaultKeyFile(e.cfg.Server.DataDir)
	}
	priv, err := updates.ReadPrivateKey(path)
	if err != nil {
		return nil, fmt.Errorf("private key %s: %v", path, err)
	}
	return priv, nil
}

func releaseSign(args []string, stdout, stderr io.Writer) int {
	fs, cfgPath := commandFlags("release sign", "usage: nexy release sign FILE [--key KEY] [-config nexy.toml]\n\nPrints sparkle:edSignature=\"...\" length=\"...\" for FILE, as Sparkle's sign_update does.")
	key := fs.String("key", "", "the private key `FILE` (default <data_dir>/update_key)")
	pos, code, ok := parseArgs(fs, args, stdout, stderr)
	if !ok {
		return code
	}
	if len(pos) != 1 {
		return usageError(fs, stderr, "needs exactly one FILE to sign")
	}
	env, err := loadReleaseEnv(*cfgPath, stderr)
	if err != nil {
		return fail(stderr, fs.Name(), err)
	}
	priv, err := env.privateKey(*key)
	if err != nil {
		return fail(stderr, fs.Name(), err)
	}
	data, err := os.ReadFile(pos[0])
	if err != nil {
		return fail(stderr, fs.Name(), err)
	}
	s := updates.Sign(priv, data)
	fmt.Fprintf(stdout, "sparkle:edSignature=\"%s\" length=\"%d\"\n", s.EdSignature, s.Length)
	return 0
}

// publishFlags are publish's options.
type publishFlags struct {
	version, channel, notes, minOS, url, key string
	build, phased                            int64
	critical                                 bool
}

const publishUsage = `usage: nexy release publish FILE --version V --build N --channel stable|beta [options] [-config nexy.toml]

Signs FILE, checks the signature with the server's public key
(<server.data_dir>/update_key.pub), copies FILE into <updates>/downloads/
(or, with --url, records where it is hosted) and makes it the channel's
current release. Refuses a build not above the channel's current build, and
a download name that already holds other bytes.
`

func releasePublish(args []string, stdout, stderr io.Writer) int {
	fs, cfgPath := commandFlags("release publish", publishUsage)
	var p publishFlags
	fs.StringVar(&p.version, "version", "", "the version people see (CFBundleShortVersionString), e.g. `1.7.0`")
	fs.Int64Var(&p.build, "build", 0, "the build (CFBundleVersion, an integer), above the channel's current `N`")
	fs.StringVar(&p.channel, "channel", "", "the `CHANNEL`: stable or beta")
	fs.StringVar(&p.notes, "notes", "", "release notes page `URL` (HTML or Markdown)")
	fs.BoolVar(&p.critical, "critical", false, "a critical update: shown at once, cannot be skipped")
	fs.StringVar(&p.minOS, "min-os", "", "the oldest macOS `VERSION` the build runs on, e.g. 13.0")
	fs.Int64Var(&p.phased, "phased", 0, "phased rollout: `SECONDS` between Sparkle's 7 groups (0 = everyone at once)")
	fs.StringVar(&p.url, "url", "", "the artifact is hosted at `URL`; FILE only provides length, hash and signature")
	fs.StringVar(&p.key, "key", "", "the private key `FILE` (default <data_dir>/update_key)")
	pos, code, ok := parseArgs(fs, args, stdout, stderr)
	if !ok {
		return code
	}
	switch {
	case len(pos) != 1:
		return usageError(fs, stderr, "needs exactly one FILE to publish")
	case p.version == "" || p.build == 0 || p.channel == "":
		return usageError(fs, stderr, "--version, --build and --channel are required")
	case !updates.ValidChannel(p.channel):
		return usageError(fs, stderr, "--channel %q: want stable or beta", p.channel)
	}
	env, err := loadReleaseEnv(*cfgPath, stderr)
	if err != nil {
		return fail(stderr, fs.Name(), err)
	}
	if err := publish(env, pos[0], p, stdout, stderr); err != nil {
		return fail(stderr, fs.Name(), err)
	}
	return 0
}

func publish(env *releaseEnv, file string, p publishFlags, stdout, stderr io.Writer) error {
	priv, err := env.privateKey(p.key)
	if err != nil {
		return err
	}
	pub, err := env.serverKey()
	if err != nil {
		return err
	}
	data, err := os.ReadFile(file)
	if err != nil {
		return err
	}
	rel := updates.Release{Version: p.version, Build: p.build, URL: p.url, Critical: p.critical,
		PhasedRolloutInterval: p.phased, ReleaseNotesLink: p.notes, MinimumSystemVersion: p.minOS}
	if p.url == "" {
		rel.File = filepath.Base(file)
	}
	warnExtension(stderr, rel)
	r, err := updates.Publish(env.dir, updates.PublishRequest{Channel: p.channel, Artifact: data, Release: rel,
		Key: priv, PublicKey: pub, Now: time.Now()})
	if err != nil {
		return err
	}
	fmt.Fprintf(stdout, "published %s (build %d) on %s\n", r.Version, r.Build, p.channel)
	printRelease(stdout, "  ", env.dir, &r)
	if p.channel == updates.Beta && !env.cfg.Updates.BetaEnabled {
		fmt.Fprintln(stdout, "note: updates.beta_enabled is off, so /updates/appcast-beta.xml answers 404 until it is on")
	}
	fmt.Fprintln(stdout, "a running server serves it within a few seconds (nexy release show checks it)")
	return nil
}

// warnExtension: the shipped client picks its installer from the URL's
// extension and treats anything unknown as a .pkg.
func warnExtension(stderr io.Writer, r updates.Release) {
	name := r.File
	if name == "" {
		name = r.URL
	}
	for _, ext := range []string{".dmg", ".pkg", ".zip"} {
		if strings.HasSuffix(strings.ToLower(name), ext) {
			return
		}
	}
	fmt.Fprintf(stderr, "nexy release publish: warning: %s does not end in .dmg, .pkg or .zip; the shipped client installs it as a .pkg\n", name)
}

func releasePromote(args []string, stdout, stderr io.Writer) int {
	fs, cfgPath := commandFlags("release promote", "usage: nexy release promote FROM TO [-config nexy.toml]\n\nMakes FROM's current release (e.g. beta) TO's current release (e.g. stable), dated now.")
	pos, code, ok := parseArgs(fs, args, stdout, stderr)
	if !ok {
		return code
	}
	if len(pos) != 2 {
		return usageError(fs, stderr, "needs FROM and TO, e.g. beta stable")
	}
	env, err := loadReleaseEnv(*cfgPath, stderr)
	if err != nil {
		return fail(stderr, fs.Name(), err)
	}
	pub, err := env.serverKey()
	if err != nil {
		return fail(stderr, fs.Name(), err)
	}
	r, err := updates.Promote(env.dir, pos[0], pos[1], pub, time.Now())
	if err != nil {
		return fail(stderr, fs.Name(), err)
	}
	fmt.Fprintf(stdout, "promoted %s (build %d) from %s to %s\n", r.Version, r.Build, pos[0], pos[1])
	printRelease(stdout, "  ", env.dir, &r)
	return 0
}

// printRelease describes a release in a few indented lines.
func printRelease(w io.Writer, indent, dir string, r *updates.Release) {
	if r.File != "" {
		fmt.Fprintf(w, "%sfile      %s\n", indent, filepath.Join(dir, updates.DownloadsDir, r.File))
	} else {
		fmt.Fprintf(w, "%surl       %s\n", indent, r.URL)
	}
	fmt.Fprintf(w, "%slength    %d (%s)\n%ssha256    %s\n", indent, r.Length, humanBytes(r.Length), indent, r.SHA256)
	fmt.Fprintf(w, "%ssignature %s\n%sdate      %s\n", indent, r.EdSignature, indent, r.PubDate.UTC().Format(time.RFC1123Z))
	var opts []string
	if r.Critical {
		opts = append(opts, "critical")
	}
	if r.PhasedRolloutInterval > 0 {
		opts = append(opts, fmt.Sprintf("phased rollout every %s", time.Duration(r.PhasedRolloutInterval)*time.Second))
	}
	if r.MinimumSystemVersion != "" {
		opts = append(opts, "macOS "+r.MinimumSystemVersion+"+")
	}
	if r.ReleaseNotesLink != "" {
		opts = append(opts, "notes "+r.ReleaseNotesLink)
	}
	if len(opts) > 0 {
		fmt.Fprintf(w, "%soptions   %s\n", indent, strings.Join(opts, ", "))
	}
}

// showJSON is `nexy release show --json`.
type showJSON struct {
	UpdatesDir string        `json:"updates_dir"`
	PublicKey  string        `json:"public_key,omitempty"`
	Degraded   bool          `json:"degraded"`
	Reason     string        `json:"reason,omitempty"`
	Channels   []showChannel `json:"channels"`
}

type showChannel struct {
	Channel string           `json:"channel"`
	Enabled bool             `json:"enabled"`
	Current *updates.Release `json:"current"` // the manifest's newest release, null when none
	Served  bool             `json:"served"`  // the server can verify and serve Current
	Listed  int              `json:"listed"`
	Error   string           `json:"error,omitempty"` // the manifest does not parse
}

func releaseShow(args []string, stdout, stderr io.Writer) int {
	fs, cfgPath := commandFlags("release show", "usage: nexy release show [--json] [-config nexy.toml]\n\nEach channel's current release, checked as the server checks it (length, sha256, signature).")
	asJSON := fs.Bool("json", false, "print JSON")
	pos, code, ok := parseArgs(fs, args, stdout, stderr)
	if !ok {
		return code
	}
	if len(pos) > 0 {
		return usageError(fs, stderr, "unexpected argument %q", pos[0])
	}
	env, err := loadReleaseEnv(*cfgPath, stderr)
	if err != nil {
		return fail(stderr, fs.Name(), err)
	}
	rep, err := buildShow(env)
	if err != nil {
		return fail(stderr, fs.Name(), err)
	}
	if *asJSON {
		if err := printJSON(stdout, rep); err != nil {
			return fail(stderr, fs.Name(), err)
		}
		return 0
	}
	printShow(stdout, env, rep)
	return 0
}

// buildShow checks the channels exactly as the server would (both, even a
// disabled beta: it may be promoted from).
func buildShow(env *releaseEnv) (showJSON, error) {
	feed, err := updates.Open(env.dir, updates.Options{BetaEnabled: true, PublicKeyFile: env.pubFile})
	if err != nil {
		return showJSON{}, err
	}
	st := feed.State()
	rep := showJSON{UpdatesDir: env.dir, PublicKey: st.PublicKey, Degraded: st.Degraded, Reason: st.Reason}
	for _, ch := range updates.Channels {
		sc := showChannel{Channel: ch, Enabled: ch == updates.Stable || env.cfg.Updates.BetaEnabled}
		m, err := updates.ReadManifest(env.dir, ch)
		if err != nil {
			sc.Error = err.Error()
		} else if cur := m.Current(); cur != nil {
			sc.Current, sc.Listed = cur, len(m.Releases)
			served := feed.Releases(ch)
			sc.Served = len(served) > 0 && served[0].Build == cur.Build
		}
		rep.Channels = append(rep.Channels, sc)
	}
	return rep, nil
}

func printShow(w io.Writer, env *releaseEnv, rep showJSON) {
	key := rep.PublicKey
	if key == "" {
		key = "none (" + env.pubFile + " missing: nexy keys generate)"
	}
	fmt.Fprintf(w, "updates directory %s\npublic key (SUPublicEDKey) %s\n", rep.UpdatesDir, key)
	for _, c := range rep.Channels {
		state := ""
		if !c.Enabled {
			state = " (disabled: updates.beta_enabled = false)"
		}
		switch {
		case c.Error != "":
			fmt.Fprintf(w, "\n%s%s: manifest error: %s\n", c.Channel, state, c.Error)
		case c.Current == nil:
			fmt.Fprintf(w, "\n%s%s: nothing published\n", c.Channel, state)
		default:
			served := "served"
			if !c.Served {
				served = "NOT served (see problems)"
			}
			fmt.Fprintf(w, "\n%s%s: %s (build %d), %s; %d release(s) listed\n", c.Channel, state, c.Current.Version, c.Current.Build, served, c.Listed)
			printRelease(w, "  ", env.dir, c.Current)
		}
	}
	if rep.Degraded {
		fmt.Fprintf(w, "\nproblems (the server's feed is degraded):\n  %s\n", strings.ReplaceAll(rep.Reason, "; ", "\n  "))
	}
}
