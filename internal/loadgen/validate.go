package loadgen

import (
	"errors"
	"strings"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	pb "github.com/nexy-server/nexy/proto"
)

// The shipped client's audio rules (SPEC §2); it drops anything else.
const (
	maxChunkBytes = 4096
	wireRate      = 48000
	wireDType     = "int16"
)

// CheckChunk returns "" for an audio chunk the client plays, else what is
// wrong with it (the first rule it breaks).
func CheckChunk(c *pb.AudioChunk) string {
	n := len(c.GetAudioData())
	switch {
	case n == 0:
		return "empty"
	case n%2 != 0:
		return "odd length"
	case n > maxChunkBytes:
		return "over 4096 bytes"
	case c.GetDtype() != wireDType:
		return "dtype not int16"
	case c.GetSampleRate() != wireRate:
		return "sample_rate not 48000"
	case c.GetChannels() != 1:
		return "channels not 1"
	}
	return ""
}

// turnCheck follows one COMMIT's answer, message by message, and records
// when each stage was reached and the first way the answer broke the
// grammar: text before its audio, at most one action after all segments,
// exactly one terminal end_message.
type turnCheck struct {
	texts, chunks, badChunks int
	action, end              bool
	firstText, firstAudio    time.Duration
	lastAudio, endAt         time.Duration
	violation                string // "protocol: …", the first one
	errorMessage             string // an in-band error_message
}

func (t *turnCheck) fail(v string) {
	if t.violation == "" {
		t.violation = "protocol: " + v
	}
}

// take checks one message that arrived at (from the COMMIT send).
func (t *turnCheck) take(msg *pb.StreamResponse, at time.Duration) {
	if t.end {
		t.fail("message after end_message")
		return
	}
	switch c := msg.GetContent().(type) {
	case *pb.StreamResponse_TextChunk:
		if t.action {
			t.fail("text_chunk after action_message")
		}
		if t.texts == 0 {
			t.firstText = at
		}
		t.texts++
	case *pb.StreamResponse_AudioChunk:
		if bad := CheckChunk(c.AudioChunk); bad != "" {
			t.badChunks++
			t.fail("bad audio chunk (" + bad + ")")
		}
		switch {
		case t.action:
			t.fail("audio_chunk after action_message")
		case t.texts == 0:
			t.fail("audio before its text_chunk")
		}
		if t.chunks == 0 {
			t.firstAudio = at
		}
		t.chunks++
		t.lastAudio = at
	case *pb.StreamResponse_ActionMessage:
		if t.action {
			t.fail("second action_message")
		}
		t.action = true
	case *pb.StreamResponse_EndMessage:
		if t.texts == 0 && t.chunks == 0 && !t.action {
			t.fail("end_message without any text, audio or action")
		}
		t.end, t.endAt = true, at
	case *pb.StreamResponse_ErrorMessage:
		if t.texts > 0 || t.chunks > 0 || t.action {
			t.fail("error_message after data")
		}
		if t.errorMessage == "" {
			t.errorMessage = c.ErrorMessage
		} else {
			t.fail("second error_message")
		}
	default:
		t.fail("unexpected message")
	}
}

// finish is called when the stream ended with err (nil = cleanly) and
// returns the turn's error class, "" for a good answer.
func (t *turnCheck) finish(err error) string {
	if err != nil {
		return errClass(err)
	}
	switch {
	case t.violation != "":
		return t.violation
	case t.errorMessage != "":
		return "protocol: error_message without a status"
	case !t.end:
		return "protocol: missing end_message"
	case t.chunks == 0:
		return "no audio"
	}
	return ""
}

// limitMarkers are the reasons the server names in refusals (SPEC §3, §6).
var limitMarkers = []string{"stream_limit_exceeded", "rate_limit_exceeded", "device_limit_exceeded",
	"collect_limit_exceeded", "daily limit exceeded"}

// errClass names a failed call: its gRPC code, with the limit it hit.
func errClass(err error) string {
	if errors.Is(err, errStopped) {
		return ""
	}
	var pe errProtocol
	if errors.As(err, &pe) {
		return "protocol: " + string(pe)
	}
	var te errTimeout
	if errors.As(err, &te) {
		return "timeout: " + string(te)
	}
	st, ok := status.FromError(err)
	if !ok {
		return "error: " + err.Error()
	}
	class := strings.ToUpper(codeName(st.Code()))
	for _, m := range limitMarkers {
		if strings.Contains(st.Message(), m) {
			return class + " " + m
		}
	}
	return class
}

// codeName is the code as the gRPC spec spells it (RESOURCE_EXHAUSTED).
func codeName(c codes.Code) string {
	s := c.String()
	var b strings.Builder
	for i, r := range s {
		if i > 0 && r >= 'A' && r <= 'Z' {
			b.WriteByte('_')
		}
		b.WriteRune(r)
	}
	return b.String()
}
