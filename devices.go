package main

// nexy devices: the owner's view of the devices table (who asked, who
// waits for approval, who may ask how much) and its changes. The running
// server reads the table's change number on every request, so a change made
// here applies to its next request; revoking also stops the device's
// running answers within devices.poll_interval.

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"flag"
	"fmt"
	"io"
	"sort"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"
	"unicode"
	"unicode/utf8"

	"github.com/nexy-server/nexy/config"
	"github.com/nexy-server/nexy/server"
	"github.com/nexy-server/nexy/store"
)

const devicesUsage = `usage: nexy devices ACTION [flags] [-config nexy.toml]

  list [--json]                  every device: status, first request, today's use
                                 against its daily limits, whether it has a token;
                                 pending devices first under devices.pairing = "approve"
  approve ID                     let the device ask (under pairing "approve" a new
                                 device waits as pending until approved)
  revoke ID                      refuse the device from now on; its running answers stop
  rename ID NAME...              name the device (the words are joined by spaces)
  limit ID [--turns N] [--tokens N] [--default]
                                 the device's daily limits: N turns or tokens a day,
                                 0 = unlimited; --default follows quotas.daily_turns
                                 and quotas.daily_tokens again
  token ID [--remove]            give the device a new bearer token, printed once (the
                                 old one stops working), or remove its token

ID is the device's hardware id, as nexy devices list shows it whole. A device
never seen can be approved, revoked, named, limited or given a token ahead of
its first request. The running server applies a change from the device's
next request on; a revoked device's running answers stop within
devices.poll_interval.
`

// maxDeviceName bounds a device's name, in characters.
const maxDeviceName = 100

func devicesCmd(args []string, stdout, stderr io.Writer) int {
	if len(args) == 0 {
		fmt.Fprint(stderr, "nexy devices: say list, approve, revoke, rename, limit or token\n\n", devicesUsage)
		return 2
	}
	action := args[0]
	switch action {
	case "-h", "-help", "--help", "help":
		fmt.Fprint(stdout, devicesUsage)
		return 0
	case "list":
		return devicesList(args[1:], stdout, stderr)
	case "approve", "revoke":
		return devicesStatus(action, args[1:], stdout, stderr)
	case "rename":
		return devicesRename(args[1:], stdout, stderr)
	case "limit":
		return devicesLimit(args[1:], stdout, stderr)
	case "token":
		return devicesToken(args[1:], stdout, stderr)
	}
	fmt.Fprintf(stderr, "nexy devices: unknown action %q (list, approve, revoke, rename, limit or token)\n\n%s", action, devicesUsage)
	return 2
}

// checkDeviceID accepts what the server accepts as a hardware id
// (server.ValidID, and not "unknown"), saying what is wrong.
func checkDeviceID(id string, maxLen int) error {
	if id == "" {
		return errors.New("the hardware id is empty")
	}
	if strings.EqualFold(strings.TrimSpace(id), "unknown") {
		return fmt.Errorf("%q is not a hardware id: the server refuses it from every client", id)
	}
	if len(id) > maxLen {
		return fmt.Errorf("the hardware id is %d characters; the server accepts at most %d (limits.max_id_length)", len(id), maxLen)
	}
	if !server.ValidID(id, maxLen) {
		return fmt.Errorf("%q is not a hardware id: the server accepts only the characters A-Z a-z 0-9 . _ : - (nexy devices list shows the ids)", id)
	}
	return nil
}

// checkDeviceName accepts printable text of at most maxDeviceName characters.
func checkDeviceName(name string) error {
	switch {
	case name == "":
		return errors.New("the name is empty")
	case !utf8.ValidString(name):
		return errors.New("the name is not valid UTF-8 text")
	case strings.IndexFunc(name, unicode.IsControl) >= 0:
		return errors.New("the name contains control characters (tabs, newlines, escapes); use plain text")
	case utf8.RuneCountInString(name) > maxDeviceName:
		return fmt.Errorf("the name is %d characters; at most %d", utf8.RuneCountInString(name), maxDeviceName)
	}
	return nil
}

// changeDevice checks the id, applies the change made by change (which
// sees the device as it is, or ErrNoDevice's zero Device with ahead =
// true) and prints the device's new state and when the server applies it.
func changeDevice(fs *flag.FlagSet, cfgPath, id string, stdout, stderr io.Writer,
	change func(cur store.Device, ahead bool) (store.DeviceChange, error), after func(w io.Writer, cfg *config.Loaded, d store.Device, ahead bool)) int {
	return withStore(fs.Name(), cfgPath, stderr, func(ctx context.Context, cfg *config.Loaded, db *store.DB) error {
		if err := checkDeviceID(id, cfg.Limits.MaxIDLength); err != nil {
			return err
		}
		cur, err := db.Device(ctx, id)
		ahead := errors.Is(err, store.ErrNoDevice)
		if err != nil && !ahead {
			return err
		}
		c, err := change(cur, ahead)
		if err != nil {
			return err
		}
		d, err := db.ChangeDevice(ctx, id, c, time.Now())
		if err != nil {
			return err
		}
		fmt.Fprintln(stdout, deviceLine(cfg, d))
		if after != nil {
			after(stdout, cfg, d, ahead)
		}
		fmt.Fprintf(stdout, "the running server applies it from the device's next request on\n")
		return nil
	})
}

// deviceLine is a device's state in one line.
func deviceLine(cfg *config.Loaded, d store.Device) string {
	name := "no name"
	if d.Name != "" {
		name = "name " + strconv.Quote(d.Name)
	}
	token := "no"
	if d.TokenSHA256 != "" {
		token = "yes"
	}
	return fmt.Sprintf("device %s: %s, %s, daily turns %s, daily tokens %s, token %s", d.HardwareID, d.Status, name,
		limitText(d.DailyTurns, cfg.Quotas.DailyTurns), limitText(d.DailyTokens, cfg.Quotas.DailyTokens), token)
}

// limitText is a daily limit: the device's own, or the default marked so.
func limitText(own *int64, def int) string {
	if own != nil {
		return limitNumber(*own)
	}
	return limitNumber(int64(def)) + " (default)"
}

func limitNumber(n int64) string {
	if n == 0 {
		return "∞"
	}
	return strconv.FormatInt(n, 10)
}

// effectiveLimit is a device's daily limit: its own, else the default (0 = none).
func effectiveLimit(own *int64, def int) int64 {
	if own != nil {
		return *own
	}
	return int64(def)
}

func aheadNote(w io.Writer, what string) {
	fmt.Fprintf(w, "not seen yet: %s ahead of its first request (nexy devices list shows the ids seen)\n", what)
}

func oneID(fs *flag.FlagSet, pos []string, stderr io.Writer) (string, int, bool) {
	if len(pos) != 1 {
		return "", usageError(fs, stderr, "needs exactly one hardware ID"), false
	}
	return pos[0], 0, true
}

// ---- approve, revoke ----

func devicesStatus(action string, args []string, stdout, stderr io.Writer) int {
	fs, cfgPath := commandFlags("devices "+action, devicesUsage)
	pos, code, ok := parseArgs(fs, args, stdout, stderr)
	if !ok {
		return code
	}
	id, code, ok := oneID(fs, pos, stderr)
	if !ok {
		return code
	}
	status, done := store.DeviceApproved, "approved"
	if action == "revoke" {
		status, done = store.DeviceRevoked, "revoked"
	}
	return changeDevice(fs, *cfgPath, id, stdout, stderr, func(store.Device, bool) (store.DeviceChange, error) {
		return store.DeviceChange{Status: &status}, nil
	}, func(w io.Writer, cfg *config.Loaded, d store.Device, ahead bool) {
		if ahead {
			aheadNote(w, done)
		}
		switch {
		case action == "revoke":
			fmt.Fprintln(w, "it is refused from its next request on, and its running answers stop; nexy devices approve lets it back")
		case cfg.Devices.Pairing == "open":
			fmt.Fprintln(w, `devices.pairing = "open": every device that is not revoked is answered, approved or not`)
		case d.TokenSHA256 != "":
			fmt.Fprintln(w, "it has a token: its requests must carry it")
		}
	})
}

// ---- rename ----

func devicesRename(args []string, stdout, stderr io.Writer) int {
	fs, cfgPath := commandFlags("devices rename", devicesUsage)
	pos, code, ok := parseArgs(fs, args, stdout, stderr)
	if !ok {
		return code
	}
	if len(pos) < 2 {
		return usageError(fs, stderr, "needs a hardware ID and a NAME")
	}
	id, name := pos[0], strings.TrimSpace(strings.Join(pos[1:], " "))
	if err := checkDeviceName(name); err != nil {
		fmt.Fprintf(stderr, "nexy %s: %v\n", fs.Name(), err)
		return 1
	}
	return changeDevice(fs, *cfgPath, id, stdout, stderr, func(store.Device, bool) (store.DeviceChange, error) {
		return store.DeviceChange{Name: &name}, nil
	}, func(w io.Writer, _ *config.Loaded, _ store.Device, ahead bool) {
		if ahead {
			aheadNote(w, "named")
		}
	})
}

// ---- limit ----

func devicesLimit(args []string, stdout, stderr io.Writer) int {
	fs, cfgPath := commandFlags("devices limit", devicesUsage)
	turns := fs.Int64("turns", 0, "at most `N` turns a day (0 = unlimited)")
	tokens := fs.Int64("tokens", 0, "at most `N` tokens a day, every source counted (0 = unlimited)")
	reset := fs.Bool("default", false, "follow quotas.daily_turns and quotas.daily_tokens again (then --turns or --tokens, if given)")
	pos, code, ok := parseArgs(fs, args, stdout, stderr)
	if !ok {
		return code
	}
	id, code, ok := oneID(fs, pos, stderr)
	if !ok {
		return code
	}
	set := map[string]bool{}
	fs.Visit(func(f *flag.Flag) { set[f.Name] = true })
	if !set["turns"] && !set["tokens"] && !*reset {
		return usageError(fs, stderr, "say --turns N, --tokens N or --default")
	}
	if *turns < 0 || *tokens < 0 {
		return usageError(fs, stderr, "a limit is 0 (unlimited) or more")
	}
	return changeDevice(fs, *cfgPath, id, stdout, stderr, func(cur store.Device, _ bool) (store.DeviceChange, error) {
		c := store.DeviceChange{SetLimits: true, DailyTurns: cur.DailyTurns, DailyTokens: cur.DailyTokens}
		if *reset {
			c.DailyTurns, c.DailyTokens = nil, nil
		}
		if set["turns"] {
			c.DailyTurns = turns
		}
		if set["tokens"] {
			c.DailyTokens = tokens
		}
		return c, nil
	}, func(w io.Writer, _ *config.Loaded, _ store.Device, ahead bool) {
		if ahead {
			aheadNote(w, "limited")
		}
	})
}

// ---- token ----

// newDeviceToken is 32 random bytes, base64url without padding.
func newDeviceToken() (string, error) {
	b := make([]byte, 32)
	if _, err := rand.Read(b); err != nil {
		return "", fmt.Errorf("no random token: %w", err)
	}
	return base64.RawURLEncoding.EncodeToString(b), nil
}

func tokenSHA256(token string) string {
	sum := sha256.Sum256([]byte(token))
	return hex.EncodeToString(sum[:])
}

func devicesToken(args []string, stdout, stderr io.Writer) int {
	fs, cfgPath := commandFlags("devices token", devicesUsage)
	remove := fs.Bool("remove", false, "remove the device's token: it is not asked for one any more")
	pos, code, ok := parseArgs(fs, args, stdout, stderr)
	if !ok {
		return code
	}
	id, code, ok := oneID(fs, pos, stderr)
	if !ok {
		return code
	}
	var token string
	return changeDevice(fs, *cfgPath, id, stdout, stderr, func(cur store.Device, _ bool) (store.DeviceChange, error) {
		if *remove {
			none := ""
			return store.DeviceChange{TokenSHA256: &none}, nil
		}
		t, err := newDeviceToken()
		if err != nil {
			return store.DeviceChange{}, err
		}
		token = t
		sum := tokenSHA256(t)
		return store.DeviceChange{TokenSHA256: &sum}, nil
	}, func(w io.Writer, _ *config.Loaded, _ store.Device, ahead bool) {
		if ahead {
			aheadNote(w, "given a token")
		}
		if *remove {
			fmt.Fprintln(w, "token removed: the device's requests need none now")
			return
		}
		fmt.Fprintf(w, "token: %s\n", token)
		fmt.Fprintf(w, "Put it in the client's gRPC metadata as\n  authorization: Bearer %s\n", token)
		fmt.Fprintln(w, "It is shown only this once and cannot be shown again: the server keeps only its SHA-256.")
		fmt.Fprintln(w, "Requests without it are refused from now on, and the old token (if any) stops working; lost it? run nexy devices token again.")
	})
}

// ---- list ----

// deviceJSON is one device of nexy devices list --json: stable snake_case keys.
type deviceJSON struct {
	HardwareID  string     `json:"hardware_id"`
	Name        string     `json:"name"`
	Status      string     `json:"status"`
	Seen        bool       `json:"seen"` // false: approved (or changed) ahead of its first request
	FirstSeen   time.Time  `json:"first_seen"`
	FirstPrompt string     `json:"first_prompt"`
	ApprovedAt  *time.Time `json:"approved_at"`
	RevokedAt   *time.Time `json:"revoked_at"`
	HasToken    bool       `json:"has_token"`
	// Today's use and the daily limits in force (0 = unlimited);
	// *_override is the device's own limit, null = the config default.
	Turns          int64  `json:"turns"`
	TurnLimit      int64  `json:"turn_limit"`
	TurnOverride   *int64 `json:"turn_limit_override"`
	Tokens         int64  `json:"tokens"`
	TokenLimit     int64  `json:"token_limit"`
	TokensOverride *int64 `json:"token_limit_override"`
}

func devicesList(args []string, stdout, stderr io.Writer) int {
	fs, cfgPath := commandFlags("devices list", devicesUsage)
	asJSON := fs.Bool("json", false, "print JSON (an array of devices) instead of a table")
	pos, code, ok := parseArgs(fs, args, stdout, stderr)
	if !ok {
		return code
	}
	if len(pos) > 0 {
		return usageError(fs, stderr, "unexpected argument %q", pos[0])
	}
	return withStore(fs.Name(), *cfgPath, stderr, func(ctx context.Context, cfg *config.Loaded, db *store.DB) error {
		devs, err := db.Devices(ctx)
		if err != nil {
			return err
		}
		since, loc, err := todayStart(cfg, time.Now())
		if err != nil {
			return err
		}
		use, err := db.UseSinceByDevice(ctx, since)
		if err != nil {
			return err
		}
		if cfg.Devices.Pairing == "approve" {
			sort.SliceStable(devs, func(i, j int) bool {
				return devs[i].Status == store.DevicePending && devs[j].Status != store.DevicePending
			})
		}
		out := make([]deviceJSON, 0, len(devs))
		for _, d := range devs {
			seen := d.FirstPrompt != ""
			if !seen {
				if seen, err = db.KnownDevice(ctx, d.HardwareID); err != nil {
					return err
				}
			}
			u := use[d.HardwareID]
			out = append(out, deviceJSON{HardwareID: d.HardwareID, Name: d.Name, Status: d.Status, Seen: seen,
				FirstSeen: d.FirstSeen, FirstPrompt: d.FirstPrompt, ApprovedAt: timeOrNil(d.ApprovedAt), RevokedAt: timeOrNil(d.RevokedAt),
				HasToken: d.TokenSHA256 != "", Turns: u.Turns, TurnLimit: effectiveLimit(d.DailyTurns, cfg.Quotas.DailyTurns), TurnOverride: d.DailyTurns,
				Tokens: u.Tokens, TokenLimit: effectiveLimit(d.DailyTokens, cfg.Quotas.DailyTokens), TokensOverride: d.DailyTokens})
		}
		if *asJSON {
			return printJSON(stdout, out)
		}
		return printDevices(stdout, cfg, out, since, loc)
	})
}

func pairingLine(mode string) string {
	if mode == "approve" {
		return "pairing: approve — pending devices are refused until approved (nexy devices approve ID)"
	}
	return "pairing: open — every device is answered unless revoked"
}

func printDevices(w io.Writer, cfg *config.Loaded, devs []deviceJSON, since time.Time, loc *time.Location) error {
	fmt.Fprintln(w, pairingLine(cfg.Devices.Pairing))
	fmt.Fprintf(w, "daily limits by default: %s turns, %s tokens (quotas.daily_turns, quotas.daily_tokens; ∞ = unlimited)\n",
		limitNumber(int64(cfg.Quotas.DailyTurns)), limitNumber(int64(cfg.Quotas.DailyTokens)))
	if len(devs) == 0 {
		_, err := fmt.Fprintln(w, "\nno devices yet: a device is listed from its first request (or approve one ahead: nexy devices approve ID)")
		return err
	}
	fmt.Fprintf(w, "today: since %s\n\n", dayStartText(since, loc))
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "HARDWARE ID\tNAME\tSTATUS\tFIRST SEEN\tFIRST PROMPT\tTURNS TODAY\tTOKENS TODAY\tTOKEN")
	for _, d := range devs {
		name, first, prompt, token := d.Name, "not yet", "-", "no"
		if name == "" {
			name = "-"
		}
		if d.Seen {
			first = d.FirstSeen.Local().Format("2006-01-02 15:04")
		}
		if d.FirstPrompt != "" {
			prompt = quotePrompt(d.FirstPrompt, 60)
		}
		if d.HasToken {
			token = "yes"
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%d/%s\t%d/%s\t%s\n", d.HardwareID, strings.Join(strings.Fields(name), " "), d.Status, first, prompt,
			d.Turns, limitNumber(d.TurnLimit), d.Tokens, limitNumber(d.TokenLimit), token)
	}
	return tw.Flush()
}

// quotePrompt is a prompt on one line, cut to n characters, quoted.
func quotePrompt(s string, n int) string {
	s = strings.Join(strings.Fields(s), " ")
	if r := []rune(s); len(r) > n {
		s = string(r[:n]) + "…"
	}
	return strconv.Quote(s)
}

// todayStart is the last midnight in quotas.timezone ("" = local time),
// where the server's daily quotas start.
func todayStart(cfg *config.Loaded, now time.Time) (time.Time, *time.Location, error) {
	loc := time.Local
	if tz := cfg.Quotas.Timezone; tz != "" {
		l, err := time.LoadLocation(tz)
		if err != nil {
			return time.Time{}, nil, fmt.Errorf("quotas.timezone: %w", err)
		}
		loc = l
	}
	now = now.In(loc)
	return time.Date(now.Year(), now.Month(), now.Day(), 0, 0, 0, 0, loc), loc, nil
}

func dayStartText(since time.Time, loc *time.Location) string {
	zone := "local time"
	if loc != time.Local {
		zone = "quotas.timezone = " + loc.String()
	}
	return fmt.Sprintf("%s (%s)", since.Format("2006-01-02 15:04 MST"), zone)
}

// ---- nexy usage: today ----

// todayLine is a device's use today against its daily limits (0 = unlimited).
type todayLine struct {
	HardwareID string `json:"hardware_id"`
	Name       string `json:"name"`
	Turns      int64  `json:"turns"`
	TurnLimit  int64  `json:"turn_limit"`
	Tokens     int64  `json:"tokens"`
	TokenLimit int64  `json:"token_limit"`
}

// usageToday is every device that can ask or asked something today (only
// device, if set), with its use since local midnight against its limits.
func usageToday(ctx context.Context, cfg *config.Loaded, db *store.DB, device string, now time.Time) (time.Time, *time.Location, []todayLine, error) {
	since, loc, err := todayStart(cfg, now)
	if err != nil {
		return time.Time{}, nil, nil, err
	}
	devs, err := db.Devices(ctx)
	if err != nil {
		return time.Time{}, nil, nil, err
	}
	use, err := db.UseSinceByDevice(ctx, since)
	if err != nil {
		return time.Time{}, nil, nil, err
	}
	lines := []todayLine{}
	listed := map[string]bool{}
	for _, d := range devs {
		listed[d.HardwareID] = true
		u, used := use[d.HardwareID]
		refused := d.Status == store.DeviceRevoked || d.Status == store.DevicePending && cfg.Devices.Pairing == "approve"
		if device != "" && d.HardwareID != device || !used && refused {
			continue
		}
		lines = append(lines, todayLine{HardwareID: d.HardwareID, Name: d.Name, Turns: u.Turns, Tokens: u.Tokens,
			TurnLimit: effectiveLimit(d.DailyTurns, cfg.Quotas.DailyTurns), TokenLimit: effectiveLimit(d.DailyTokens, cfg.Quotas.DailyTokens)})
	}
	// Devices with use but no row (recorded before the devices table).
	var rest []string
	for hw := range use {
		if !listed[hw] && (device == "" || hw == device) {
			rest = append(rest, hw)
		}
	}
	sort.Strings(rest)
	for _, hw := range rest {
		u := use[hw]
		lines = append(lines, todayLine{HardwareID: hw, Turns: u.Turns, Tokens: u.Tokens,
			TurnLimit: int64(cfg.Quotas.DailyTurns), TokenLimit: int64(cfg.Quotas.DailyTokens)})
	}
	return since, loc, lines, nil
}

func printToday(w io.Writer, since time.Time, loc *time.Location, lines []todayLine) error {
	fmt.Fprintf(w, "\ntoday, since %s: used / daily limit (∞ = unlimited)\n\n", dayStartText(since, loc))
	if len(lines) == 0 {
		_, err := fmt.Fprintln(w, "no device can ask or has asked today")
		return err
	}
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "DEVICE\tNAME\tTURNS\tTOKENS")
	for _, l := range lines {
		name := strings.Join(strings.Fields(l.Name), " ")
		if name == "" {
			name = "-"
		}
		fmt.Fprintf(tw, "%s\t%s\t%d/%s\t%d/%s\n", shortID(l.HardwareID), name, l.Turns, limitNumber(l.TurnLimit), l.Tokens, limitNumber(l.TokenLimit))
	}
	return tw.Flush()
}
