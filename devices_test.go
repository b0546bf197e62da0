package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/nexy-server/nexy/store"
)

// nexyEnv is nexy (admin_test.go) with extra NEXY_* settings, and a
// deadline: a command that hangs is killed and fails the test.
func (e *adminEnv) nexyEnv(t *testing.T, env []string, args ...string) (stdout, stderr string, code int) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, os.Args[0], append(args, "-config", e.config)...)
	cmd.Dir = e.dir
	cmd.Env = []string{"NEXY_TEST_RUN_MAIN=1"}
	for _, kv := range os.Environ() {
		if !strings.HasPrefix(kv, "NEXY_") {
			cmd.Env = append(cmd.Env, kv)
		}
	}
	cmd.Env = append(cmd.Env, env...)
	if _, set := os.LookupEnv("GORACE"); !set {
		// Under -race a child otherwise sleeps a second as it exits.
		cmd.Env = append(cmd.Env, "GORACE=atexit_sleep_ms=0")
	}
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	err := cmd.Run()
	if ctx.Err() != nil {
		t.Fatalf("nexy %v: no exit within a minute", args)
	}
	var exit *exec.ExitError
	if err != nil && !errors.As(err, &exit) {
		t.Fatal(err)
	}
	return out.String(), errb.String(), cmd.ProcessState.ExitCode()
}

func (e *adminEnv) mustNexyEnv(t *testing.T, env []string, args ...string) string {
	t.Helper()
	stdout, stderr, code := e.nexyEnv(t, env, args...)
	if code != 0 {
		t.Fatalf("nexy %v: exit %d\nstdout:\n%s\nstderr:\n%s", args, code, stdout, stderr)
	}
	return stdout
}

// withDB opens the env's database, runs fn and closes it (which commits
// what SeeDevice and SaveTurn queued).
func (e *adminEnv) withDB(t *testing.T, fn func(ctx context.Context, db *store.DB)) {
	t.Helper()
	db := e.open(t)
	fn(context.Background(), db)
	if err := db.Close(); err != nil {
		t.Fatal(err)
	}
}

func (e *adminEnv) device(t *testing.T, hw string) store.Device {
	t.Helper()
	var d store.Device
	e.withDB(t, func(ctx context.Context, db *store.DB) {
		var err error
		if d, err = db.Device(ctx, hw); err != nil {
			t.Fatal(err)
		}
	})
	return d
}

func listDevices(t *testing.T, e *adminEnv, env []string) map[string]deviceJSON {
	t.Helper()
	out := e.mustNexyEnv(t, env, "devices", "list", "--json")
	var list []deviceJSON
	if err := json.Unmarshal([]byte(out), &list); err != nil {
		t.Fatalf("%v\n%s", err, out)
	}
	m := map[string]deviceJSON{}
	for _, d := range list {
		m[d.HardwareID] = d
	}
	return m
}

func mustContain(t *testing.T, what, got string, want ...string) {
	t.Helper()
	for _, w := range want {
		if !strings.Contains(got, w) {
			t.Errorf("%s lacks %q:\n%s", what, w, got)
		}
	}
}

func TestDevicesCommands(t *testing.T) {
	e := newAdminEnv(t)
	e.withDB(t, func(context.Context, *store.DB) {}) // the server ran once
	approve := []string{"NEXY_DEVICES_PAIRING=approve", "NEXY_QUOTAS_DAILY_TURNS=50"}

	out := e.mustNexyEnv(t, nil, "devices", "list")
	mustContain(t, "empty list", out, "pairing: open", "no devices yet")
	if out := e.mustNexyEnv(t, nil, "devices", "list", "--json"); strings.TrimSpace(out) != "[]" {
		t.Errorf("empty list --json: %q", out)
	}

	// Approved ahead of its first request.
	out = e.mustNexyEnv(t, approve, "devices", "approve", "HW-AHEAD-1")
	mustContain(t, "approve ahead", out, "device HW-AHEAD-1: approved, no name, daily turns 50 (default), daily tokens ∞ (default), token no",
		"not seen yet: approved ahead of its first request", "applies it from the device's next request on")
	if d := e.device(t, "HW-AHEAD-1"); d.Status != store.DeviceApproved || d.ApprovedAt.IsZero() {
		t.Errorf("approved ahead: %+v", d)
	}

	// A new device asks: pending, with its first prompt.
	const hw = "HW-NEW-0123456789abcdef"
	prompt := "Hey Nexy, what is the weather like in Berlin today and should I take an umbrella with me?"
	e.withDB(t, func(ctx context.Context, db *store.DB) {
		if err := db.SeeDevice(ctx, hw, prompt, time.Now()); err != nil {
			t.Fatal(err)
		}
	})
	out = e.mustNexyEnv(t, approve, "devices", "list")
	mustContain(t, "list", out, "pairing: approve — pending devices are refused until approved", "HARDWARE ID",
		hw, `"`+prompt[:60]+`…"`, "pending", "0/50", "0/∞", "not yet")
	if strings.Contains(out, "umbrella") {
		t.Errorf("the prompt is not cut to 60 characters:\n%s", out)
	}
	if i, j := strings.Index(out, hw), strings.Index(out, "HW-AHEAD-1"); i < 0 || j < 0 || i > j {
		t.Errorf("under pairing approve the pending device comes first:\n%s", out)
	}
	if out := e.mustNexyEnv(t, nil, "devices", "list"); strings.Index(out, hw) < strings.Index(out, "HW-AHEAD-1") {
		t.Errorf("under pairing open the devices are in first-seen order:\n%s", out)
	}
	m := listDevices(t, e, approve)
	if d := m[hw]; d.Status != store.DevicePending || d.FirstPrompt != prompt || !d.Seen || d.TurnLimit != 50 || d.TurnOverride != nil || d.HasToken {
		t.Errorf("new device in --json: %+v", d)
	}
	if d := m["HW-AHEAD-1"]; d.Seen || d.Status != store.DeviceApproved || d.ApprovedAt == nil {
		t.Errorf("device approved ahead in --json: %+v", d)
	}

	// Rename: the words are joined.
	out = e.mustNexyEnv(t, nil, "devices", "rename", hw, "Anna's", "MacBook", "Air")
	mustContain(t, "rename", out, `device `+hw+`: pending, name "Anna's MacBook Air"`)
	if strings.Contains(out, "not seen yet") {
		t.Errorf("rename of a known device says it is new:\n%s", out)
	}
	if d := e.device(t, hw); d.Name != "Anna's MacBook Air" {
		t.Errorf("name %q", d.Name)
	}

	// Limits: one at a time, the other kept; --default resets both.
	out = e.mustNexyEnv(t, approve, "devices", "limit", hw, "--turns", "2")
	mustContain(t, "limit --turns", out, "daily turns 2, daily tokens ∞ (default)")
	out = e.mustNexyEnv(t, approve, "devices", "limit", "--tokens", "5000", hw)
	mustContain(t, "limit --tokens", out, "daily turns 2, daily tokens 5000")
	if d := e.device(t, hw); d.DailyTurns == nil || *d.DailyTurns != 2 || d.DailyTokens == nil || *d.DailyTokens != 5000 {
		t.Errorf("limits %v %v", d.DailyTurns, d.DailyTokens)
	}
	if d := listDevices(t, e, approve)[hw]; d.TurnLimit != 2 || d.TokenLimit != 5000 {
		t.Errorf("limits in --json: %+v", d)
	}
	out = e.mustNexyEnv(t, approve, "devices", "limit", hw, "--default")
	mustContain(t, "limit --default", out, "daily turns 50 (default), daily tokens ∞ (default)")
	if d := e.device(t, hw); d.DailyTurns != nil || d.DailyTokens != nil {
		t.Errorf("after --default: %v %v", d.DailyTurns, d.DailyTokens)
	}
	e.mustNexyEnv(t, nil, "devices", "limit", hw, "--turns", "0")
	if d := e.device(t, hw); d.DailyTurns == nil || *d.DailyTurns != 0 {
		t.Errorf("--turns 0 (unlimited): %v", d.DailyTurns)
	}
	for _, args := range [][]string{{hw}, {hw, "--turns", "-1"}, {hw, "--tokens", "many"}, {}} {
		if _, stderr, code := e.nexyEnv(t, nil, append([]string{"devices", "limit"}, args...)...); code != 2 || stderr == "" {
			t.Errorf("limit %v: exit %d, %s", args, code, stderr)
		}
	}

	// A token: printed once, only its hash stored.
	out = e.mustNexyEnv(t, nil, "devices", "token", hw)
	tok := regexp.MustCompile(`(?m)^token: ([A-Za-z0-9_-]+)$`).FindStringSubmatch(out)
	if tok == nil || len(tok[1]) != 43 {
		t.Fatalf("token printed:\n%s", out)
	}
	mustContain(t, "token", out, "authorization: Bearer "+tok[1], "cannot be shown again", "token yes")
	d := e.device(t, hw)
	if d.TokenSHA256 != tokenSHA256(tok[1]) || len(d.TokenSHA256) != 64 {
		t.Errorf("stored %q, the token's SHA-256 is %s", d.TokenSHA256, tokenSHA256(tok[1]))
	}
	files, _ := filepath.Glob(filepath.Join(e.data, "*"))
	for _, f := range files {
		if b, err := os.ReadFile(f); err == nil && bytes.Contains(b, []byte(tok[1])) {
			t.Errorf("%s holds the token itself", f)
		}
	}
	out = e.mustNexyEnv(t, nil, "devices", "token", hw)
	if tok2 := regexp.MustCompile(`(?m)^token: (\S+)$`).FindStringSubmatch(out); tok2 == nil || tok2[1] == tok[1] {
		t.Errorf("a second token is not new:\n%s", out)
	}
	out = e.mustNexyEnv(t, nil, "devices", "token", hw, "--remove")
	mustContain(t, "token --remove", out, "token removed", "token no")
	if strings.Contains(out, "Bearer") {
		t.Errorf("token --remove printed a token:\n%s", out)
	}
	if d := e.device(t, hw); d.TokenSHA256 != "" {
		t.Errorf("token not removed: %q", d.TokenSHA256)
	}

	// Revoke, also ahead (a pre-block).
	out = e.mustNexyEnv(t, nil, "devices", "revoke", hw)
	mustContain(t, "revoke", out, "device "+hw+": revoked", "running answers stop")
	if d := e.device(t, hw); d.Status != store.DeviceRevoked || d.RevokedAt.IsZero() || d.Name != "Anna's MacBook Air" {
		t.Errorf("revoked: %+v", d)
	}
	out = e.mustNexyEnv(t, nil, "devices", "revoke", "HW-NEVER")
	mustContain(t, "revoke ahead", out, "device HW-NEVER: revoked", "not seen yet: revoked ahead of its first request")

	// Bad ids and names are refused, and nothing is recorded.
	long := strings.Repeat("a", 129)
	for _, c := range []struct {
		args []string
		want string
	}{
		{[]string{"approve", ""}, "the hardware id is empty"},
		{[]string{"approve", "unknown"}, `"unknown" is not a hardware id`},
		{[]string{"revoke", "has space"}, "A-Z a-z 0-9 . _ : -"},
		{[]string{"token", "bad/id"}, "A-Z a-z 0-9 . _ : -"},
		{[]string{"limit", "HW-é", "--turns", "1"}, "A-Z a-z 0-9 . _ : -"},
		{[]string{"approve", long}, "at most 128 (limits.max_id_length)"},
		{[]string{"rename", hw, "tab\there"}, "control characters"},
		{[]string{"rename", hw, strings.Repeat("n", 101)}, "at most 100"},
		{[]string{"rename", "bad id", "Name"}, "A-Z a-z 0-9 . _ : -"},
	} {
		_, stderr, code := e.nexyEnv(t, nil, append([]string{"devices"}, c.args...)...)
		if code != 1 || !strings.Contains(stderr, c.want) || !regexp.MustCompile(`(?m)^nexy devices `+c.args[0]+`: `).MatchString(stderr) {
			t.Errorf("devices %q: exit %d, %s; want exit 1 and %q", c.args, code, stderr, c.want)
		}
	}
	if m := listDevices(t, e, nil); len(m) != 3 {
		t.Errorf("devices after refused commands: %v", m)
	}
}

func TestDevicesUsageErrors(t *testing.T) {
	e := newAdminEnv(t)
	if out, _, code := e.nexyEnv(t, nil, "devices", "-h"); code != 0 || !strings.Contains(out, "usage: nexy devices") {
		t.Errorf("devices -h: exit %d, %s", code, out)
	}
	for _, args := range [][]string{{}, {"erase", "HW-1"}, {"approve"}, {"approve", "HW-1", "HW-2"}, {"rename", "HW-1"}, {"list", "extra"}, {"token", "HW-1", "--no-such-flag"}} {
		if _, stderr, code := e.nexyEnv(t, nil, append([]string{"devices"}, args...)...); code != 2 || !strings.Contains(stderr, "usage: nexy devices") {
			t.Errorf("devices %q: exit %d, %s", args, code, stderr)
		}
	}
	for _, action := range []string{"list", "approve", "revoke", "rename", "limit", "token"} {
		if out, _, code := e.nexyEnv(t, nil, "devices", action, "-h"); code != 0 || !strings.Contains(out, "usage: nexy devices") {
			t.Errorf("devices %s -h: exit %d, %s", action, code, out)
		}
	}
	// No database: the same clear failure as the other commands, and none is created.
	if _, stderr, code := e.nexyEnv(t, nil, "devices", "approve", "HW-1"); code != 1 || !strings.Contains(stderr, "no database at") {
		t.Errorf("approve without a database: exit %d, %s", code, stderr)
	}
	if _, err := os.Stat(e.live()); err == nil {
		t.Error("devices created the database")
	}
	var out bytes.Buffer
	if code := run([]string{"help"}, &out, &out); code != 0 || !strings.Contains(out.String(), "nexy devices approve|revoke ID") {
		t.Errorf("nexy help: exit %d\n%s", code, out.String())
	}
}

// nexy usage shows each device's turns and tokens today against its limits.
func TestUsageToday(t *testing.T) {
	e := newAdminEnv(t)
	const hw, other = "HW-TODAY-0123456789", "HW-QUIET"
	e.withDB(t, func(ctx context.Context, db *store.DB) {
		for i := range 2 {
			turn := store.Turn{HardwareID: hw, SessionID: "s" + string(rune('0'+i)), At: time.Now(), Prompt: "what time is it", Response: "It is noon.",
				Model: "gemini-test", Status: store.StatusComplete, InputTokens: 120, OutputTokens: 8, Segments: 1, AudioChunks: 12,
				Timings: store.Timings{Total: 901 * time.Millisecond}}
			if err := db.SaveTurn(ctx, turn); err != nil {
				t.Fatal(err)
			}
		}
		// Yesterday's turn does not count today.
		old := store.Turn{HardwareID: hw, SessionID: "old", At: time.Now().AddDate(0, 0, -2), Prompt: "q", Response: "a",
			Status: store.StatusComplete, InputTokens: 1000, OutputTokens: 1000}
		if err := db.SaveTurn(ctx, old); err != nil {
			t.Fatal(err)
		}
		if err := db.SeeDevice(ctx, other, "hello", time.Now()); err != nil {
			t.Fatal(err)
		}
	})
	env := []string{"NEXY_QUOTAS_DAILY_TURNS=50"}
	out := e.mustNexyEnv(t, env, "usage")
	mustContain(t, "usage", out, "token usage since", "today, since", "(local time)", "DEVICE", shortID(hw), "2/50", "256/∞", "HW-QUIET", "0/50")

	out = e.mustNexyEnv(t, env, "usage", "--json")
	var rep usageReport
	if err := json.Unmarshal([]byte(out), &rep); err != nil {
		t.Fatalf("%v\n%s", err, out)
	}
	if len(rep.Today) != 2 || rep.TodaySince.IsZero() || time.Since(rep.TodaySince) > 25*time.Hour {
		t.Fatalf("today %+v since %v", rep.Today, rep.TodaySince)
	}
	if got := rep.Today[0]; got != (todayLine{HardwareID: other, Turns: 0, TurnLimit: 50}) {
		t.Errorf("today[0] %+v", got)
	}
	if got := rep.Today[1]; got != (todayLine{HardwareID: hw, Turns: 2, TurnLimit: 50, Tokens: 256}) {
		t.Errorf("today[1] %+v", got)
	}
	if !bytes.Contains([]byte(out), []byte(`"today": [`)) || !bytes.Contains([]byte(out), []byte(`"turn_limit": 50`)) {
		t.Errorf("JSON keys:\n%s", out)
	}

	// A device's own limits; a revoked device that asked nothing today is
	// left out, as are pending ones under pairing "approve".
	e.mustNexyEnv(t, env, "devices", "limit", hw, "--turns", "5", "--tokens", "1000")
	e.mustNexyEnv(t, env, "devices", "rename", hw, "Kitchen", "Mac")
	e.mustNexyEnv(t, env, "devices", "revoke", "HW-GONE")
	out = e.mustNexyEnv(t, append(env, "NEXY_DEVICES_PAIRING=approve", "NEXY_QUOTAS_TIMEZONE=Pacific/Kiritimati"), "usage", "--since", "3d")
	mustContain(t, "usage with limits", out, "2/5", "256/1000", "Kitchen Mac", "quotas.timezone = Pacific/Kiritimati")
	if strings.Contains(out, "HW-GONE") || strings.Contains(out, other) {
		t.Errorf("usage today lists devices that cannot ask and asked nothing:\n%s", out)
	}
	out = e.mustNexyEnv(t, env, "usage", "--device", hw, "--json")
	rep = usageReport{}
	if err := json.Unmarshal([]byte(out), &rep); err != nil {
		t.Fatal(err)
	}
	if len(rep.Today) != 1 || rep.Today[0] != (todayLine{HardwareID: hw, Name: "Kitchen Mac", Turns: 2, TurnLimit: 5, Tokens: 256, TokenLimit: 1000}) {
		t.Errorf("usage --device today: %+v", rep.Today)
	}
}
