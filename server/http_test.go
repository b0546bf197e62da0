package server

import (
	"context"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"strings"
	"testing"

	"github.com/nexy-server/nexy/internal/buildinfo"
	"github.com/nexy-server/nexy/store"
)

// fakeFeed stands in for the update feed: a release, its own Cache-Control
// on the appcast, and none on other paths.
type fakeFeed struct{}

func (fakeFeed) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if r.URL.Path == "/updates/appcast.xml" {
		w.Header().Add("Cache-Control", "public, max-age=60")
		_, _ = io.WriteString(w, "<rss/>")
		return
	}
	http.NotFound(w, r)
}

func (fakeFeed) Latest() (string, int64, bool) { return "1.4.2", 142, true }

func (fakeFeed) Status() any {
	return map[string]any{"channels": []string{"stable"}, "degraded": false}
}

// TestHTTPRoutes checks every route and method: status, exactly one correct
// Cache-Control, Allow on 405, and the JSON bodies of /health and the
// billing endpoints.
func TestHTTPRoutes(t *testing.T) {
	cfg := testConfig(t, "openai", "http://127.0.0.1:1/v1", "http://127.0.0.1:1/v1")
	h := startServer(t, cfg, func(d *Deps) { d.Feed = fakeFeed{} })
	base := "http://" + h.srv.HTTPAddr().String()
	const hwQuery = "?hardware_id=" + testHW

	for _, c := range []struct {
		method, path string
		code         int
		cache        string
		allow        string // for 405
	}{
		{"GET", "/health", 200, cacheHealth, ""},
		{"HEAD", "/health", 200, cacheHealth, ""},
		{"POST", "/health", 405, cacheNoStore, "GET, HEAD"},
		{"GET", "/status", 200, cacheNoStore, ""},
		{"HEAD", "/status", 200, cacheNoStore, ""},
		{"DELETE", "/status", 405, cacheNoStore, "GET, HEAD"},
		{"GET", "/metrics", 200, cacheNoStore, ""},
		{"HEAD", "/metrics", 200, cacheNoStore, ""},
		{"PUT", "/metrics", 405, cacheNoStore, "GET, HEAD"},
		{"GET", "/api/subscription/status" + hwQuery, 200, cacheNoStore, ""},
		{"HEAD", "/api/subscription/status" + hwQuery, 200, cacheNoStore, ""},
		{"GET", "/api/subscription/status", 400, cacheNoStore, ""},
		{"GET", "/api/subscription/status?hardware_id=unknown", 400, cacheNoStore, ""},
		{"POST", "/api/subscription/status", 405, cacheNoStore, "GET, HEAD"},
		{"POST", "/api/subscription/checkout", 503, cacheNoStore, ""},
		{"GET", "/api/subscription/checkout", 405, cacheNoStore, "POST"},
		{"POST", "/api/subscription/portal", 503, cacheNoStore, ""},
		{"GET", "/api/subscription/portal", 405, cacheNoStore, "POST"},
		{"GET", "/", 404, cacheNoStore, ""},
		{"GET", "/nope", 404, cacheNoStore, ""},
		{"POST", "/nope", 404, cacheNoStore, ""},
		{"GET", "/health/extra", 404, cacheNoStore, ""},
		{"GET", "/updates/appcast.xml", 200, "public, max-age=60", ""},
		{"GET", "/updates/unknown", 404, cacheNoStore, ""},
	} {
		req, err := http.NewRequestWithContext(context.Background(), c.method, base+c.path, strings.NewReader(`{"hardware_id":"`+testHW+`"}`))
		if err != nil {
			t.Fatal(err)
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		_, _ = io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		if resp.StatusCode != c.code {
			t.Errorf("%s %s: %d, want %d", c.method, c.path, resp.StatusCode, c.code)
		}
		if got := resp.Header.Values("Cache-Control"); len(got) != 1 || got[0] != c.cache {
			t.Errorf("%s %s: Cache-Control %q, want exactly %q", c.method, c.path, got, c.cache)
		}
		if c.allow != "" && resp.Header.Get("Allow") != c.allow {
			t.Errorf("%s %s: Allow %q, want %q", c.method, c.path, resp.Header.Get("Allow"), c.allow)
		}
	}

	var health map[string]any
	getJSON(t, base+"/health", &health)
	if health["status"] != "OK" || health["latest_version"] != "1.4.2" || health["latest_build"] != float64(142) ||
		health["server_version"] != buildinfo.Current().Version || health["commit"] == nil {
		t.Errorf("/health = %v", health)
	}

	var sub map[string]any
	getJSON(t, base+"/api/subscription/status"+hwQuery, &sub)
	for k, v := range map[string]any{"status": "active", "active": true, "billing_active": true, "billing_action": "none",
		"cancel_at_period_end": false, "stripe_mode": "test", "unlimited": true, "subscription_enabled": false} {
		if sub[k] != v {
			t.Errorf("subscription status %s = %v, want %v", k, sub[k], v)
		}
	}
	resp, err := http.Post(base+"/api/subscription/checkout", "application/json", strings.NewReader(`{"hardware_id":"`+testHW+`"}`))
	if err != nil {
		t.Fatal(err)
	}
	var checkout map[string]any
	if err := json.NewDecoder(resp.Body).Decode(&checkout); err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if msg, _ := checkout["error"].(string); !strings.Contains(msg, "disabled") || checkout["stripe_mode"] != "test" || checkout["checkout_url"] != nil {
		t.Errorf("checkout = %v", checkout)
	}
	fams := scrape(t, h)
	if n := metricValue(fams, "nexy_http_requests_total", "route", "GET /health", "code", "200"); n < 2 {
		t.Errorf("nexy_http_requests_total{GET /health, 200} = %v", n)
	}
	if n := metricValue(fams, "nexy_http_requests_total", "route", "unmatched", "code", "404"); n < 3 {
		t.Errorf("nexy_http_requests_total{unmatched, 404} = %v", n)
	}
	if strings.Contains(h.log.String(), testHW) {
		t.Errorf("the log names the hardware id of a billing request")
	}
}

// TestStatusDatabase: /status shows the store's size, its newest backup and
// the last drill, the feed's status, and the configured limits and
// providers; no directory appears anywhere in it.
func TestStatusDatabase(t *testing.T) {
	cfg := testConfig(t, "openai", "http://127.0.0.1:1/v1", "http://127.0.0.1:1/v1")
	h := startServer(t, cfg, func(d *Deps) { d.Feed = fakeFeed{} })
	ctx := context.Background()

	st := getStatus(t, h)
	if st.Database == nil || st.Database.SizeBytes <= 0 || st.Database.LastBackup != nil || st.Database.LastGoodDrill != nil || st.Database.Warning == "" {
		t.Fatalf("database before a backup: %+v", st.Database)
	}
	res, err := h.db.Backup(ctx, store.BackupOptions{Dir: cfg.BackupDirectory(), Version: "test"})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := h.db.RunDrill(ctx, cfg.BackupDirectory()); err != nil {
		t.Fatal(err)
	}

	resp, err := http.Get("http://" + h.srv.HTTPAddr().String() + "/status")
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if strings.Contains(string(body), cfg.Server.DataDir) || strings.Contains(string(body), filepath.Dir(res.Path)) {
		t.Errorf("/status names a directory:\n%s", body)
	}
	st = statusResponse{}
	if err := json.Unmarshal(body, &st); err != nil {
		t.Fatal(err)
	}
	db := st.Database
	if db == nil || db.Error != "" || db.LastBackup == nil || db.LastBackup.File != filepath.Base(res.Path) || !db.LastBackup.HasMetadata ||
		db.LastGoodDrill == nil || !db.LastGoodDrill.OK || db.Warning != "" {
		t.Fatalf("database after backup and drill: %s", body)
	}
	var raw map[string]any
	_ = json.Unmarshal(body, &raw)
	limits, _ := raw["limits"].(map[string]any)
	if limits["max_concurrent_streams"] != float64(cfg.Limits.MaxConcurrentStreams) || limits["idle_timeout"] != cfg.Limits.IdleTimeout.Duration.String() {
		t.Errorf("limits = %v", limits)
	}
	if st.Providers.LLM.Provider != "openai" || st.Providers.LLM.Model != cfg.LLM.Model || st.Providers.TTS.Provider != "openai" ||
		st.Versions.Server == "" || st.Status != "OK" || st.UptimeSeconds < 0 || st.StartedAt.IsZero() {
		t.Errorf("status: %s", body)
	}
	for _, stage := range stageNames {
		if _, ok := st.Latency[stage]; !ok {
			t.Errorf("latency lacks %s", stage)
		}
	}
	if u, _ := raw["updates"].(map[string]any); u == nil || u["degraded"] != false {
		t.Errorf("updates = %v", raw["updates"])
	}
}

func getJSON(t *testing.T, url string, v any) {
	t.Helper()
	resp, err := http.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if err := json.NewDecoder(resp.Body).Decode(v); err != nil {
		t.Fatalf("%s: %v", url, err)
	}
}

// TestPprofOnlyWhenAsked: the profiler is off by default; metrics.pprof
// serves it on the plaintext HTTP port, and a connection that did not come
// through that listener is told 404.
func TestPprofOnlyWhenAsked(t *testing.T) {
	get := func(h *harness) int {
		resp, err := http.Get("http://" + h.srv.HTTPAddr().String() + "/debug/pprof/goroutine?debug=1")
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		return resp.StatusCode
	}
	off := startServer(t, testConfig(t, "openai", "http://127.0.0.1:1/v1", "http://127.0.0.1:1/v1"))
	if code := get(off); code != http.StatusNotFound {
		t.Fatalf("pprof off: %d", code)
	}
	cfg := testConfig(t, "openai", "http://127.0.0.1:1/v1", "http://127.0.0.1:1/v1")
	cfg.Metrics.Pprof = true
	on := startServer(t, cfg)
	if code := get(on); code != http.StatusOK {
		t.Fatalf("pprof on: %d", code)
	}
	other := httptest.NewServer(on.srv.routes()) // another listener, as the public port is
	defer other.Close()
	resp, err := http.Get(other.URL + "/debug/pprof/goroutine?debug=1")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusNotFound {
		t.Fatalf("pprof through another listener: %d", resp.StatusCode)
	}
}
