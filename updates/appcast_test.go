package updates

import (
	"crypto/ed25519"
	"encoding/base64"
	"encoding/xml"
	"io"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"testing"
	"time"
)

// The golden appcasts: both channels as served, and rendered cases for a
// critical+phased+notes release, an empty channel and hostile text.
func TestAppcastGolden(t *testing.T) {
	f := openFeed(t, fixture(t))
	for _, c := range []struct{ path, file string }{
		{"/updates/appcast.xml", "appcast-stable.xml"},
		{"/updates/appcast-beta.xml", "appcast-beta.xml"},
	} {
		w := get(f, "GET", c.path)
		if w.Code != 200 {
			t.Fatalf("%s: %d %s", c.path, w.Code, w.Body)
		}
		golden(t, c.file, w.Body.Bytes())
	}

	critical := Release{Version: "2.0.0", Build: 200, File: "Nexy-2.0.0.dmg", Length: 123456789,
		SHA256: strings.Repeat("ab", 32), EdSignature: base64.StdEncoding.EncodeToString(make([]byte, 64)),
		PubDate: time.Date(2025, 7, 14, 9, 30, 0, 0, time.FixedZone("CEST", 2*3600)), Critical: true,
		PhasedRolloutInterval: 86400, ReleaseNotesLink: "https://nexy.example.com/notes/2.0.0.html", MinimumSystemVersion: "14.0"}
	hostile := critical
	hostile.Version = `2.0 <b>"bold"</b> & 'more' ]]>`
	hostile.Critical, hostile.PhasedRolloutInterval = false, 0
	hostile.ReleaseNotesLink = `https://evil.example.com/notes?a=1&b="><script>alert('x')</script>`
	hostile.File = "Nexy+2.0.dmg"
	for _, c := range []struct {
		file     string
		channel  string
		releases []Release
	}{
		{"appcast-critical.xml", Stable, []Release{critical}},
		{"appcast-empty.xml", Beta, nil},
		{"appcast-hostile.xml", Stable, []Release{hostile}},
	} {
		if err := (&Manifest{Channel: c.channel, Releases: c.releases}).Validate(); err != nil {
			t.Fatalf("%s: the case is not a valid manifest: %v", c.file, err)
		}
		body, err := renderAppcast(c.channel, "https://updates.example.com", c.releases)
		if err != nil {
			t.Fatal(err)
		}
		golden(t, c.file, body)
		p, err := parseAppcast(body)
		if err != nil {
			t.Fatalf("%s: not well-formed: %v", c.file, err)
		}
		// Escaped, not interpreted: the text reads back exactly.
		for i, it := range p.Channel.Items {
			r := c.releases[i]
			if it.ShortVersion != r.Version || it.Enclosure.ShortVersion != r.Version || it.NotesLink != r.ReleaseNotesLink || (it.Critical != nil) != r.Critical {
				t.Errorf("%s: item reads back as %+v, want %+v", c.file, it, r)
			}
		}
	}
}

// The appcast as a client parses it: namespaced names resolved.
type parsedFeed struct {
	Channel struct {
		Title string       `xml:"title"`
		Items []parsedItem `xml:"item"`
	} `xml:"channel"`
}

type parsedItem struct {
	Title         string    `xml:"title"`
	PubDate       string    `xml:"pubDate"`
	Version       string    `xml:"http://www.andymatuschak.org/xml-namespaces/sparkle version"`
	ShortVersion  string    `xml:"http://www.andymatuschak.org/xml-namespaces/sparkle shortVersionString"`
	MinimumSystem string    `xml:"http://www.andymatuschak.org/xml-namespaces/sparkle minimumSystemVersion"`
	NotesLink     string    `xml:"http://www.andymatuschak.org/xml-namespaces/sparkle releaseNotesLink"`
	Critical      *struct{} `xml:"http://www.andymatuschak.org/xml-namespaces/sparkle criticalUpdate"`
	Phased        string    `xml:"http://www.andymatuschak.org/xml-namespaces/sparkle phasedRolloutInterval"`
	Enclosure     struct {
		URL           string `xml:"url,attr"`
		Length        string `xml:"length,attr"`
		Type          string `xml:"type,attr"`
		Version       string `xml:"http://www.andymatuschak.org/xml-namespaces/sparkle version,attr"`
		ShortVersion  string `xml:"http://www.andymatuschak.org/xml-namespaces/sparkle shortVersionString,attr"`
		MinimumSystem string `xml:"http://www.andymatuschak.org/xml-namespaces/sparkle minimumSystemVersion,attr"`
		EdSignature   string `xml:"http://www.andymatuschak.org/xml-namespaces/sparkle edSignature,attr"`
	} `xml:"enclosure"`
}

func parseAppcast(body []byte) (*parsedFeed, error) {
	var p parsedFeed
	err := xml.Unmarshal(body, &p)
	return &p, err
}

// A client's view: fetch the appcast, download every local enclosure and
// verify its signature with the public key; the enclosure attributes the
// shipped client reads agree with Sparkle 2's item elements.
func TestAppcastSignaturesVerify(t *testing.T) {
	dir := fixture(t)
	f := openFeed(t, dir, func(o *Options) { o.PublicURL = "" })
	mux := http.NewServeMux()
	mux.Handle("/updates/", f)
	srv := httptest.NewServer(mux)
	defer srv.Close()
	for _, feed := range []string{"/updates/appcast.xml", "/updates/appcast-beta.xml"} {
		body := fetch(t, srv.URL+feed)
		p, err := parseAppcast(body)
		if err != nil {
			t.Fatal(err)
		}
		for i, it := range p.Channel.Items {
			e := it.Enclosure
			if e.Version != it.Version || e.ShortVersion != it.ShortVersion || e.MinimumSystem != it.MinimumSystem || e.Type != "application/octet-stream" {
				t.Errorf("%s item %d: enclosure %+v disagrees with the item %+v", feed, i, e, it)
			}
			if _, err := time.Parse(time.RFC1123Z, it.PubDate); err != nil {
				t.Errorf("%s item %d: pubDate %q: %v", feed, i, it.PubDate, err)
			}
			if !strings.HasPrefix(e.URL, srv.URL+"/updates/downloads/") {
				continue // hosted elsewhere
			}
			data := fetch(t, e.URL)
			sig, _ := base64.StdEncoding.DecodeString(e.EdSignature)
			if strconv.Itoa(len(data)) != e.Length || !ed25519.Verify(testPub(), data, sig) {
				t.Errorf("%s item %d: %d bytes (length %s), signature verifies: %v", feed, i, len(data), e.Length, ed25519.Verify(testPub(), data, sig))
			}
		}
	}
	// The shipped client reads the first item: the newest build.
	p, _ := parseAppcast(fetch(t, srv.URL+"/updates/appcast.xml"))
	if len(p.Channel.Items) != 2 || p.Channel.Items[0].Enclosure.Version != "161" || p.Channel.Items[1].Enclosure.Version != "160" {
		t.Errorf("stable items %+v, want builds 161 then 160", p.Channel.Items)
	}
}

func fetch(t *testing.T, url string) []byte {
	t.Helper()
	resp, err := http.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil || resp.StatusCode != 200 {
		t.Fatalf("GET %s: %d %v %s", url, resp.StatusCode, err, b)
	}
	return b
}

// Without updates.public_url the links follow the request: https only
// when the connection itself is TLS, whatever X-Forwarded-Proto says.
func TestAppcastBaseURL(t *testing.T) {
	f := openFeed(t, fixture(t), func(o *Options) { o.PublicURL = "" })
	r := httptest.NewRequest("GET", "http://nexy.local:8080/updates/appcast-beta.xml", nil)
	r.Header.Set("X-Forwarded-Proto", "https")
	w := httptest.NewRecorder()
	f.ServeHTTP(w, r)
	if miss := contains(w.Body.String(), `url="http://nexy.local:8080/updates/downloads/Nexy-1.7.0b1.dmg"`); miss != "" {
		t.Errorf("plain request: missing %s in\n%s", miss, w.Body)
	}
	r = httptest.NewRequest("GET", "https://nexy.local/updates/appcast-beta.xml", nil) // sets r.TLS
	w = httptest.NewRecorder()
	f.ServeHTTP(w, r)
	if miss := contains(w.Body.String(), `url="https://nexy.local/updates/downloads/Nexy-1.7.0b1.dmg"`, `<link>https://nexy.local/updates/appcast-beta.xml</link>`); miss != "" {
		t.Errorf("TLS request: missing %s in\n%s", miss, w.Body)
	}
}

// pubDate is the release's date: the same on every render and reload
// (Sparkle's phased rollout counts from it).
func TestAppcastStablePubDate(t *testing.T) {
	dir := fixture(t)
	f := openFeed(t, dir)
	first := get(f, "GET", "/updates/appcast.xml").Body.String()
	f2 := openFeed(t, dir, func(o *Options) { o.Now = func() time.Time { return day0.AddDate(1, 0, 0) } })
	if again := get(f2, "GET", "/updates/appcast.xml").Body.String(); again != first {
		t.Errorf("the appcast changed with the clock:\n%s\n---\n%s", first, again)
	}
}
