package memory

import (
	"strings"
	"testing"
)

func TestRedact(t *testing.T) {
	cases := []struct{ in, want string }{
		// Card numbers that pass Luhn, in the ways people write them.
		{"my card is 4111 1111 1111 1111.", "my card is [redacted]."},
		{"4111-1111-1111-1111", "[redacted]"},
		{"4111111111111111", "[redacted]"},
		{"card 5555 5555 5555 4444 expires 12/27", "card [redacted] expires 12/27"},
		{"amex 3782 822463 10005", "amex [redacted]"},
		{"amex 378282246310005", "amex [redacted]"},
		{"discover 6011111111111117", "discover [redacted]"},
		{"mastercard 2-series 2223003122003222", "mastercard 2-series [redacted]"},
		{"jcb 3530 1113 3330 0000", "jcb [redacted]"},
		{"карта 2200 7001 2345 6781 на имя", "карта [redacted] на имя"},
		{"pairs 41 11 11 11 11 11 11 11", "pairs [redacted]"},
		{"x4111111111111111y", "x[redacted]y"},
		{"two cards 4111 1111 1111 1111 and 5555555555554444", "two cards [redacted] and [redacted]"},
		{"19 digits 4000 0000 0000 0000 006", "19 digits [redacted]"},
		// Labelled secrets.
		{"my password is hunter2.", "my password is [redacted]."},
		{"My password: hunter2", "My password: [redacted]"},
		{"password=hunter2", "password=[redacted]"},
		{"the password was Tr0ub4dor&3!", "the password was [redacted]!"},
		{"The wifi password is 'correct horse battery'", "The wifi password is [redacted]"},
		{"password for my gmail account is hunter2", "password for my gmail account is [redacted]"},
		{"the password's hunter2", "the password's [redacted]"},
		{"passcode is 9931", "passcode is [redacted]"},
		{"пароль qwerty123", "пароль [redacted]"},
		{"Мой пароль: qwerty", "Мой пароль: [redacted]"},
		{"пароль от почты qwerty", "пароль от почты [redacted]"},
		{"пароль от почты — qwerty", "пароль от почты — [redacted]"},
		{"пароль это «кот в сапогах»", "пароль это [redacted]"},
		{"токен abc123", "токен [redacted]"},
		{"api key: abc123def", "api key: [redacted]"},
		{"my access token is abc.def", "my access token is [redacted]"},
		{"my pin is 1234", "my pin is [redacted]"},
		{"PIN 1234", "PIN [redacted]"},
		{"pin code: 987654", "pin code: [redacted]"},
		{"пин-код 1234", "пин-код [redacted]"},
		{"пин 0000", "пин [redacted]"},
		{"код от домофона 1234", "код от домофона [redacted]"},
		{"код 4321", "код [redacted]"},
		{"код: 4321.", "код: [redacted]."},
		// Keys and tokens by shape.
		{"key " + fakeKey("sk-proj-", 24), "key [redacted]"},
		{fakeKey("sk-ant-api03-", 16), "[redacted]"},
		{"use " + fakeKey("AIza", 35) + " now", "use [redacted] now"},
		{fakeKey("ghp_", 36), "[redacted]"},
		{"github_pat_11ABCDEFG0123456789_abcdefghij", "[redacted]"},
		{"slack " + fakeKey("xoxb-", 12) + "-" + fakeKey("", 12), "slack [redacted]"},
		{"aws AKIAIOSFODNN7EXAMPLE", "aws [redacted]"},
		{"Authorization: Bearer abc.def.ghi-123", "Authorization: Bearer [redacted]"},
		{"hex a3f5c9e1b2d4f6a8c0e2b4d6f8a0c2e4", "hex [redacted]"},
		{"b64 dGhpcyBpcyBhIHNlY3JldCBrZXkgMTIzNDU2Nzg5MA==", "b64 [redacted]"},
		{"jwt eyJhbGciOiJIUzI1NiIsInR5cCI6IkpXVCJ9.eyJzdWIiOiIxMjM0NTY3ODkwIn0.x", "jwt [redacted].[redacted].x"},
		{"https://x.io/reset?token=Zk3j9QpLm2Xv8RtYw4Nb6Hc1", "https://x.io/reset?token=[redacted]"},
		// Already redacted stays as it is.
		{"password is [redacted].", "password is [redacted]."},
		{"[redacted] [redacted]", "[redacted] [redacted]"},
	}
	for _, c := range cases {
		got, changed := Redact(c.in)
		if got != c.want {
			t.Errorf("Redact(%q) = %q, want %q", c.in, got, c.want)
		}
		if changed != (got != c.in) {
			t.Errorf("Redact(%q) changed = %v", c.in, changed)
		}
	}
}

// TestRedactKeepsOrdinaryText lists what must never be redacted: numbers,
// dates, phone numbers, words that look like labels, ordinary prose.
func TestRedactKeepsOrdinaryText(t *testing.T) {
	for _, s := range []string{
		"",
		"call +1 415 555 2671",
		"call +7 916 123-45-67",
		"+44 20 7946 0958",
		"+49 30 1234567890123", // 15-digit international, '+' means phone
		"8 800 555 35 35",
		"89161234567",
		"00 49 30 12345678", // 14 digits starting with 0
		"(415) 555-2671",
		"my number is 415-555-2671",
		"2024-01-01 12:30",
		"on 31.12.2025 at 10.30",
		"1700000000000",                   // a millisecond timestamp (13 digits, starts with 1)
		"order 1234567890123456",          // 16 digits failing Luhn
		"4111 1111 1111 1112",             // a card number with a wrong check digit
		"7777 7777 7777 7777 777",         // 19 digits starting with 7
		"1 2 3 4 5 6 7 8 9 1 0 1 2 3 4 5", // counting
		"in 1999 and 2000 and 2024",
		"the year 2026, 42 apples, 3.14159",
		"password reset please",
		"I forgot my password",
		"what is my password?",
		"password-protected file",
		"пароль не подходит",
		"забыл пароль от почты",
		"пароль от почты не помню",
		"код ошибки 404",
		"штрихкод 4600000000001",
		"pin the tab to the left",
		"spinach 1234",
		"tokens used: 1234",
		"the task-manager is open",
		"see /Users/anna/Documents/report-2024-final-version.pdf",
		"id 123e4567-e89b-12d3-a456-426614174000",
		"state-of-the-art-2024-edition-of-the-book",
		"https://youtu.be/dQw4w9WgXcQ",
		"anna.smith2024@gmail.com",
		"Donaudampfschifffahrtsgesellschaft",
		"AAAAAAAAAAAAAAAAAAAAAAAAAAAAAA",
		"зовут Анна, живу в Москве, люблю джаз",
		"sk-short",
	} {
		if got, changed := Redact(s); changed || got != s {
			t.Errorf("Redact(%q) = %q, want it unchanged", s, got)
		}
	}
}

func TestRedactIdempotentOnCases(t *testing.T) {
	for _, s := range []string{
		"password is 4111 1111 1111 1111.",
		"pin 1234 1234 5678 9012 3456",
		"1 4111 1111 1111 1111 1",
		"пароль пароль пароль qwerty",
		"password: password: password: x",
		strings.Repeat("4111 ", 20),
	} {
		once, _ := Redact(s)
		twice, changed := Redact(once)
		if twice != once || changed {
			t.Errorf("Redact not idempotent on %q: %q then %q", s, once, twice)
		}
	}
}

func TestLuhn(t *testing.T) {
	for s, want := range map[string]bool{
		"4111111111111111": true, "79927398713": true, "4111111111111112": false, "0": true, "18": true,
	} {
		if got := luhn([]byte(s)); got != want {
			t.Errorf("luhn(%s) = %v", s, got)
		}
	}
}

// BenchmarkRedact measures a typical turn with one secret in it.
func BenchmarkRedact(b *testing.B) {
	s := "Nexy, remember that my sister Maria lives in Rome and her number is +39 06 1234 5678; " +
		"also my password is hunter2 and I like jazz."
	for b.Loop() {
		Redact(s)
	}
}

// BenchmarkRedactPlain measures ordinary text with no secret and no label.
func BenchmarkRedactPlain(b *testing.B) {
	s := "What is the weather like in Berlin tomorrow afternoon, and should I take an umbrella with me?"
	for b.Loop() {
		Redact(s)
	}
}

// fakeKey is a key-shaped test string made at test time, so nothing in the
// repository looks like a real credential: prefix, then n characters
// cycling through letters and digits.
func fakeKey(prefix string, n int) string {
	const alphabet = "a1b2c3d4e5f6g7h8i9j0"
	b := []byte(prefix)
	for i := range n {
		b = append(b, alphabet[i%len(alphabet)])
	}
	return string(b)
}
