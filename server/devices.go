package server

import (
	"context"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"sync"
	"time"
	"unicode/utf8"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/metadata"

	"github.com/nexy-server/nexy/config"
	"github.com/nexy-server/nexy/store"
)

// Spoken refusals (SPEC §2): what happened and what to do, in words a person
// who cannot see the screen understands. Their audio comes from the phrase
// cache, so a flood of refused requests costs no speech calls.
const (
	notApprovedText = "This Mac is not approved on this server yet. Ask its owner to approve it."
	revokedText     = "This Mac is no longer allowed on this server. Ask its owner if you think this is a mistake."
	badTokenText    = "This Mac's access key was not accepted by the server. Ask its owner for a new one."
	turnsQuotaText  = "You have used today's %d questions. The limit resets at midnight."
	tokensQuotaText = "You have used today's share of answers on this server. The limit resets at midnight."
)

// Reasons a device is refused, for logs and nexy_device_refusals_total.
const (
	reasonNotApproved = "not_approved"
	reasonRevoked     = "revoked"
	reasonBadToken    = "bad_token"
	reasonTurnsQuota  = "daily_turns"
	reasonTokensQuota = "daily_tokens"
)

// refusalReasons is the label set of nexy_device_refusals_total.
var refusalReasons = []string{reasonNotApproved, reasonRevoked, reasonBadToken, reasonTurnsQuota, reasonTokensQuota}

// Causes for cancelling a device's running turns from `nexy devices`.
var (
	errRevoked      = errors.New("the device was revoked")
	errTokenChanged = errors.New("the device's bearer token was changed")
)

// maxPendingDevices bounds how many unknown devices are recorded as pending:
// under pairing "approve" anybody can invent hardware ids, and rows are
// never deleted. Past it, new devices are still refused, just not listed.
const maxPendingDevices = 1000

// maxDayUse bounds the per-device quota counters kept in memory; past it,
// counters of other days go first, then any (they reload from the store).
const maxDayUse = 10000

// refusal is a device turned away: spoken, or as a status.
type refusal struct {
	reason string
	text   string // the spoken sentence
	code   codes.Code
	kind   string // taxonomy type when sent as a status
	msg    string // the status message
}

func deviceRefusal(reason string) *refusal {
	r := &refusal{reason: reason, code: codes.Unauthenticated, kind: "unauthenticated"}
	switch reason {
	case reasonNotApproved:
		r.text, r.msg = notApprovedText, "this device is not approved on this server yet (devices.pairing = \"approve\"); the owner can run: nexy devices approve <hardware_id>"
	case reasonRevoked:
		r.text, r.msg = revokedText, "this device was revoked on this server"
	default:
		r.text, r.msg = badTokenText, "the device's bearer token is missing or wrong"
	}
	return r
}

func quotaRefusal(reason string, limit int64) *refusal {
	r := &refusal{reason: reason, code: codes.PermissionDenied, kind: "quota_exceeded"}
	if reason == reasonTurnsQuota {
		r.text = fmt.Sprintf(turnsQuotaText, limit)
		r.msg = fmt.Sprintf("daily limit exceeded: %d questions a day on this device; it resets at midnight", limit)
	} else {
		r.text = tokensQuotaText
		r.msg = fmt.Sprintf("daily limit exceeded: %d tokens a day on this device; it resets at midnight", limit)
	}
	return r
}

func (r *refusal) turnError() *turnError { return &turnError{code: r.code, kind: r.kind, msg: r.msg} }

// devices decides which devices may ask (pairing, revocation, bearer
// tokens) and how much (daily quotas). Its view of the devices table is
// reloaded whenever the table's change number moves: every request that
// starts a turn (or interrupts, or reports usage) reads that number (one
// index probe), so `nexy devices`, run in another process, takes effect on
// the next request; a poll every devices.poll_interval stops the running
// turns of a device revoked meanwhile.
type devices struct {
	cfg    config.Devices
	quotas config.Quotas
	loc    *time.Location
	store  Store // nil: every device is allowed; quotas count in memory only
	log    *slog.Logger
	now    func() time.Time
	// stop cancels a device's running turns with a cause.
	stop func(hardwareID string, cause error)

	reading sync.Mutex    // one read of the store at a time
	probe   *versionProbe // the change number, read once per round of requests
	mu      sync.Mutex
	known   map[string]store.Device
	version int64
	loaded  bool // known reflects the store
	pending int  // devices known as pending
	use     map[string]*dayUse
}

// dayUse is a device's use on one local day.
type dayUse struct {
	day           string // YYYY-MM-DD in quotas.timezone
	turns, tokens int64
}

func newDevices(cfg *config.Config, st Store, log *slog.Logger) *devices {
	loc := time.Local
	if tz := cfg.Quotas.Timezone; tz != "" {
		if l, err := time.LoadLocation(tz); err == nil { // validated by config
			loc = l
		}
	}
	return &devices{cfg: cfg.Devices, quotas: cfg.Quotas, loc: loc, store: st, log: log, now: time.Now, probe: newVersionProbe(),
		stop: func(string, error) {}, known: map[string]store.Device{}, use: map[string]*dayUse{}}
}

// run keeps the view of the devices table current until ctx ends.
func (d *devices) run(ctx context.Context) {
	if d.store == nil {
		return
	}
	tick := time.NewTicker(d.cfg.PollInterval.Duration)
	defer tick.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
			d.refresh(ctx)
		}
	}
}

// refresh reads the devices changed since the last read when their change
// number moved (the first time, all of them), and stops the running turns
// of every device that was revoked or got a new token. One read runs at a
// time, and a list older than the one held is never installed.
func (d *devices) refresh(ctx context.Context) {
	if d.store == nil {
		return
	}
	ctx, cancel := context.WithTimeout(ctx, max(d.cfg.PollInterval.Duration, time.Second))
	defer cancel()
	v, err := d.probe.read(ctx, d.store.DevicesVersion)
	if err != nil {
		d.logReadFailure(err)
		return
	}
	if d.current(v) {
		return
	}
	d.reading.Lock()
	defer d.reading.Unlock()
	if d.current(v) {
		return // another request read it meanwhile
	}
	d.mu.Lock()
	from, loaded := d.version, d.loaded
	d.mu.Unlock()
	var changed []store.Device
	if loaded {
		changed, err = d.store.DevicesChangedSince(ctx, from)
	} else {
		changed, err = d.store.Devices(ctx)
	}
	if err != nil {
		d.logReadFailure(err)
		return
	}
	for hw, cause := range d.merge(changed, from) {
		d.log.Info("Device revoked or its token changed: its running answers are stopped", "scope", "devices", "decision", "revoked",
			"hardware_id", shortID(hw), "reason", cause.Error())
		d.stop(hw, cause)
	}
}

// current reports whether the list held is as new as change number v.
func (d *devices) current(v int64) bool {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.loaded && v <= d.version
}

// merge installs changed devices and returns those whose running turns
// must stop, with why.
func (d *devices) merge(changed []store.Device, version int64) map[string]error {
	d.mu.Lock()
	defer d.mu.Unlock()
	cut := map[string]error{}
	for _, dev := range changed {
		old, had := d.known[dev.HardwareID]
		switch {
		case had && dev.Status == store.DeviceRevoked && old.Status != store.DeviceRevoked:
			cut[dev.HardwareID] = errRevoked
		case had && dev.TokenSHA256 != "" && dev.TokenSHA256 != old.TokenSHA256:
			cut[dev.HardwareID] = errTokenChanged
		}
		if had && old.Status == store.DevicePending {
			d.pending--
		}
		if dev.Status == store.DevicePending {
			d.pending++
		}
		d.known[dev.HardwareID] = dev
		version = max(version, dev.Version)
	}
	d.version, d.loaded = version, true
	return cut
}

func (d *devices) logReadFailure(err error) {
	d.log.Warn("Devices not read; the last known list stays in force", "scope", "devices", "decision", "devices_read_failed", "error", err.Error())
}

// admitDevice decides whether a device may ask: revoked, a wrong bearer
// token, or not approved under pairing "approve" is a refusal. A device seen
// for the first time is recorded with its first prompt.
func (d *devices) admitDevice(ctx context.Context, hardwareID, prompt string) *refusal {
	if d.store == nil {
		return nil
	}
	d.refresh(ctx)
	d.mu.Lock()
	dev, ok := d.known[hardwareID]
	record := !ok && (d.cfg.Pairing == "open" || d.pending < maxPendingDevices)
	if !ok {
		dev = store.Device{HardwareID: hardwareID, Status: store.DevicePending}
		if record {
			d.known[hardwareID] = dev
			d.pending++
		}
	}
	d.mu.Unlock()
	if record {
		d.see(hardwareID, prompt)
	}
	return d.judge(ctx, dev)
}

// check is admitDevice for requests that do not start a turn
// (InterruptSession, ReportUsage): nothing is recorded.
func (d *devices) check(ctx context.Context, hardwareID string) *refusal {
	if d.store == nil {
		return nil
	}
	d.refresh(ctx)
	return d.cached(ctx, hardwareID)
}

// cached judges by the last list read, without asking the store: a COLLECT
// only decides whether its transcript is buffered, and comes every 120 ms;
// a turn just admitted is checked again this way (see commitPhase).
func (d *devices) cached(ctx context.Context, hardwareID string) *refusal {
	d.mu.Lock()
	dev, ok := d.known[hardwareID]
	d.mu.Unlock()
	if !ok {
		dev = store.Device{HardwareID: hardwareID, Status: store.DevicePending}
	}
	return d.judge(ctx, dev)
}

// refused reports whether check refuses the device.
func (d *devices) refused(ctx context.Context, hardwareID string) bool {
	return d.check(ctx, hardwareID) != nil
}

func (d *devices) judge(ctx context.Context, dev store.Device) *refusal {
	switch {
	case dev.Status == store.DeviceRevoked:
		return deviceRefusal(reasonRevoked)
	case dev.TokenSHA256 != "" && !tokenMatches(bearerToken(ctx), dev.TokenSHA256):
		return deviceRefusal(reasonBadToken)
	case dev.Status != store.DeviceApproved && d.cfg.Pairing == "approve":
		return deviceRefusal(reasonNotApproved)
	}
	return nil
}

// see records a new device without holding up the request.
func (d *devices) see(hardwareID, prompt string) {
	if n := 200; utf8.RuneCountInString(prompt) > n {
		prompt = string([]rune(prompt)[:n]) + "…"
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Second)
	defer cancel()
	if err := d.store.SeeDevice(ctx, hardwareID, prompt, d.now()); err != nil {
		d.log.Warn("New device not recorded", "scope", "devices", "decision", "device_not_recorded", "hardware_id", shortID(hardwareID), "error", err.Error())
	}
}

// bearerToken is the token of an "authorization: Bearer …" header, "" = none.
func bearerToken(ctx context.Context) string {
	md, _ := metadata.FromIncomingContext(ctx)
	for _, v := range md.Get("authorization") {
		if scheme, tok, ok := strings.Cut(v, " "); ok && strings.EqualFold(scheme, "bearer") {
			return strings.TrimSpace(tok)
		}
	}
	return ""
}

// tokenMatches compares in constant time: hashes of equal length, so
// neither the token's length nor its prefix leaks through timing.
func tokenMatches(token, wantHex string) bool {
	want, err := hex.DecodeString(wantHex)
	if err != nil || len(want) != sha256.Size {
		return false
	}
	got := sha256.Sum256([]byte(token))
	return subtle.ConstantTimeCompare(got[:], want) == 1 && token != ""
}

// limits are a device's daily limits (0 = none).
func (d *devices) limits(hardwareID string) (turns, tokens int64) {
	turns, tokens = int64(d.quotas.DailyTurns), int64(d.quotas.DailyTokens)
	d.mu.Lock()
	dev := d.known[hardwareID]
	d.mu.Unlock()
	if dev.DailyTurns != nil {
		turns = *dev.DailyTurns
	}
	if dev.DailyTokens != nil {
		tokens = *dev.DailyTokens
	}
	return turns, tokens
}

// reserveTurn counts a turn against the device's daily quota, or refuses it.
// The count is the store's (so it survives restarts) plus what this process
// started since; release undoes a reservation admission then refused.
func (d *devices) reserveTurn(ctx context.Context, hardwareID string) (release func(), r *refusal) {
	maxTurns, maxTokens := d.limits(hardwareID)
	if maxTurns == 0 && maxTokens == 0 {
		return func() {}, nil
	}
	u := d.dayUse(ctx, hardwareID)
	d.mu.Lock()
	defer d.mu.Unlock()
	switch {
	case maxTurns > 0 && u.turns >= maxTurns:
		return nil, quotaRefusal(reasonTurnsQuota, maxTurns)
	case maxTokens > 0 && u.tokens >= maxTokens:
		return nil, quotaRefusal(reasonTokensQuota, maxTokens)
	}
	u.turns++
	var once sync.Once
	return func() {
		once.Do(func() {
			d.mu.Lock()
			u.turns--
			d.mu.Unlock()
		})
	}, nil
}

// quotaLeft reports whether the device may start another turn today,
// without reserving it: a device at its quota is not answered ahead.
func (d *devices) quotaLeft(hardwareID string) bool {
	maxTurns, maxTokens := d.limits(hardwareID)
	if maxTurns == 0 && maxTokens == 0 {
		return true
	}
	u := d.dayUse(context.Background(), hardwareID) // bounded by its own read timeout
	d.mu.Lock()
	defer d.mu.Unlock()
	return (maxTurns == 0 || u.turns < maxTurns) && (maxTokens == 0 || u.tokens < maxTokens)
}

// addTokens counts tokens against today's quota of a device.
func (d *devices) addTokens(hardwareID string, n int) {
	if n <= 0 {
		return
	}
	d.mu.Lock()
	defer d.mu.Unlock()
	if u, ok := d.use[hardwareID]; ok && u.day == d.today() {
		u.tokens += int64(n)
	}
	// Not loaded yet: the store already has these tokens when it loads.
}

func (d *devices) today() string { return d.now().In(d.loc).Format(time.DateOnly) }

// dayUse is today's counter of a device, loaded from the store the first
// time it is needed each day (or after a restart). A store that cannot be
// read counts from zero for now and is asked again next time.
func (d *devices) dayUse(ctx context.Context, hardwareID string) *dayUse {
	now := d.now().In(d.loc)
	day := now.Format(time.DateOnly)
	d.mu.Lock()
	u, ok := d.use[hardwareID]
	d.mu.Unlock()
	if ok && u.day == day {
		return u
	}
	fresh := &dayUse{day: day}
	loaded := true
	if d.store != nil {
		midnight := time.Date(now.Year(), now.Month(), now.Day(), 0, 0, 0, 0, d.loc)
		lctx, cancel := context.WithTimeout(ctx, time.Second)
		used, err := d.store.UseSince(lctx, hardwareID, midnight)
		cancel()
		if err != nil {
			loaded = false
			d.log.Warn("Today's use not read; the quota counts from zero until it is", "scope", "devices", "decision", "quota_read_failed",
				"hardware_id", shortID(hardwareID), "error", err.Error())
		}
		fresh.turns, fresh.tokens = used.Turns, used.Tokens
	}
	d.mu.Lock()
	defer d.mu.Unlock()
	if u, ok := d.use[hardwareID]; ok && u.day == day {
		return u // another request loaded it meanwhile
	}
	if loaded {
		d.pruneUseLocked(day)
		d.use[hardwareID] = fresh
	}
	return fresh
}

func (d *devices) pruneUseLocked(day string) {
	if len(d.use) < maxDayUse {
		return
	}
	for hw, u := range d.use {
		if u.day != day {
			delete(d.use, hw)
		}
	}
	for hw := range d.use {
		if len(d.use) < maxDayUse {
			break
		}
		delete(d.use, hw)
	}
}

// summary is the devices block of /status: counts only, no ids.
func (d *devices) summary() map[string]any {
	d.mu.Lock()
	defer d.mu.Unlock()
	by := map[string]int{store.DevicePending: 0, store.DeviceApproved: 0, store.DeviceRevoked: 0}
	for _, dev := range d.known {
		by[dev.Status]++
	}
	return map[string]any{"pairing": d.cfg.Pairing, "refusal": d.cfg.Refusal, "devices": by,
		"daily_turns": d.quotas.DailyTurns, "daily_tokens": d.quotas.DailyTokens, "loaded": d.loaded || d.store == nil}
}

// revokedRefusal is the refusal for a turn `nexy devices` stopped; nil when
// something else ended it.
func revokedRefusal(ctx context.Context) *refusal {
	switch cause := context.Cause(ctx); {
	case errors.Is(cause, errRevoked):
		return deviceRefusal(reasonRevoked)
	case errors.Is(cause, errTokenChanged):
		return deviceRefusal(reasonBadToken)
	}
	return nil
}
