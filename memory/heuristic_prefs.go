package memory

import (
	"regexp"
	"strings"
)

// prefObjectStop are first words after "I like" that make it no preference:
// "I like it", "I love you", "what I like is …".
var prefObjectStop = map[string]bool{
	"it": true, "that": true, "this": true, "them": true, "you": true, "him": true, "her": true,
	"us": true, "me": true, "these": true, "those": true, "is": true, "was": true, "about": true,
	"when": true, "how": true, "what": true, "your": true,
	"это": true, "тебя": true, "его": true, "её": true, "ее": true, "их": true, "вас": true,
	"тебе": true, "когда": true, "как": true, "что": true, "вот": true,
}

// extractPreferences returns every stated like and dislike, as
// "likes jazz", "dislikes loud music", "любит джаз", "favorite color: blue".
func extractPreferences(text string) []string {
	var out []string
	for _, loc := range prefRE.FindAllStringSubmatchIndex(text, -1) {
		object := capRunes(clause(text[loc[1]:], true), maxClauseRunes)
		if object == "" || prefObjectStop[firstWord(object)] {
			continue
		}
		out = append(out, prefVerb(strings.ToLower(text[loc[2]:loc[3]]))+" "+object)
	}
	for _, loc := range favEnRE.FindAllStringSubmatchIndex(text, -1) {
		if value := clause(text[loc[1]:], true); value != "" {
			out = append(out, "favorite "+strings.ToLower(strings.TrimSpace(text[loc[2]:loc[3]]))+": "+value)
		}
	}
	for _, loc := range favRuRE.FindAllStringSubmatchIndex(text, -1) {
		if value := clause(text[loc[1]:], true); value != "" {
			out = append(out, strings.ToLower(text[loc[2]:loc[3]])+" "+
				strings.ToLower(strings.TrimSpace(text[loc[4]:loc[5]]))+": "+value)
		}
	}
	return out
}

// prefVerb words a preference in the third person, in the user's language.
func prefVerb(key string) string {
	switch {
	case strings.Contains(key, "не люблю") || strings.Contains(key, "ненавижу"):
		return "не любит"
	case strings.HasPrefix(key, "я"):
		return "любит"
	case strings.Contains(key, "don't") || strings.Contains(key, "do not") || strings.Contains(key, "hate"):
		return "dislikes"
	case strings.Contains(key, "love") || strings.Contains(key, "adore"):
		return "loves"
	case strings.Contains(key, "enjoy"):
		return "enjoys"
	}
	return "likes"
}

// noteStop are values after "remember" that name nothing to keep.
var noteStop = map[string]bool{"this": true, "that": true, "it": true, "это": true, "меня": true, "me": true}

// extractNotes returns what the user explicitly asked to remember.
func extractNotes(text string) []string {
	var out []string
	for _, re := range []*regexp.Regexp{noteEnRE, noteRuRE} {
		for _, loc := range re.FindAllStringSubmatchIndex(text, -1) {
			if !isRequest(text, firstGroupStart(loc)) {
				continue
			}
			note := clause(text[loc[1]:], false)
			if note == "" || noteStop[strings.ToLower(trimValue(note))] {
				continue
			}
			out = append(out, note)
		}
	}
	return out
}

// firstGroupStart returns where the first matched capture group starts: the
// keyword, after the boundary character the match may begin with.
func firstGroupStart(loc []int) int {
	for g := 1; 2*g < len(loc); g++ {
		if loc[2*g] >= 0 {
			return loc[2*g]
		}
	}
	return loc[0]
}
