package llm

import (
	"encoding/json"
	"errors"
	"reflect"
	"strings"
	"testing"
)

var allOn = Features{Messages: true, WhatsApp: true, Browser: true, Subscription: true}

func TestAllowedCommands(t *testing.T) {
	cases := []struct {
		f    Features
		want string
	}{
		{Features{}, "open_app close_app"},
		{Features{Messages: true}, "open_app close_app send_message read_messages find_contact"},
		{Features{WhatsApp: true}, "open_app close_app send_whatsapp_message read_whatsapp_messages"},
		{Features{Browser: true}, "open_app close_app browser_use close_browser"},
		{Features{Subscription: true}, "open_app close_app manage_subscription buy_subscription"},
		{allOn, "open_app close_app send_message read_messages find_contact send_whatsapp_message " +
			"read_whatsapp_messages browser_use close_browser manage_subscription buy_subscription"},
	}
	for _, c := range cases {
		if got := strings.Join(AllowedCommands(c.f), " "); got != c.want {
			t.Errorf("AllowedCommands(%+v) = %q, want %q", c.f, got, c.want)
		}
	}
}

func TestNormalizeCommand(t *testing.T) {
	for in, want := range map[string]string{
		"open_app": "open_app", "Open-App": "open_app", "OPEN APP": "open_app", "open.app": "open_app",
		" open  -  app ": "open_app", "open__app": "open_app", "Send.WhatsApp-Message": "send_whatsapp_message",
		"": "", "_-.": "",
	} {
		if got := NormalizeCommand(in); got != want {
			t.Errorf("NormalizeCommand(%q) = %q, want %q", in, got, want)
		}
	}
}

func TestValidateCommand(t *testing.T) {
	type m = map[string]any
	cases := []struct {
		name    string
		cmd     string
		args    m
		f       Features
		want    m     // expected forwarded args when valid
		wantErr error // sentinel when invalid
	}{
		{"open", "open_app", m{"app_name": "Safari"}, Features{}, m{"app_name": "Safari"}, nil},
		{"normalized name", "Open-App", m{"app_name": "Safari"}, Features{}, m{"app_name": "Safari"}, nil},
		{".app removed", "open_app", m{"app_name": "Calculator.app"}, Features{}, m{"app_name": "Calculator"}, nil},
		{".APP removed", "close_app", m{"app_name": "Visual Studio Code.APP"}, Features{}, m{"app_name": "Visual Studio Code"}, nil},
		{"only .app", "open_app", m{"app_name": ".app"}, Features{}, nil, ErrInvalidArgs},
		{"not trimmed", "open_app", m{"app_name": " Safari "}, Features{}, m{"app_name": " Safari "}, nil},
		{"blank app", "open_app", m{"app_name": "  "}, Features{}, nil, ErrInvalidArgs},
		{"missing app", "open_app", m{}, Features{}, nil, ErrInvalidArgs},
		{"nil args", "open_app", nil, Features{}, nil, ErrInvalidArgs},
		{"null app", "open_app", m{"app_name": nil}, Features{}, nil, ErrInvalidArgs},
		{"app not string", "open_app", m{"app_name": json.Number("3")}, Features{}, nil, ErrInvalidArgs},
		{"extra args dropped", "open_app", m{"app_name": "Mail", "session_id": "evil", "x": 1}, Features{}, m{"app_name": "Mail"}, nil},
		{"unknown", "rm_rf", m{}, allOn, nil, ErrUnknownCommand},
		{"empty command", "", m{}, allOn, nil, ErrUnknownCommand},
		{"describe_screen invented", "describe_screen", m{}, allOn, nil, ErrUnknownCommand},
		{"messages off", "send_message", m{"contact": "Mom", "message": "hi"}, Features{}, nil, ErrCommandDisabled},
		{"send", "send_message", m{"contact": "Mom", "message": "see you soon"}, Features{Messages: true},
			m{"contact": "Mom", "message": "see you soon"}, nil},
		{"send keeps spacing", "send_message", m{"contact": "Mom", "message": "Meet at 10:30,  ok?"}, Features{Messages: true},
			m{"contact": "Mom", "message": "Meet at 10:30,  ok?"}, nil},
		{"send no body", "send_message", m{"contact": "Mom"}, Features{Messages: true}, nil, ErrInvalidArgs},
		{"read default limit", "read_messages", m{"contact": "all"}, Features{Messages: true}, m{"contact": "all", "limit": 10}, nil},
		{"read limit number", "read_messages", m{"contact": "Bob", "limit": json.Number("5")}, Features{Messages: true}, m{"contact": "Bob", "limit": 5}, nil},
		{"read limit float", "read_messages", m{"contact": "Bob", "limit": 50.0}, Features{Messages: true}, m{"contact": "Bob", "limit": 50}, nil},
		{"read limit 1.0", "read_messages", m{"contact": "Bob", "limit": json.Number("1.0")}, Features{Messages: true}, m{"contact": "Bob", "limit": 1}, nil},
		{"read limit 0", "read_messages", m{"contact": "Bob", "limit": json.Number("0")}, Features{Messages: true}, nil, ErrInvalidArgs},
		{"read limit 51", "read_messages", m{"contact": "Bob", "limit": 51}, Features{Messages: true}, nil, ErrInvalidArgs},
		{"read limit 5.5", "read_messages", m{"contact": "Bob", "limit": 5.5}, Features{Messages: true}, nil, ErrInvalidArgs},
		{"read limit string", "read_messages", m{"contact": "Bob", "limit": "10"}, Features{Messages: true}, nil, ErrInvalidArgs},
		{"read limit huge", "read_messages", m{"contact": "Bob", "limit": json.Number("1e300")}, Features{Messages: true}, nil, ErrInvalidArgs},
		{"read no contact", "read_messages", m{}, Features{Messages: true}, nil, ErrInvalidArgs},
		{"find", "find_contact", m{"query": "Anna"}, Features{Messages: true}, m{"query": "Anna"}, nil},
		{"find empty", "find_contact", m{"query": ""}, Features{Messages: true}, nil, ErrInvalidArgs},
		{"whatsapp off", "send_whatsapp_message", m{"contact": "A", "message": "b"}, Features{Messages: true}, nil, ErrCommandDisabled},
		{"whatsapp send", "send_whatsapp_message", m{"contact": "Аня", "message": "Привет 👋"}, Features{WhatsApp: true},
			m{"contact": "Аня", "message": "Привет 👋"}, nil},
		{"whatsapp read all", "read_whatsapp_messages", m{}, Features{WhatsApp: true}, m{}, nil},
		{"whatsapp read one", "read_whatsapp_messages", m{"contact": "Ann"}, Features{WhatsApp: true}, m{"contact": "Ann"}, nil},
		{"whatsapp read empty contact", "read_whatsapp_messages", m{"contact": " "}, Features{WhatsApp: true}, nil, ErrInvalidArgs},
		{"browser off", "browser_use", m{"task": "x"}, Features{}, nil, ErrCommandDisabled},
		{"browser", "browser_use", m{"task": "open https://youtube.com", "config_preset": "fast"}, Features{Browser: true},
			m{"task": "open https://youtube.com", "config_preset": "fast"}, nil},
		{"browser empty preset dropped", "browser_use", m{"task": "t", "config_preset": ""}, Features{Browser: true}, m{"task": "t"}, nil},
		{"browser bad preset", "browser_use", m{"task": "t", "config_preset": true}, Features{Browser: true}, nil, ErrInvalidArgs},
		{"browser legacy args", "browser_use", m{"url": "https://x.com", "query": "cats"}, Features{Browser: true}, nil, ErrInvalidArgs},
		{"close browser", "close_browser", m{"junk": 1}, Features{Browser: true}, m{}, nil},
		{"subscription off", "buy_subscription", nil, Features{}, nil, ErrCommandDisabled},
		{"manage", "manage-subscription", nil, Features{Subscription: true}, m{}, nil},
		{"buy", "BUY SUBSCRIPTION", m{}, Features{Subscription: true}, m{}, nil},
	}
	for _, c := range cases {
		a, err := ValidateCommand(c.cmd, c.args, c.f)
		if c.wantErr != nil {
			if !errors.Is(err, c.wantErr) {
				t.Errorf("%s: err = %v, want %v", c.name, err, c.wantErr)
			}
			if a.Command != "" || a.Args != nil {
				t.Errorf("%s: got action %+v with an error", c.name, a)
			}
			continue
		}
		if err != nil {
			t.Errorf("%s: unexpected error %v", c.name, err)
			continue
		}
		if a.Command != NormalizeCommand(c.cmd) || !reflect.DeepEqual(a.Args, c.want) {
			t.Errorf("%s: got %q %#v, want %#v", c.name, a.Command, a.Args, c.want)
		}
	}
}

// TestValidateEveryGate checks every command against every flag combination:
// allowed exactly when AllowedCommands lists it.
func TestValidateEveryGate(t *testing.T) {
	full := map[string]map[string]any{}
	for _, c := range commandTable {
		args := map[string]any{}
		for _, a := range c.args {
			if a.kind == argInt {
				args[a.name] = 3
			} else {
				args[a.name] = "x"
			}
		}
		full[c.name] = args
	}
	for mask := 0; mask < 16; mask++ {
		f := Features{Messages: mask&1 != 0, WhatsApp: mask&2 != 0, Browser: mask&4 != 0, Subscription: mask&8 != 0}
		allowed := map[string]bool{}
		for _, n := range AllowedCommands(f) {
			allowed[n] = true
		}
		for name, args := range full {
			_, err := ValidateCommand(name, args, f)
			if allowed[name] != (err == nil) {
				t.Errorf("%+v %s: allowed=%v err=%v", f, name, allowed[name], err)
			}
			if !allowed[name] && !errors.Is(err, ErrCommandDisabled) {
				t.Errorf("%+v %s: err %v is not ErrCommandDisabled", f, name, err)
			}
		}
	}
}

func TestFallbackText(t *testing.T) {
	cases := []struct {
		a    Action
		want string
	}{
		{Action{"open_app", map[string]any{"app_name": "Safari"}}, "Opening Safari."},
		{Action{"close_app", map[string]any{"app_name": "Music"}}, "Closing Music."},
		{Action{"open_app", nil}, "Opening the app."},
		{Action{"close_app", map[string]any{"app_name": " "}}, "Closing the app."},
		{Action{"send_message", nil}, "Sending your message."},
		{Action{"read_messages", nil}, "Reading your messages."},
		{Action{"find_contact", nil}, "Searching for the contact."},
		{Action{"send_whatsapp_message", nil}, "Sending a WhatsApp message."},
		{Action{"read_whatsapp_messages", nil}, "Checking WhatsApp messages."},
		{Action{"browser_use", nil}, "Starting the browser task."},
		{Action{"close_browser", nil}, "Closing the browser."},
		{Action{"manage_subscription", nil}, "Opening subscription management."},
		{Action{"buy_subscription", nil}, "Opening the subscription purchase page."},
		{Action{"Open-App", map[string]any{"app_name": "Notes"}}, "Opening Notes."},
		{Action{"something_else", nil}, "Done."},
	}
	for _, c := range cases {
		if got := FallbackText(c.a); got != c.want {
			t.Errorf("FallbackText(%+v) = %q, want %q", c.a, got, c.want)
		}
	}
	if strings.Contains(NoAnswerText, "{") || NoAnswerText == "" {
		t.Fatalf("NoAnswerText = %q", NoAnswerText)
	}
}

func TestWireJSON(t *testing.T) {
	cases := []struct {
		a    Action
		sid  string
		want string
	}{
		{Action{"open_app", map[string]any{"app_name": "Safari"}}, "req-1",
			`{"session_id":"req-1","command":"open_app","args":{"app_name":"Safari"}}`},
		{Action{"close_browser", nil}, "s", `{"session_id":"s","command":"close_browser","args":{}}`},
		{Action{"close_browser", map[string]any{}}, "s", `{"session_id":"s","command":"close_browser","args":{}}`},
		{Action{"send_message", map[string]any{"message": "Привет <b> & \"q\" 😊", "contact": "Мама"}}, "ü",
			`{"session_id":"ü","command":"send_message","args":{"contact":"Мама","message":"Привет <b> & \"q\" 😊"}}`},
		{Action{"read_messages", map[string]any{"contact": "all", "limit": 10}}, "s",
			`{"session_id":"s","command":"read_messages","args":{"contact":"all","limit":10}}`},
	}
	for _, c := range cases {
		got, err := c.a.WireJSON(c.sid)
		if err != nil || got != c.want {
			t.Errorf("WireJSON = %s, %v; want %s", got, err, c.want)
		}
		if !json.Valid([]byte(got)) {
			t.Errorf("invalid JSON %s", got)
		}
	}
	if _, err := (Action{"open_app", nil}).WireJSON(""); err == nil {
		t.Error("empty session id accepted")
	}
	if _, err := (Action{"", nil}).WireJSON("s"); err == nil {
		t.Error("empty command accepted")
	}
	if _, err := (Action{"x", map[string]any{"c": make(chan int)}}).WireJSON("s"); err == nil {
		t.Error("unencodable args accepted")
	}
}

// TestReplyToWire runs a streamed model reply through the parser, the
// validator and the wire encoder, as the turn pipeline does.
func TestReplyToWire(t *testing.T) {
	deltas := []string{`{"text": "", "command": "Open-App", "args": {"app_name": "Calcu`, `lator.app", "text": "ignored"}, "session_id": "model-made-up"}`}
	text, r := feedAll(t, deltas)
	if text != "" || r.Err != nil {
		t.Fatalf("text %q err %v", text, r.Err)
	}
	a, err := ValidateCommand(r.Command, r.Args, Features{})
	if err != nil {
		t.Fatal(err)
	}
	if got := FallbackText(a); got != "Opening Calculator." {
		t.Fatalf("fallback %q", got)
	}
	wire, err := a.WireJSON("req-42")
	if err != nil || wire != `{"session_id":"req-42","command":"open_app","args":{"app_name":"Calculator"}}` {
		t.Fatalf("wire %s, %v", wire, err)
	}
}

// FuzzValidateCommand feeds arbitrary command JSON through the validator and
// the wire encoder: no panics, and whatever passes encodes to valid JSON that
// decodes back to the same action.
func FuzzValidateCommand(f *testing.F) {
	f.Add("open_app", `{"app_name": "Safari.app"}`, uint8(0))
	f.Add("read-messages", `{"contact": "all", "limit": 7.0}`, uint8(1))
	f.Add("browser_use", `{"task": "a\u2028b <script>", "config_preset": ""}`, uint8(4))
	f.Add("Send WhatsApp Message", `{"contact": "Аня", "message": "\ud83d\ude00"}`, uint8(2))
	f.Fuzz(func(t *testing.T, cmd, argsJSON string, mask uint8) {
		var args map[string]any
		d := json.NewDecoder(strings.NewReader(argsJSON))
		d.UseNumber()
		if d.Decode(&args) != nil {
			args = nil
		}
		feat := Features{Messages: mask&1 != 0, WhatsApp: mask&2 != 0, Browser: mask&4 != 0, Subscription: mask&8 != 0}
		a, err := ValidateCommand(cmd, args, feat)
		_ = FallbackText(a)
		if err != nil {
			return
		}
		found := false
		for _, n := range AllowedCommands(feat) {
			found = found || n == a.Command
		}
		if !found {
			t.Fatalf("%q passed but is not allowed", a.Command)
		}
		wire, err := a.WireJSON("sid")
		if err != nil {
			t.Fatalf("WireJSON: %v", err)
		}
		var back struct {
			SessionID string         `json:"session_id"`
			Command   string         `json:"command"`
			Args      map[string]any `json:"args"`
		}
		if err := json.Unmarshal([]byte(wire), &back); err != nil || back.SessionID != "sid" || back.Command != a.Command || back.Args == nil {
			t.Fatalf("wire %s does not round-trip: %v", wire, err)
		}
		// A second validation of the forwarded args is stable (idempotent).
		again, err := ValidateCommand(back.Command, back.Args, feat)
		if err != nil || !reflect.DeepEqual(normJSON(t, again.Args), normJSON(t, a.Args)) {
			t.Fatalf("revalidation: %+v, %v vs %+v", again, err, a)
		}
	})
}

func BenchmarkValidateAndWire(b *testing.B) {
	args := map[string]any{"contact": "Mom", "message": "see you soon", "extra": true}
	b.ReportAllocs()
	for b.Loop() {
		a, err := ValidateCommand("send_message", args, allOn)
		if err != nil {
			b.Fatal(err)
		}
		if _, err := a.WireJSON("session-1"); err != nil {
			b.Fatal(err)
		}
	}
}
