// Package memory decides what Nexy remembers about a device (SPEC §8).
//
// It is pure logic: no database, no goroutines. The caller loads a Snapshot,
// renders it into the prompt's memory data block (Render), and after a turn
// asks an Analyzer (one LLM call with a strict line contract, heuristic
// fallback) for an Update, which Plan turns into facts to retire and facts to
// add. Merging is decided here, in code, never by asking the model to echo
// the old memory back (upstream bug C2). Secrets the user mentions never
// reach a Fact or a digest (Redact).
//
// Long-term facts live in slots. Single-valued slots (name, email, language,
// city, birthday, occupation) hold one current value: a new value replaces
// the old one, so contradictions resolve instead of piling up (upstream C3).
// Multi-valued slots (preference, contact, note) keep values side by side,
// de-duplicated case-insensitively.
package memory

import (
	"strings"
	"time"

	"github.com/nexy-server/nexy/llm"
)

// Fact is one long-term fact the user stated. ID is the store's id (0 = new).
type Fact struct {
	ID   int64
	Slot string
	Text string
}

// Turn is one exchange: what the user said and what the assistant answered.
type Turn struct {
	At              time.Time
	User, Assistant string
}

// Digest is the medium-term summary of one day.
type Digest struct {
	Day  string // YYYY-MM-DD (UTC)
	Text string
}

// Snapshot is what is known about a device before a turn.
type Snapshot struct {
	Facts   []Fact   // active facts
	Digests []Digest // recent days
	Recent  []Turn   // recent turns, newest first
}

// Update is what one turn changes. Plan turns it into store operations.
type Update struct {
	// Remember holds facts to add (ID 0); a single-valued slot replaces the
	// old fact of that slot (see Plan).
	Remember []Fact
	// Forget holds terms: retire facts whose slot equals the term or whose
	// text contains it as whole words (case-insensitive).
	Forget []string
	// ForgetAll: the user asked to forget everything about them.
	ForgetAll bool
	// Digest is one line for today's digest, "" = none. The caller merges it
	// into the day's existing digest with MergeDigest.
	Digest string
	// Usage is what the analyzer call cost; zero for the heuristic.
	Usage llm.Usage
	// Method is MethodLLM or MethodHeuristic: who produced the update.
	Method string
}

// Values of Update.Method.
const (
	MethodLLM       = "llm"
	MethodHeuristic = "heuristic"
)

// Size limits. They keep every tier bounded (upstream C8: sizes were
// configured but never enforced) and keep the prompt's memory block small.
const (
	// MaxFacts is the most active facts a device keeps; Plan retires the
	// oldest multi-valued facts first when an update would exceed it.
	MaxFacts = 200
	// MaxFactsPerUpdate bounds what one turn can add or forget.
	MaxFactsPerUpdate = 20
	// MaxFactRunes caps one fact's text.
	MaxFactRunes = 200
	// MaxTermRunes caps one forget term.
	MaxTermRunes = 100
	// MaxDigestRunes caps the digest line one turn contributes.
	MaxDigestRunes = 300
	// MaxDayDigestRunes caps a whole day's merged digest.
	MaxDayDigestRunes = 1000
	// MaxTurnRunes caps each side of the turn sent to the analyzer.
	MaxTurnRunes = 2000
	// MaxRenderTurnRunes caps each side of a recent turn in Render.
	MaxRenderTurnRunes = 200
)

// Slot names.
const (
	SlotName       = "name"
	SlotEmail      = "email"
	SlotLanguage   = "language"
	SlotCity       = "city"
	SlotBirthday   = "birthday"
	SlotOccupation = "occupation"
	SlotPreference = "preference"
	SlotContact    = "contact"
	SlotNote       = "note"
)

// slotOrder lists the slots, single-valued first; Render and the analyzer
// prompt follow it so their output is deterministic.
var slotOrder = []string{SlotName, SlotEmail, SlotLanguage, SlotCity, SlotBirthday, SlotOccupation,
	SlotPreference, SlotContact, SlotNote}

// slotAliases maps the words a model or a user may use for a slot (English
// and Russian) to the slot. Keys are lower case.
var slotAliases = map[string]string{
	"name": SlotName, "first name": SlotName, "имя": SlotName,
	"email": SlotEmail, "e-mail": SlotEmail, "mail": SlotEmail, "email address": SlotEmail,
	"e-mail address": SlotEmail, "почта": SlotEmail, "почту": SlotEmail, "имейл": SlotEmail,
	"емейл": SlotEmail, "электронная почта": SlotEmail, "электронную почту": SlotEmail,
	"language": SlotLanguage, "lang": SlotLanguage, "язык": SlotLanguage,
	"city": SlotCity, "town": SlotCity, "hometown": SlotCity, "город": SlotCity,
	"birthday": SlotBirthday, "birth date": SlotBirthday, "date of birth": SlotBirthday,
	"birthdate": SlotBirthday, "день рождения": SlotBirthday, "дата рождения": SlotBirthday,
	"occupation": SlotOccupation, "job": SlotOccupation, "work": SlotOccupation,
	"profession": SlotOccupation, "работа": SlotOccupation, "работу": SlotOccupation,
	"профессия": SlotOccupation, "профессию": SlotOccupation,
	"preference": SlotPreference, "preferences": SlotPreference, "предпочтение": SlotPreference, "предпочтения": SlotPreference,
	"contact": SlotContact, "contacts": SlotContact, "контакт": SlotContact, "контакты": SlotContact,
	"note": SlotNote, "notes": SlotNote, "заметка": SlotNote, "заметки": SlotNote,
}

// KnownSlot returns the slot a name or alias stands for ("E-Mail" → "email")
// and whether it is one.
func KnownSlot(s string) (string, bool) {
	slot, ok := slotAliases[strings.ToLower(strings.Join(strings.Fields(strings.ReplaceAll(s, "_", " ")), " "))]
	return slot, ok
}

// NormalizeSlot returns the slot s stands for; anything unknown is a note, so
// a model inventing slots cannot grow the schema.
func NormalizeSlot(s string) string {
	if slot, ok := KnownSlot(s); ok {
		return slot
	}
	return SlotNote
}

// SingleValued reports whether a slot holds one value that a new one replaces.
func SingleValued(slot string) bool {
	switch NormalizeSlot(slot) {
	case SlotName, SlotEmail, SlotLanguage, SlotCity, SlotBirthday, SlotOccupation:
		return true
	}
	return false
}

// slotRank orders slots for deterministic output.
func slotRank(slot string) int {
	for i, s := range slotOrder {
		if s == slot {
			return i
		}
	}
	return len(slotOrder)
}
