package updates

import (
	"bytes"
	"encoding/xml"
	"net/url"
	"strconv"
	"time"
)

// xmlHeader is upstream's declaration, byte for byte.
const xmlHeader = `<?xml version="1.0" encoding="utf-8"?>` + "\n"

// SparkleNS is Sparkle's XML namespace.
const SparkleNS = "http://www.andymatuschak.org/xml-namespaces/sparkle"

// The appcast's XML. encoding/xml writes the "sparkle:" prefixes literally
// (the namespace is declared once on <rss>), which is the shape Sparkle
// and the shipped client's XPath both read.
type rssDoc struct {
	XMLName xml.Name   `xml:"rss"`
	Version string     `xml:"version,attr"`
	NS      string     `xml:"xmlns:sparkle,attr"`
	Channel rssChannel `xml:"channel"`
}

type rssChannel struct {
	Title       string    `xml:"title"`
	Link        string    `xml:"link"`
	Description string    `xml:"description"`
	Language    string    `xml:"language"`
	Items       []rssItem `xml:"item"`
}

type rssItem struct {
	Title       string `xml:"title"`
	Description string `xml:"description,omitempty"`
	PubDate     string `xml:"pubDate"`
	// Sparkle 2 reads the versions and the minimum OS as item elements.
	Version       string    `xml:"sparkle:version"`
	ShortVersion  string    `xml:"sparkle:shortVersionString"`
	MinimumSystem string    `xml:"sparkle:minimumSystemVersion,omitempty"`
	NotesLink     string    `xml:"sparkle:releaseNotesLink,omitempty"`
	Critical      *struct{} `xml:"sparkle:criticalUpdate"`
	Phased        int64     `xml:"sparkle:phasedRolloutInterval,omitempty"`
	Enclosure     enclosure `xml:"enclosure"`
}

// enclosure repeats the versions and the minimum OS as attributes: the
// shipped client reads them only there (client.md §8).
type enclosure struct {
	URL           string `xml:"url,attr"`
	Length        int64  `xml:"length,attr"`
	Type          string `xml:"type,attr"`
	Version       string `xml:"sparkle:version,attr"`
	ShortVersion  string `xml:"sparkle:shortVersionString,attr"`
	MinimumSystem string `xml:"sparkle:minimumSystemVersion,attr,omitempty"`
	EdSignature   string `xml:"sparkle:edSignature,attr"`
}

// channelInfo is the feed-level text of each channel; upstream's title,
// description and language are kept so the feed looks as it did.
var channelInfo = map[string]struct{ title, path string }{
	Stable: {"Nexy Updates", "/updates/appcast.xml"},
	Beta:   {"Nexy Updates (beta)", "/updates/appcast-beta.xml"},
}

// renderAppcast writes a channel's feed: one <item> per release, newest
// first, so both Sparkle (which picks the best item it can install) and
// the shipped client (which reads the first item) see the current release.
// base is the server's absolute URL without a trailing slash; artifacts in
// downloads/ are linked below it.
func renderAppcast(channel, base string, releases []Release) ([]byte, error) {
	info := channelInfo[channel]
	doc := rssDoc{Version: "2.0", NS: SparkleNS, Channel: rssChannel{
		Title: info.title, Link: base + info.path, Description: "Updates for Nexy AI Assistant", Language: "en",
	}}
	for i := range releases {
		doc.Channel.Items = append(doc.Channel.Items, itemFor(&releases[i], base))
	}
	var buf bytes.Buffer
	buf.WriteString(xmlHeader)
	enc := xml.NewEncoder(&buf)
	enc.Indent("", "  ")
	if err := enc.Encode(doc); err != nil {
		return nil, err
	}
	buf.WriteByte('\n')
	return buf.Bytes(), nil
}

func itemFor(r *Release, base string) rssItem {
	build := strconv.FormatInt(r.Build, 10)
	it := rssItem{
		Title:   "Version " + r.Version,
		PubDate: r.PubDate.UTC().Format(time.RFC1123Z),
		Version: build, ShortVersion: r.Version, MinimumSystem: r.MinimumSystemVersion,
		NotesLink: r.ReleaseNotesLink, Phased: r.PhasedRolloutInterval,
		Enclosure: enclosure{URL: artifactURL(r, base), Length: r.Length, Type: "application/octet-stream",
			Version: build, ShortVersion: r.Version, MinimumSystem: r.MinimumSystemVersion, EdSignature: r.EdSignature},
	}
	if r.ReleaseNotesLink == "" {
		// Without a notes page Sparkle shows the description; upstream's text.
		it.Description = "Update to version " + r.Version
	}
	if r.Critical {
		it.Critical = &struct{}{}
	}
	return it
}

// artifactURL is the enclosure's absolute URL.
func artifactURL(r *Release, base string) string {
	if r.URL != "" {
		return r.URL
	}
	return base + "/updates/" + DownloadsDir + "/" + url.PathEscape(r.File)
}
