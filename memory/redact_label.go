package memory

import (
	"regexp"
	"strings"
)

// labeledRE finds a secret introduced by a label and a connector:
// "password is X", "пароль от почты: X", "pin = 1234". Groups: 1 what
// precedes the label (a non-word character or the start: Go's \b knows only
// ASCII), 2 the label, 3 an optional qualifier ("for my gmail account",
// "от почты"), 4 the connector, 5 the value (quoted, or one word without its
// trailing punctuation).
var labeledRE = regexp.MustCompile(`(?i)(^|[^\p{L}\p{N}_])(` + secretLabels + `)(` + qualifier + `)?` +
	`(\s*[:=]\s*|\s+[-—–]+\s*|\s*[—–]\s*|\s+(?:is|was|это|будет)\s*:?\s*|['’]s\s+)(` + secretValue + `)`)

// bareRE finds a label followed by its value after a space only ("пароль
// qwerty", "PIN 1234"). A separate pattern, so a bare match can never win
// over a connector further on ("password for my gmail is X").
var bareRE = regexp.MustCompile(`(?i)(^|[^\p{L}\p{N}_])(` + secretLabels + `)(` + qualifier + `)?(\s+)(` + secretValue + `)`)

const (
	qualifier   = `\s+(?:for|to|of|on|от|для|к|на)(?:\s+[\p{L}\p{N}._@'’-]+){1,3}?`
	secretValue = `"[^"\n]+"|'[^'\n]+'|«[^»\n]+»|“[^”\n]+”|\S*[^\s.,;:!?)»”"']`
)

// secretLabels, longest first so "pin code" wins over "pin".
const secretLabels = `passphrase|password|passcode|passwd|pass code|api[ _-]?key|access[ _-]?token|auth[ _-]?token|` +
	`bearer token|secret key|client secret|token|pin[ -]?code|pin|` +
	`пароль|пин[ -]?код|пинкод|пин|токен|api[ -]?ключ|апи[ -]?ключ|ключ api|код`

// bareLabels may be followed by the value with only a space between
// ("пароль qwerty", "PIN 1234"); in English "password reset" is common, so
// English labels other than PIN need a connector.
var bareLabels = map[string]bool{"пароль": true, "токен": true}

// digitLabels take 3–8 digits only ("код 1234"), because "код ошибки"
// (error code) and "pin the tab" are not secrets; they need no connector.
var digitLabels = map[string]bool{"код": true, "pin": true, "пин": true, "pincode": true, "пинкод": true}

// bareStopwords are words after a bare label that are not the secret:
// "пароль не подходит", "пароль от почты".
var bareStopwords = map[string]bool{
	"не": true, "ни": true, "от": true, "для": true, "к": true, "и": true, "а": true, "но": true,
	"в": true, "на": true, "с": true, "у": true, "я": true, "мне": true, "меня": true, "мой": true,
	"моя": true, "моё": true, "мое": true, "свой": true, "был": true, "была": true, "было": true,
	"есть": true, "нет": true, "это": true, "забыл": true, "забыла": true, "поменял": true,
	"поменяла": true, "сменил": true, "сменила": true, "такой": true, "новый": true, "старый": true,
	"тоже": true, "уже": true, "же": true, "ли": true, "бы": true, "надо": true, "нужно": true,
	"нужен": true, "знаешь": true, "помнишь": true, "или": true, "что": true, "как": true,
}

// labelStems are lower-case pieces one of which every secretLabels entry
// contains, for the cheap pre-check.
var labelStems = []string{"pass", "pin", "token", "key", "secret", "парол", "пин", "токен", "ключ", "код"}

func redactLabeled(s string) string {
	if !mayContain(strings.ToLower(s), labelStems...) {
		return s
	}
	s = replaceGroup(labeledRE, s, 5, acceptLabeled)
	return replaceGroup(bareRE, s, 5, acceptLabeled)
}

// acceptLabeled decides whether a labeledRE match is a secret.
func acceptLabeled(m []string) bool {
	label := strings.ToLower(strings.Join(strings.Fields(strings.ReplaceAll(m[2], "-", " ")), ""))
	value := strings.TrimRight(m[5], ".,;:!?)")
	if strings.Trim(value, `"'«»“”`) == Mark || !strings.ContainsFunc(value, isWordRune) {
		return false // already redacted (Redact must be idempotent), or a dash
	}
	if digitLabels[label] {
		return allDigits(strings.Trim(value, `"'«»“”`), 3, 8)
	}
	if strings.TrimSpace(m[4]) != "" || strings.ContainsAny(m[4], "'’") {
		return true
	}
	return bareLabels[label] && !bareStopwords[strings.ToLower(value)]
}

// allDigits reports whether s is between min and max ASCII digits.
func allDigits(s string, min, max int) bool {
	if len(s) < min || len(s) > max {
		return false
	}
	for i := 0; i < len(s); i++ {
		if !isDigit(s[i]) {
			return false
		}
	}
	return true
}
