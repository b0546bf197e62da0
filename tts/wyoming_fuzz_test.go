package tts

import (
	"bytes"
	"encoding/json"
	"os"
	"path/filepath"
	"testing"
)

// FuzzWyomingEvents feeds arbitrary bytes to the event reader: it must never
// panic, never hold more than its bounds, and every event it accepts must
// survive being written by writeWyomingEvent and read again unchanged.
func FuzzWyomingEvents(f *testing.F) {
	for _, name := range []string{"piper_hello.events", "piper_voice_not_found.events", "piper_no_sentence.events"} {
		b, err := os.ReadFile(filepath.Join("testdata", "wyoming", name))
		if err != nil {
			f.Fatal(err)
		}
		f.Add(b)
		f.Add(b[:len(b)/2])         // cut inside an event
		f.Add(b[:min(len(b), 300)]) // the first events of a synthesis
	}
	for _, s := range []string{
		`{"type": "audio-chunk", "data": {"rate": 16000, "width": 2}, "data_length": 30, "payload_length": 4}` + "\n" +
			`{"rate": 22050, "channels": 2}` + "\x01\x02\x03\x04",
		`{"type": "error", "data": {"text": "boom", "code": "RuntimeError"}}` + "\n",
		`{"type": "audio-start", "data": null, "data_length": 4}` + "\nnull",
		`{"type": "x", "payload_length": 1048576}` + "\n",
		`{"type": "x", "payload_length": -5}` + "\n",
		`{"type": "x", "data_length": 2}` + "\n[]",
		`{"type": 1}` + "\n",
		"\n",
		`{"type": "a"}` + "\r\n" + `{"type": "b", "version": "1.7.2"}` + "\n",
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		r := newWyomingReader(bytes.NewReader(b))
		for n := 0; ; n++ {
			if n > len(b) {
				t.Fatalf("%d events from %d bytes: an event consumed nothing", n, len(b))
			}
			ev, err := r.next()
			if err != nil {
				return
			}
			if ev.Type == "" || len(ev.Payload) > wyomingMaxPayload || cap(r.payload) > wyomingMaxPayload {
				t.Fatalf("event %q with %d payload bytes (buffer %d)", ev.Type, len(ev.Payload), cap(r.payload))
			}
			ev.format()      // must not panic, whatever the data holds
			ev.serverError() // likewise
			wyRoundTrip(t, ev)
		}
	})
}

// wyRoundTrip writes ev and reads it back; the result must be the same event.
func wyRoundTrip(t *testing.T, ev wyomingEvent) {
	data, err := json.Marshal(ev.Data)
	if err != nil {
		t.Fatalf("data read from the wire does not marshal: %v", err)
	}
	if len(data) > wyomingMaxData || 6*len(ev.Type)+100 > wyomingMaxLine {
		return // legal on the wire (data inline in the header) but too big to resend as a section
	}
	var buf bytes.Buffer
	if err := writeWyomingEvent(&buf, ev.Type, ev.Data, ev.Payload); err != nil {
		t.Fatal(err)
	}
	back, err := newWyomingReader(&buf).next()
	if err != nil {
		t.Fatalf("written event does not read back: %v\n%q", err, buf.Bytes())
	}
	again, _ := json.Marshal(back.Data)
	if len(ev.Data) == 0 {
		data = []byte("null") // an empty object is not sent
	}
	if back.Type != ev.Type || !bytes.Equal(back.Payload, ev.Payload) || !bytes.Equal(again, data) {
		t.Fatalf("round trip changed the event:\n%q %s %d bytes\n%q %s %d bytes", ev.Type, data, len(ev.Payload), back.Type, again, len(back.Payload))
	}
}
