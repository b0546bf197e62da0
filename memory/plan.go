package memory

import (
	"slices"
	"strings"
)

// Plan decides in code how an Update changes the current active facts
// (upstream C2: the model is never asked to echo old memory back). It
// returns the ids to retire (ascending, unique) and the facts to add (ID 0).
//
//   - ForgetAll retires every current fact; each Forget term retires the
//     facts whose slot is the term (or an alias of it: "e-mail", "имя") or
//     whose text contains it as whole words, case-insensitively.
//   - Forget wins over Remember in the same update: a remembered fact that
//     repeats a fact being forgotten is the model echoing old memory, and one
//     whose text contains a forget term is what the user just asked to
//     forget, so neither is added. Any other remembered fact is taken as
//     stated by the user and added ("forget my email, it is now b@x.org"
//     retires the old email and stores the new one).
//   - A single-valued slot holds one fact: a new text retires the current
//     one; the same text (case-insensitively) changes nothing. Within one
//     update the last value for a slot wins.
//   - Multi-valued slots add a fact unless the same slot already holds the
//     same text, case-insensitively.
//   - Facts are cleaned like the analyzer's (one line, capped, and dropped
//     if they hold a secret), so an Update built elsewhere is safe too.
//   - At most MaxFacts stay active: beyond that the oldest (lowest id)
//     multi-valued facts are retired first, then the oldest single-valued.
//
// Current facts with ID 0 are never retired (they have no id to retire).
func Plan(current []Fact, u Update) (retire []int64, add []Fact) {
	gone := map[int64]bool{}
	forgotten := map[string]bool{}
	for _, f := range current {
		if f.ID != 0 && (u.ForgetAll || matchesAny(f, u.Forget)) {
			gone[f.ID] = true
			forgotten[factKey(f)] = true
		}
	}
	for _, f := range candidates(u) {
		if forgotten[factKey(f)] || textMatchesAny(f.Text, u.Forget) {
			continue
		}
		if placeFact(current, gone, add, f) {
			add = append(add, f)
		}
	}
	add = bound(current, gone, add)
	return sortedIDs(gone), add
}

// candidates returns u.Remember cleaned, de-duplicated, with the last value
// of each single-valued slot only.
func candidates(u Update) []Fact {
	var out []Fact
	for _, f := range u.Remember {
		c, ok := cleanFact(f.Slot, f.Text)
		if !ok {
			continue
		}
		out = slices.DeleteFunc(out, func(o Fact) bool {
			return o.Slot == c.Slot && (SingleValued(c.Slot) || sameText(o.Text, c.Text))
		})
		out = append(out, c)
	}
	return out
}

// placeFact reports whether f is new among the active facts; for a
// single-valued slot it retires (in gone) the active facts it replaces.
func placeFact(current []Fact, gone map[int64]bool, add []Fact, f Fact) bool {
	for _, a := range add {
		if a.Slot == f.Slot && sameText(a.Text, f.Text) {
			return false
		}
	}
	fresh := true
	for _, c := range current {
		if gone[c.ID] || NormalizeSlot(c.Slot) != f.Slot {
			continue
		}
		if sameText(c.Text, f.Text) {
			fresh = false
		} else if SingleValued(f.Slot) && c.ID != 0 {
			gone[c.ID] = true
		}
	}
	return fresh
}

// bound keeps at most MaxFacts active: it retires the oldest current facts,
// multi-valued first, and cuts add only if add alone is too many.
func bound(current []Fact, gone map[int64]bool, add []Fact) []Fact {
	if len(add) > MaxFacts {
		add = add[:MaxFacts]
	}
	var active []Fact
	for _, c := range current {
		if !gone[c.ID] && c.ID != 0 {
			active = append(active, c)
		}
	}
	over := len(active) + len(add) + zeroIDs(current) - MaxFacts
	if over <= 0 {
		return add
	}
	slices.SortStableFunc(active, func(a, b Fact) int {
		if sa, sb := SingleValued(a.Slot), SingleValued(b.Slot); sa != sb {
			if sa {
				return 1
			}
			return -1
		}
		return cmpID(a.ID, b.ID)
	})
	for _, f := range active[:min(over, len(active))] {
		gone[f.ID] = true
	}
	return add
}

func zeroIDs(facts []Fact) int {
	n := 0
	for _, f := range facts {
		if f.ID == 0 {
			n++
		}
	}
	return n
}

// matchesAny reports whether a current fact is named by one of the terms.
func matchesAny(f Fact, terms []string) bool {
	slot := NormalizeSlot(f.Slot)
	for _, t := range terms {
		if s, ok := KnownSlot(t); ok && s == slot || strings.EqualFold(strings.TrimSpace(t), f.Slot) {
			return true
		}
	}
	return textMatchesAny(f.Text, terms)
}

// textMatchesAny reports whether text contains one of the terms as words.
// Terms shorter than two runes match nothing: "forget a" must not retire
// every fact with an "a" in it.
func textMatchesAny(text string, terms []string) bool {
	for _, t := range terms {
		if len([]rune(strings.TrimSpace(t))) >= 2 && containsWord(text, t) {
			return true
		}
	}
	return false
}

// factKey identifies a fact by slot and text, case-insensitively.
func factKey(f Fact) string {
	return NormalizeSlot(f.Slot) + "\x00" + normText(f.Text)
}

// normText is the form in which two fact texts are compared: one line,
// unquoted, without trailing punctuation, lower case.
func normText(s string) string { return strings.ToLower(trimValue(oneLine(s))) }

func sameText(a, b string) bool { return normText(a) == normText(b) }

func sortedIDs(set map[int64]bool) []int64 {
	ids := make([]int64, 0, len(set))
	for id := range set {
		ids = append(ids, id)
	}
	slices.Sort(ids)
	if len(ids) == 0 {
		return nil
	}
	return ids
}
