package memory

import (
	"slices"
	"strings"
	"time"
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
// The output depends only on the arguments.
func Render(s Snapshot, now time.Time) string {
	var sections []string
	for _, sec := range []string{renderFacts(s.Facts), renderDigests(s.Digests), renderTurns(s.Recent, now)} {
		if sec != "" {
			sections = append(sections, sec)
		}
	}
	return strings.Join(sections, "\n\n")
}

func renderFacts(facts []Fact) string {
	facts = slices.Clone(facts)
	slices.SortStableFunc(facts, func(a, b Fact) int {
		if ra, rb := slotRank(NormalizeSlot(a.Slot)), slotRank(NormalizeSlot(b.Slot)); ra != rb {
			return ra - rb
		}
		return cmpID(a.ID, b.ID)
	})
	var b strings.Builder
	for _, f := range facts {
		if text := cutRunes(oneLine(f.Text), MaxFactRunes); text != "" {
			b.WriteString("\n- " + NormalizeSlot(f.Slot) + ": " + text)
		}
	}
	return section("Facts the user stated:", b.String())
}

func renderDigests(days []Digest) string {
	days = slices.Clone(days)
	slices.SortStableFunc(days, func(a, b Digest) int { return strings.Compare(b.Day, a.Day) })
	var b strings.Builder
	for _, d := range days {
		if text := cutRunes(oneLine(d.Text), MaxDayDigestRunes); text != "" {
			b.WriteString("\n- " + cutRunes(oneLine(d.Day), 10) + ": " + text)
		}
	}
	return section("Recent days:", b.String())
}

func renderTurns(turns []Turn, now time.Time) string {
	turns = slices.Clone(turns)
	slices.SortStableFunc(turns, func(a, b Turn) int { return b.At.Compare(a.At) })
	var b strings.Builder
	for _, t := range turns {
		if line := renderTurn(t, now); line != "" {
			b.WriteString("\n- " + line)
		}
	}
	return section("Recent turns (newest first):", b.String())
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
func section(title, lines string) string {
	if lines == "" {
		return ""
	}
	return title + lines
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
