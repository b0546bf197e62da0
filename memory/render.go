package memory

import (
	"slices"
	"strings"
	"time"

	"github.com/nexy-server/nexy/llm"
)

// MaxRenderBytes bounds Render's output: the prompt's memory block
// (llm.MaxPromptMemoryBytes) would otherwise cut the end off blindly.
const MaxRenderBytes = llm.MaxPromptMemoryBytes

// Section titles of Render's output.
const (
	titleFacts = "Facts the user stated:"
	titleDays  = "Recent days:"
	titleTurns = "Recent turns (newest first):"
)

// Render returns the text for the prompt's memory data block (llm
// PromptContext.Memory), "" when nothing is known. Sections, each left out
// when empty, separated by a blank line:
//
//	Facts the user stated:
//	- name: Anna
//	Recent days:
//	- 2026-12-01: asked: …; answered: …
//	Recent turns (newest first):
//	- [14:05 UTC] user: …; assistant: …
//
// Facts are ordered by slot (single-valued first) then id; days newest
// first; turns newest first, with the date added for turns not on now's UTC
// day, each side cut to MaxRenderTurnRunes. Every line is made one line and
// turn texts are redacted, so stored text cannot forge lines in the block.
// Beyond MaxRenderBytes the oldest days go first, then facts from the end
// of the list (notes before contacts before preferences), then the oldest
// turns: the few recent turns carry the conversation ("yes, do that"). The
// output depends only on the arguments.
func Render(s Snapshot, now time.Time) string {
	facts, days, turns := factLines(s.Facts), dayLines(s.Digests), turnLines(s.Recent, now)
	for size := renderedSize(facts, days, turns); size > MaxRenderBytes; {
		list := &turns
		switch {
		case len(days) > 0:
			list = &days
		case len(facts) > 0:
			list = &facts
		}
		size -= len((*list)[len(*list)-1]) + 1
		*list = (*list)[:len(*list)-1]
	}
	var sections []string
	for _, sec := range []string{section(titleFacts, facts), section(titleDays, days), section(titleTurns, turns)} {
		if sec != "" {
			sections = append(sections, sec)
		}
	}
	return strings.Join(sections, "\n\n")
}

// renderedSize is an upper bound of the bytes Render writes for these lines.
func renderedSize(lists ...[]string) int {
	n := len(titleFacts) + len(titleDays) + len(titleTurns) + 4
	for _, l := range lists {
		for _, line := range l {
			n += len(line) + 1
		}
	}
	return n
}

// factLines are the "- slot: text" lines in slot order, then id.
func factLines(facts []Fact) []string {
	facts = slices.Clone(facts)
	slices.SortStableFunc(facts, func(a, b Fact) int {
		if ra, rb := slotRank(NormalizeSlot(a.Slot)), slotRank(NormalizeSlot(b.Slot)); ra != rb {
			return ra - rb
		}
		return cmpID(a.ID, b.ID)
	})
	var lines []string
	for _, f := range facts {
		if text := cutRunes(oneLine(f.Text), MaxFactRunes); text != "" {
			lines = append(lines, "- "+NormalizeSlot(f.Slot)+": "+text)
		}
	}
	return lines
}

// dayLines are the "- day: text" lines, newest day first.
func dayLines(days []Digest) []string {
	days = slices.Clone(days)
	slices.SortStableFunc(days, func(a, b Digest) int { return strings.Compare(b.Day, a.Day) })
	var lines []string
	for _, d := range days {
		if text := cutRunes(oneLine(d.Text), MaxDayDigestRunes); text != "" {
			lines = append(lines, "- "+cutRunes(oneLine(d.Day), 10)+": "+text)
		}
	}
	return lines
}

// turnLines are the turn lines, newest first.
func turnLines(turns []Turn, now time.Time) []string {
	turns = slices.Clone(turns)
	slices.SortStableFunc(turns, func(a, b Turn) int { return b.At.Compare(a.At) })
	var lines []string
	for _, t := range turns {
		if line := renderTurn(t, now); line != "" {
			lines = append(lines, "- "+line)
		}
	}
	return lines
}

// renderTurn is "[15:04 UTC] user: …; assistant: …", or "" for an empty turn.
func renderTurn(t Turn, now time.Time) string {
	var parts []string
	for _, p := range [][2]string{{"user", t.User}, {"assistant", t.Assistant}} {
		text, _ := Redact(oneLine(p[1]))
		if text = cutRunes(text, MaxRenderTurnRunes); text != "" {
			parts = append(parts, p[0]+": "+text)
		}
	}
	if len(parts) == 0 {
		return ""
	}
	at := t.At.UTC()
	stamp := at.Format("15:04")
	if at.Format(time.DateOnly) != now.UTC().Format(time.DateOnly) {
		stamp = at.Format("2006-01-02 15:04")
	}
	return "[" + stamp + " UTC] " + strings.Join(parts, "; ")
}

// section is title plus its lines, or "" without lines.
func section(title string, lines []string) string {
	if len(lines) == 0 {
		return ""
	}
	return title + "\n" + strings.Join(lines, "\n")
}

// digestSep joins the entries of one day's digest.
const digestSep = " | "

// MergeDigest adds one turn's digest line to a day's digest: entries joined
// by " | ", an entry equal (case-insensitively) to one already there is not
// added again, and the whole is capped at MaxDayDigestRunes by dropping the
// oldest entries (the newest alone is cut if it is too long). Entries are
// only ever put side by side, never nested (upstream C6).
func MergeDigest(old, add string) string {
	var entries []string
	for _, e := range append(strings.Split(old, "|"), cleanDigest(add)) {
		if e = oneLine(e); e != "" && !containsFold(entries, e) {
			entries = append(entries, e)
		}
	}
	for len(entries) > 1 && runeLen(strings.Join(entries, digestSep)) > MaxDayDigestRunes {
		entries = entries[1:]
	}
	return cutRunes(strings.Join(entries, digestSep), MaxDayDigestRunes)
}

func runeLen(s string) int { return len([]rune(s)) }
