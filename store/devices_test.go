package store

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/nexy-server/nexy/internal/cputime"
)

func TestDevicesLifecycle(t *testing.T) {
	db := openTest(t)
	ctx := context.Background()
	t0 := time.Date(2026, 12, 2, 9, 0, 0, 0, time.UTC)
	if _, err := db.Device(ctx, "HW-1"); !errors.Is(err, ErrNoDevice) {
		t.Fatalf("unknown device: %v, want ErrNoDevice", err)
	}
	v0, _ := db.DevicesVersion(ctx)
	if err := db.SeeDevice(ctx, "HW-1", "what time is it", t0); err != nil {
		t.Fatal(err)
	}
	// A second sighting keeps the first prompt (SeeDevice is queued: a
	// synchronous change behind it proves both were committed).
	if err := db.SeeDevice(ctx, "HW-1", "something else", t0.Add(time.Minute)); err != nil {
		t.Fatal(err)
	}
	name := "Anna's Mac"
	d, err := db.ChangeDevice(ctx, "HW-1", DeviceChange{Name: &name}, t0.Add(2*time.Minute))
	if err != nil {
		t.Fatal(err)
	}
	if d.Status != DevicePending || d.FirstPrompt != "what time is it" || !d.FirstSeen.Equal(t0) || d.Name != name {
		t.Fatalf("after sighting and rename: %+v", d)
	}
	if d.Version <= v0 {
		t.Errorf("version %d did not grow past %d", d.Version, v0)
	}
	approved := DeviceApproved
	d, _ = db.ChangeDevice(ctx, "HW-1", DeviceChange{Status: &approved}, t0.Add(3*time.Minute))
	if d.Status != DeviceApproved || !d.ApprovedAt.Equal(t0.Add(3*time.Minute)) || d.Name != name {
		t.Fatalf("approved: %+v", d)
	}
	turns, tokens := int64(2), int64(0)
	sum := "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef"
	d, _ = db.ChangeDevice(ctx, "HW-1", DeviceChange{SetLimits: true, DailyTurns: &turns, DailyTokens: &tokens, TokenSHA256: &sum}, t0)
	if d.DailyTurns == nil || *d.DailyTurns != 2 || d.DailyTokens == nil || *d.DailyTokens != 0 || d.TokenSHA256 != sum {
		t.Fatalf("limits and token: %+v", d)
	}
	empty := ""
	d, _ = db.ChangeDevice(ctx, "HW-1", DeviceChange{SetLimits: true, TokenSHA256: &empty}, t0)
	if d.DailyTurns != nil || d.DailyTokens != nil || d.TokenSHA256 != "" {
		t.Fatalf("limits reset and token removed: %+v", d)
	}
	revoked := DeviceRevoked
	d, _ = db.ChangeDevice(ctx, "HW-1", DeviceChange{Status: &revoked}, t0.Add(4*time.Minute))
	if d.Status != DeviceRevoked || d.RevokedAt.IsZero() || d.ApprovedAt.IsZero() {
		t.Fatalf("revoked: %+v", d)
	}
	// Approving ahead of the first request creates the device.
	d, err = db.ChangeDevice(ctx, "HW-2", DeviceChange{Status: &approved}, t0)
	if err != nil || d.Status != DeviceApproved {
		t.Fatalf("approve unseen: %+v, %v", d, err)
	}
	bad := "deleted"
	if _, err := db.ChangeDevice(ctx, "HW-2", DeviceChange{Status: &bad}, t0); err == nil {
		t.Error("unknown status accepted")
	}
	all, err := db.Devices(ctx)
	if err != nil || len(all) != 2 {
		t.Fatalf("devices: %d, %v", len(all), err)
	}
	hw1 := all[0]
	if hw1.HardwareID != "HW-1" {
		hw1 = all[1]
	}
	changed, err := db.DevicesChangedSince(ctx, hw1.Version-1)
	if err != nil || len(changed) != 2 || changed[0].HardwareID != "HW-1" || changed[1].HardwareID != "HW-2" {
		t.Fatalf("changed since HW-1's last change: %+v, %v", changed, err)
	}
	if changed, _ := db.DevicesChangedSince(ctx, changed[1].Version); len(changed) != 0 {
		t.Errorf("changed since the latest: %+v", changed)
	}
	if v, _ := db.DevicesVersion(ctx); v != all[0].Version && v != all[1].Version {
		t.Errorf("version %d is no device's", v)
	}
}

func TestUseSince(t *testing.T) {
	db := openTest(t)
	ctx := context.Background()
	midnight := time.Date(2026, 12, 2, 0, 0, 0, 0, time.UTC)
	for i, at := range []time.Time{midnight.Add(-time.Minute), midnight, midnight.Add(time.Hour)} {
		if err := db.SaveTurn(ctx, testTurn("HW-1", "s"+string(rune('a'+i)), at)); err != nil {
			t.Fatal(err)
		}
	}
	if err := db.RecordUsage(ctx, Usage{HardwareID: "HW-1", Source: SourceMemory, InputTokens: 10, OutputTokens: 2, At: midnight.Add(time.Hour)}); err != nil {
		t.Fatal(err)
	}
	u, err := db.UseSince(ctx, "HW-1", midnight)
	if err != nil {
		t.Fatal(err)
	}
	// Two turns today (120+8 tokens each) and one memory analysis (12).
	if u.Turns != 2 || u.Tokens != 2*128+12 {
		t.Errorf("use since midnight %+v, want 2 turns, %d tokens", u, 2*128+12)
	}
	by, err := db.UseSinceByDevice(ctx, midnight)
	if err != nil || by["HW-1"] != u {
		t.Errorf("by device %+v, %v; want HW-1 = %+v", by, err, u)
	}
	if u, _ := db.UseSince(ctx, "HW-2", midnight); u != (DayUse{}) {
		t.Errorf("unknown device used %+v", u)
	}
}

// BenchmarkDevicesVersion is what every COMMIT pays to see device changes
// made by `nexy devices` in another process.
func BenchmarkDevicesVersion(b *testing.B) {
	db := openTest(b)
	ctx := context.Background()
	approved := DeviceApproved
	for i := range 200 {
		if _, err := db.ChangeDevice(ctx, "HW-"+string(rune('A'+i%26))+string(rune('a'+i/26)), DeviceChange{Status: &approved}, time.Now()); err != nil {
			b.Fatal(err)
		}
	}
	b.ReportAllocs()
	cpu0 := cputime.Self()
	for b.Loop() {
		if _, err := db.DevicesVersion(ctx); err != nil {
			b.Fatal(err)
		}
	}
	cputime.Report(b, cpu0)
}
