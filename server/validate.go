package server

import (
	"encoding/base64"
	"strings"
	"unicode"
	"unicode/utf8"

	pb "github.com/nexy-server/nexy/proto"
)

// Messages kept close to upstream's wording: scripts and the client's logs
// match on "hardware_id" and "session_id is required".
const (
	msgHardwareID = "hardware_id is required and must be valid (not empty or 'unknown')"
	msgSessionID  = "session_id is required and must be provided by client"
)

// ValidID reports whether an identifier (hardware or session id) is
// non-empty, bounded and made of the characters real clients use (UUIDs,
// hex, dashes); anything else is refused so ids are safe to log and to use
// as keys. `nexy devices` applies the same rule to the ids it is given.
func ValidID(s string, maxLen int) bool {
	if s == "" || len(s) > maxLen {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch {
		case c >= 'a' && c <= 'z', c >= 'A' && c <= 'Z', c >= '0' && c <= '9', c == '-', c == '_', c == '.', c == ':':
		default:
			return false
		}
	}
	return true
}

func validateHardwareID(hw string, maxLen int) *turnError {
	if strings.EqualFold(strings.TrimSpace(hw), "unknown") || !ValidID(hw, maxLen) {
		if hw != "" && !strings.EqualFold(strings.TrimSpace(hw), "unknown") {
			return invalid("%s; got an id longer than %d characters or with characters outside A-Z a-z 0-9 . _ : -", msgHardwareID, maxLen)
		}
		return invalid("%s", msgHardwareID)
	}
	return nil
}

func validateSessionID(sid string, maxLen int) *turnError {
	if !ValidID(sid, maxLen) {
		if sid != "" {
			return invalid("%s; got an id longer than %d characters or with characters outside A-Z a-z 0-9 . _ : -", msgSessionID, maxLen)
		}
		return invalid("%s", msgSessionID)
	}
	return nil
}

// validateUsage checks a ReportUsage request: its strings are labels (a
// source like "browser_agent", a model name), bounded by limits.max_id_length
// and free of control characters, so they are safe to log and to store.
// maxReportedTokens bounds one ReportUsage: far above any real call, low
// enough that a bogus report cannot overflow the usage sums.
const maxReportedTokens = 100_000_000

func (s *service) validateUsage(req *pb.UsageRequest) *turnError {
	maxLen := s.cfg.Limits.MaxIDLength
	if sid := req.GetSessionId(); len(sid) > maxLen {
		return invalid("session_id is %d bytes; the limit is %d (limits.max_id_length)", len(sid), maxLen)
	}
	for _, f := range []struct{ name, v string }{{"source", req.GetSource()}, {"model", req.GetModel()}} {
		if len(f.v) > maxLen {
			return invalid("%s is %d bytes; the limit is %d (limits.max_id_length)", f.name, len(f.v), maxLen)
		}
		if !utf8.ValidString(f.v) || strings.IndexFunc(f.v, unicode.IsControl) >= 0 {
			return invalid("%s must be printable UTF-8 text", f.name)
		}
	}
	if req.GetInputTokens() < 0 || req.GetOutputTokens() < 0 {
		return invalid("input_tokens and output_tokens must not be negative")
	}
	if req.GetInputTokens() > maxReportedTokens || req.GetOutputTokens() > maxReportedTokens {
		return invalid("input_tokens and output_tokens must be at most %d per report", maxReportedTokens)
	}
	return nil
}

// validateStream checks what every StreamAudio phase carries and returns the
// MIME type of the screenshot, if there is one.
func (s *service) validateStream(req *pb.StreamRequest) (mime string, err *turnError) {
	l := s.cfg.Limits
	if err := validateHardwareID(req.GetHardwareId(), l.MaxIDLength); err != nil {
		return "", err
	}
	if err := validateSessionID(req.GetSessionId(), l.MaxIDLength); err != nil {
		return "", err
	}
	if n := utf8.RuneCountInString(req.GetPrompt()); n > l.MaxPromptChars {
		return "", invalid("prompt is %d characters; the limit is %d (limits.max_prompt_chars)", n, l.MaxPromptChars)
	}
	if n := utf8.RuneCountInString(req.GetChunkText()); n > l.MaxPromptChars {
		return "", invalid("chunk_text is %d characters; the limit is %d (limits.max_prompt_chars)", n, l.MaxPromptChars)
	}
	for _, dim := range []*int32{req.ScreenWidth, req.ScreenHeight} {
		if dim != nil && (*dim < 0 || *dim > 100000) {
			return "", invalid("screen_width/screen_height must be between 0 and 100000")
		}
	}
	shot := req.GetScreenshot()
	if shot == "" {
		return "", nil
	}
	if len(shot) > l.MaxScreenshotBytes {
		return "", invalid("screenshot is %d base64 characters; the limit is %d (limits.max_screenshot_bytes)", len(shot), l.MaxScreenshotBytes)
	}
	return screenshotMIME(shot)
}

// screenshotMIME checks that s is complete standard base64 of a WebP, PNG or
// JPEG image and returns its MIME type. It decodes in small pieces so a
// multi-megabyte screenshot is verified without a second full-size copy.
func screenshotMIME(s string) (string, *turnError) {
	if len(s)%4 != 0 {
		return "", invalid("screenshot is not valid base64 (length %d is not a multiple of 4)", len(s))
	}
	var src [4 * 1024]byte
	var dst [3 * 1024]byte
	var head []byte
	for off := 0; off < len(s); off += len(src) {
		n := copy(src[:], s[off:])
		n, err := base64.StdEncoding.Decode(dst[:], src[:n])
		if err != nil {
			return "", invalid("screenshot is not valid base64 (at character %d)", off)
		}
		if head == nil {
			head = append([]byte(nil), dst[:min(n, 16)]...)
		}
	}
	switch {
	case len(head) >= 12 && string(head[0:4]) == "RIFF" && string(head[8:12]) == "WEBP":
		return "image/webp", nil
	case len(head) >= 8 && string(head[0:8]) == "\x89PNG\r\n\x1a\n":
		return "image/png", nil
	case len(head) >= 3 && head[0] == 0xFF && head[1] == 0xD8 && head[2] == 0xFF:
		return "image/jpeg", nil
	}
	return "", invalid("screenshot is not a WebP, PNG or JPEG image")
}
