package server

import (
	"context"
	"encoding/base64"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/nexy-server/nexy/config"
	"github.com/nexy-server/nexy/llm/llmtest"
)

func TestCollectBufferLastWinsAndBounds(t *testing.T) {
	now := time.Unix(1000, 0)
	b := newCollectBuffer(collectLimits{ttl: time.Minute, maxEntries: 2, maxBytes: 64, perDevice: 8, perDeviceBytes: 64})
	b.now = func() time.Time { return now }
	put := func(sid string, seq int32, text string) (bool, *turnError) {
		r := collectReq(sid, seq, text)
		r.HardwareId = "HW"
		return b.put(r, "")
	}
	if ok, err := put("a", 1, "what"); !ok || err != nil {
		t.Fatal(ok, err)
	}
	if ok, _ := put("a", 3, "what time"); !ok {
		t.Fatal("newer seq refused")
	}
	if ok, _ := put("a", 2, "stale"); ok {
		t.Fatal("older seq accepted")
	}
	if ok, _ := put("a", 4, ""); ok { // present-but-empty text brings nothing new
		t.Fatal("empty text accepted as new")
	}
	if c, _ := b.peek("HW", "a"); c.text != "what time" || c.textSeq != 3 {
		t.Fatalf("peek = %+v", c)
	}
	put("b", 1, "second")
	r := collectReq("c", 1, "third")
	r.HardwareId = "OTHER"
	if _, err := b.put(r, ""); err == nil || !strings.Contains(err.msg, "collect_limit_exceeded") {
		t.Fatalf("entry bound not enforced: %v", err)
	}
	if _, err := put("a", 5, strings.Repeat("x", 100)); err == nil {
		t.Fatal("byte bound not enforced")
	}
	// Expiry frees room, and expired data is never handed to a COMMIT.
	now = now.Add(2 * time.Minute)
	if _, ok := b.peek("HW", "a"); ok {
		t.Fatal("expired entry returned")
	}
	if ok, err := put("c", 1, "third"); !ok || err != nil {
		t.Fatalf("after expiry: %v %v", ok, err)
	}
	if _, err := put("a", 9, "back after expiry"); err != nil { // expired "a" is not merged
		t.Fatal(err)
	}
	if c, _ := b.peek("HW", "a"); c.text != "back after expiry" || c.screenshot != "" {
		t.Fatalf("expired data merged: %+v", c)
	}
	b.drop("HW", "a")
	if n, bytes := b.stats(); n != 1 || bytes != len("third") {
		t.Fatalf("stats = %d entries, %d bytes", n, bytes)
	}
	b.drop("HW", "c")
	if n, bytes := b.stats(); n != 0 || bytes != 0 {
		t.Fatalf("after drop: %d entries, %d bytes", n, bytes)
	}
}

// TestCollectAccountingUnderExpiry is the reviewer's drift scenario: an
// expired entry updated while the buffer is full must not be counted twice.
func TestCollectAccountingUnderExpiry(t *testing.T) {
	now := time.Unix(1000, 0)
	b := newCollectBuffer(collectLimits{ttl: time.Minute, maxEntries: 10, maxBytes: 64, perDevice: 10, perDeviceBytes: 64})
	b.now = func() time.Time { return now }
	put := func(sid string, seq int32, text string) *turnError {
		r := collectReq(sid, seq, text)
		r.HardwareId = "HW"
		_, err := b.put(r, "")
		return err
	}
	put("a", 1, strings.Repeat("a", 30))
	put("b", 1, strings.Repeat("b", 30))
	now = now.Add(61 * time.Second)
	if err := put("a", 2, strings.Repeat("c", 35)); err != nil {
		t.Fatal(err)
	}
	if _, bytes := b.stats(); bytes != 35 {
		t.Fatalf("bytes = %d, want 35", bytes)
	}
	b.drop("HW", "a")
	if n, bytes := b.stats(); n != 0 || bytes != 0 {
		t.Fatalf("after drop: %d entries, %d bytes", n, bytes)
	}
}

// TestCollectScreenshotAndTextOrdered separately: a screenshot COLLECT that
// arrives after a newer text COLLECT still counts.
func TestCollectScreenshotAndTextOrderedSeparately(t *testing.T) {
	b := newCollectBuffer(collectLimits{ttl: time.Minute, maxEntries: 10, maxBytes: 1 << 20, perDevice: 10, perDeviceBytes: 1 << 20})
	text := collectReq("s", 3, "what is this")
	shot := collectReq("s", 2, "")
	shot.Screenshot = ptr(webpBase64)
	if ok, _ := b.put(text, ""); !ok {
		t.Fatal("text refused")
	}
	if ok, _ := b.put(shot, "image/webp"); !ok {
		t.Fatal("older-numbered screenshot dropped although no screenshot was buffered")
	}
	if c, _ := b.peek(testHW, "s"); c.text != "what is this" || c.screenshot != webpBase64 || c.mime != "image/webp" {
		t.Fatalf("peek = %+v", c)
	}
}

func TestScreenshotMIME(t *testing.T) {
	png := base64.StdEncoding.EncodeToString([]byte("\x89PNG\r\n\x1a\n" + strings.Repeat("z", 5000)))
	jpg := base64.StdEncoding.EncodeToString([]byte("\xff\xd8\xff\xe0rest"))
	for in, want := range map[string]string{webpBase64: "image/webp", png: "image/png", jpg: "image/jpeg"} {
		if got, err := screenshotMIME(in); err != nil || got != want {
			t.Errorf("screenshotMIME = %q, %v; want %q", got, err, want)
		}
	}
	bad := png[:4096] + "!!!!" + png[4100:]
	if _, err := screenshotMIME(bad); err == nil || !strings.Contains(err.msg, "4096") {
		t.Errorf("bad base64 in the second block: %v", err)
	}
}

func FuzzScreenshotMIME(f *testing.F) {
	f.Add(webpBase64)
	f.Add("aGVsbG8=")
	f.Add("")
	f.Fuzz(func(t *testing.T, s string) {
		mime, err := screenshotMIME(s)
		if err == nil && mime == "" {
			t.Fatal("accepted without a MIME type")
		}
		if err == nil {
			if _, derr := base64.StdEncoding.DecodeString(s); derr != nil {
				t.Fatalf("accepted invalid base64 %q", s)
			}
		}
	})
}

func TestMaskerHidesSecrets(t *testing.T) {
	var out syncBuffer
	log := NewLogger(&out, config.Log{Level: "debug", Format: "text"}, []string{"generated-secret-123"})
	log.Info("call failed", "error", "POST https://x/v1?key=abcdef123456: Bearer sk-abcdefghijklmnop rejected generated-secret-123",
		"api_key", "whatever", "session_id", "keep-me")
	got := out.String()
	for _, leaked := range []string{"abcdef123456", "sk-abcdefghijklmnop", "generated-secret-123", "whatever"} {
		if strings.Contains(got, leaked) {
			t.Errorf("log leaks %q: %s", leaked, got)
		}
	}
	if !strings.Contains(got, "keep-me") || !strings.Contains(got, "ts=") {
		t.Errorf("log lost ordinary fields: %s", got)
	}
}

func TestIdleTimeoutStopsStalledTurn(t *testing.T) {
	fake := newStalling(t)
	cfg := testConfig(t, "openai", fake.URL, newSpeechFake(t).URL)
	cfg.Limits.IdleTimeout.Duration = 300 * time.Millisecond
	h := startServer(t, cfg)
	msgs, err := h.call(t, commitReq(newSession(), "hello"))
	if len(msgs) != 1 || !strings.Contains(msgs[0].GetErrorMessage(), "stalled") || err == nil {
		t.Fatalf("stalled turn: %v %v", msgs, err)
	}
	waitClosed(t, fake.Disconnected(), "the stalled LLM request to be aborted")
}

// newStalling is an LLM that sends one delta and then nothing.
func newStalling(t *testing.T) *llmtest.Server {
	return llmtest.NewOpenAI(t, llmtest.Script{Deltas: []string{`{"text": "Hm`, `m"}`}, Hang: true, HangAfter: 2})
}

// TestCollectPerDeviceBounds: one device's flood only ever displaces its own
// oldest utterances; another device still gets its COLLECT in.
func TestCollectPerDeviceBounds(t *testing.T) {
	now := time.Unix(1000, 0)
	b := newCollectBuffer(collectLimits{ttl: time.Minute, maxEntries: 4, maxBytes: 1000, perDevice: 2, perDeviceBytes: 100})
	b.now = func() time.Time { now = now.Add(time.Millisecond); return now }
	put := func(hw, sid, text string) *turnError {
		r := collectReq(sid, 1, text)
		r.HardwareId = hw
		_, err := b.put(r, "")
		return err
	}
	for i := range 1024 {
		if err := put("FLOOD", newSession(), "x"); err != nil {
			t.Fatalf("flood %d: %v", i, err)
		}
	}
	if err := put("OTHER", "s1", "hello"); err != nil {
		t.Fatalf("another device was refused during a flood: %v", err)
	}
	if n, bytes := b.stats(); n != 3 || bytes != 2+5 {
		t.Fatalf("stats = %d entries, %d bytes; want the flood's last 2 and the other device's 1", n, bytes)
	}
	// Bytes: a device over its byte bound drops its own oldest utterance.
	put("BIG", "a", strings.Repeat("a", 60))
	put("BIG", "b", strings.Repeat("b", 60))
	if _, ok := b.peek("BIG", "a"); ok {
		t.Fatal("the older utterance should have made room for the newer one")
	}
	if c, ok := b.peek("BIG", "b"); !ok || len(c.text) != 60 {
		t.Fatalf("newest utterance lost: %+v", c)
	}
	if err := put("HUGE", "a", strings.Repeat("h", 101)); err == nil || !strings.Contains(err.msg, "collect_limit_exceeded") {
		t.Fatalf("an utterance over limits.collect_per_device_bytes: %v", err)
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	total := 0
	for hw, d := range b.devices {
		n, bytes := 0, 0
		for k, c := range b.entries {
			if k.hardwareID == hw {
				n, bytes = n+1, bytes+c.size()
			}
		}
		if n != d.entries || bytes != d.bytes {
			t.Errorf("device %s: accounted %+v, holds %d entries %d bytes", hw, *d, n, bytes)
		}
		total += n
	}
	if total != len(b.entries) {
		t.Errorf("per-device entries %d != %d", total, len(b.entries))
	}
}

// TestCollectSweptOnTimer: expired data is dropped without any new COLLECT.
func TestCollectSweptOnTimer(t *testing.T) {
	var mu sync.Mutex
	now := time.Unix(1000, 0)
	b := newCollectBuffer(collectLimits{ttl: time.Minute, maxEntries: 10, maxBytes: 1 << 20, perDevice: 10, perDeviceBytes: 1 << 20})
	b.now = func() time.Time { mu.Lock(); defer mu.Unlock(); return now }
	req := collectReq("s", 1, "abandoned")
	req.Screenshot = ptr(webpBase64)
	if _, err := b.put(req, "image/webp"); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { defer close(done); b.sweepEvery(ctx, time.Millisecond) }()
	defer func() { cancel(); waitClosed(t, done, "sweeper to stop") }()
	mu.Lock()
	now = now.Add(61 * time.Second)
	mu.Unlock()
	deadline := time.Now().Add(10 * time.Second)
	for {
		if n, bytes := b.stats(); n == 0 && bytes == 0 {
			return
		}
		if time.Now().After(deadline) {
			t.Fatal("expired COLLECT data was not swept on the timer")
		}
		time.Sleep(time.Millisecond)
	}
}

func TestShortIDTellsDevicesApart(t *testing.T) {
	a, b := shortID("6E3F2C1A-0B4D-4E5F-8A9B-0C1D2E3F4A5B"), shortID("6E3F2C1A-0B4D-4E5F-8A9B-0C1D2E3F4A5C")
	if a == b || !strings.HasPrefix(a, "6E3F2C1A~") || len(a) > 16 {
		t.Fatalf("shortID: %q and %q", a, b)
	}
	if a != shortID("6E3F2C1A-0B4D-4E5F-8A9B-0C1D2E3F4A5B") {
		t.Fatal("shortID is not stable")
	}
	if shortID("short-id") != "short-id" {
		t.Fatal("a short id is kept whole")
	}
}

func TestNeedsInternet(t *testing.T) {
	for _, c := range []struct {
		provider, url string
		want          bool
	}{
		{"gemini", "", true}, {"edge", "", true}, {"command", "", false},
		{"openai", "http://localhost:11434/v1", false}, {"openai", "http://127.0.0.1:8880/v1", false},
		{"openai", "http://192.168.1.20:8080/v1", false}, {"openai", "http://[::1]:8080/v1", false},
		{"openai", "https://api.openai.com/v1", true}, {"openai", "http://kokoro.local:8880/v1", false},
	} {
		if got := needsInternet(c.provider, c.url); got != c.want {
			t.Errorf("needsInternet(%q, %q) = %v", c.provider, c.url, got)
		}
	}
}

func TestLogCapsLongValues(t *testing.T) {
	var buf syncBuffer
	log := NewLogger(&buf, config.Log{Level: "info", Format: "text"}, nil)
	log.Info("x", "source", strings.Repeat("é", 1<<20))
	if n := len(buf.String()); n > 4096 || !strings.Contains(buf.String(), "(2097152 bytes)") {
		t.Fatalf("log line of %d bytes: %.100s", n, buf.String())
	}
}

// TestCollectRefusalEvictsNothing: a COLLECT the whole buffer cannot take
// is refused without first throwing away the device's older utterance.
func TestCollectRefusalEvictsNothing(t *testing.T) {
	b := newCollectBuffer(collectLimits{ttl: time.Minute, maxEntries: 2, maxBytes: 100, perDevice: 1, perDeviceBytes: 100})
	put := func(hw, sid, text string) *turnError {
		r := collectReq(sid, 1, text)
		r.HardwareId = hw
		_, err := b.put(r, "")
		return err
	}
	if put("A", "a1", strings.Repeat("a", 10)) != nil || put("B", "b1", strings.Repeat("b", 80)) != nil {
		t.Fatal("setup refused")
	}
	if err := put("A", "a2", strings.Repeat("c", 95)); err == nil || !strings.Contains(err.msg, "collect_limit_exceeded") {
		t.Fatalf("over the whole buffer: %v", err)
	}
	if _, ok := b.peek("A", "a1"); !ok {
		t.Fatal("a refused COLLECT evicted the device's older utterance")
	}
	if err := put("A", "a3", strings.Repeat("d", 15)); err != nil { // fits once a1 makes room
		t.Fatal(err)
	}
	if _, ok := b.peek("A", "a1"); ok {
		t.Fatal("a1 should have made room for a3")
	}
	if n, bytes := b.stats(); n != 2 || bytes != 95 {
		t.Fatalf("stats = %d entries, %d bytes", n, bytes)
	}
}
