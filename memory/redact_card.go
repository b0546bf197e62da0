package memory

import "strings"

// Card numbers: 13–19 digits (ISO/IEC 7812).
const (
	minCardDigits = 13
	maxCardDigits = 19
)

// group is the byte range of one run of ASCII digits.
type group struct{ start, end int }

// redactCards replaces card numbers written as one run of digits or as
// groups of two or more digits joined by single spaces or dashes
// ("4111 1111 1111 1111", "4111-1111-1111-1111", "3782 822463 10005").
func redactCards(s string) string {
	var b strings.Builder
	last := 0
	for _, chain := range digitChains(s) {
		for i := 0; i < len(chain); i++ {
			j := cardWindow(s, chain, i)
			if j < 0 {
				continue
			}
			b.WriteString(s[last:chain[i].start])
			b.WriteString(Mark)
			last = chain[j].end
			i = j
		}
	}
	if last == 0 {
		return s
	}
	b.WriteString(s[last:])
	return b.String()
}

// digitChains splits s into chains of digit groups, where consecutive groups
// are separated by exactly one space or dash.
func digitChains(s string) [][]group {
	var chains [][]group
	var cur []group
	for i := 0; i < len(s); {
		if !isDigit(s[i]) {
			i++
			continue
		}
		g := group{start: i}
		for i < len(s) && isDigit(s[i]) {
			i++
		}
		g.end = i
		if len(cur) > 0 && !(g.start-cur[len(cur)-1].end == 1 && isCardSep(s[g.start-1])) {
			chains = append(chains, cur)
			cur = nil
		}
		cur = append(cur, g)
	}
	if len(cur) > 0 {
		chains = append(chains, cur)
	}
	return chains
}

// cardWindow returns the last group index j such that groups i..j form a
// card number, preferring the longest; -1 if none.
func cardWindow(s string, chain []group, i int) int {
	if i == 0 && chain[0].start > 0 && s[chain[0].start-1] == '+' {
		return -1 // "+…" is a phone number in international form
	}
	var digits []byte
	best := -1
	for j := i; j < len(chain); j++ {
		g := s[chain[j].start:chain[j].end]
		if len(g) < 2 {
			break // "1 2 3 4 …" is counting, not a card
		}
		digits = append(digits, g...)
		if len(digits) > maxCardDigits {
			break
		}
		if len(digits) >= minCardDigits && digits[0] >= '2' && digits[0] <= '6' && luhn(digits) {
			best = j
		}
	}
	return best
}

// luhn reports whether the digits pass the Luhn checksum.
func luhn(digits []byte) bool {
	sum := 0
	double := false
	for i := len(digits) - 1; i >= 0; i-- {
		d := int(digits[i] - '0')
		if double {
			d *= 2
			if d > 9 {
				d -= 9
			}
		}
		sum += d
		double = !double
	}
	return sum%10 == 0
}

func isDigit(c byte) bool   { return c >= '0' && c <= '9' }
func isCardSep(c byte) bool { return c == ' ' || c == '-' }
