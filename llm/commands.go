package llm

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"strings"
	"unicode"
)

// Features are the feature flags that gate commands (SPEC §4). The open_app and
// close_app commands are always allowed.
type Features struct {
	Messages, WhatsApp, Browser, Subscription bool
}

// Action is a validated command, ready for the client.
type Action struct {
	Command string
	Args    map[string]any
}

// NoAnswerText is spoken when the model returned nothing at all. It never echoes
// the user's prompt or any context.
const NoAnswerText = "Sorry, I didn't get an answer. Please try again."

// Validation errors, wrapped with details by ValidateCommand.
var (
	ErrUnknownCommand  = errors.New("unknown command")
	ErrCommandDisabled = errors.New("command disabled")
	ErrInvalidArgs     = errors.New("invalid command args")
)

// gate is the feature flag a command group depends on.
type gate uint8

const (
	gateAlways gate = iota
	gateMessages
	gateWhatsApp
	gateBrowser
	gateSubscription
)

func (g gate) enabled(f Features) bool {
	switch g {
	case gateMessages:
		return f.Messages
	case gateWhatsApp:
		return f.WhatsApp
	case gateBrowser:
		return f.Browser
	case gateSubscription:
		return f.Subscription
	}
	return true
}

type argKind uint8

const (
	argString argKind = iota
	argInt
)

// argSpec describes one argument: validation and the prompt's description.
type argSpec struct {
	name      string
	kind      argKind
	required  bool
	dropEmpty bool // optional string: an empty value is dropped instead of refused
	trimApp   bool // remove trailing ".app" (any case)
	min, max  int  // argInt range
	def       int  // argInt default when absent (0: none)
	doc       string
}

// commandSpec is one row of the SPEC §4 table. The allowlist, the validator,
// the fallback texts and the prompt are all generated from commandTable.
type commandSpec struct {
	name     string
	gate     gate
	args     []argSpec
	fallback string // spoken when the model gave the command without text
	use      string // prompt: when to use it
}

// commandTable lists every command in its stable order.
var commandTable = []commandSpec{
	{name: "open_app", gate: gateAlways, fallback: "Opening the app.",
		use:  "the user asks to open, launch or start a macOS app.",
		args: []argSpec{{name: "app_name", required: true, trimApp: true, doc: "the app's exact macOS name, e.g. \"Safari\""}}},
	{name: "close_app", gate: gateAlways, fallback: "Closing the app.",
		use:  "the user asks to close or quit an app.",
		args: []argSpec{{name: "app_name", required: true, trimApp: true, doc: "the app's exact macOS name"}}},
	{name: "send_message", gate: gateMessages, fallback: "Sending your message.",
		use: "the user asks to send a text or iMessage through the Messages app.",
		args: []argSpec{
			{name: "contact", required: true, doc: "the recipient's name or phone number"},
			{name: "message", required: true, doc: "the message body, exactly as the user wants it sent"},
		}},
	{name: "read_messages", gate: gateMessages, fallback: "Reading your messages.",
		use: "the user asks to read or check messages in the Messages app.",
		args: []argSpec{
			{name: "contact", required: true, doc: "a name or phone number, or \"all\" for every conversation"},
			{name: "limit", kind: argInt, min: 1, max: 50, def: 10, doc: "how many messages, 1 to 50 (default 10)"},
		}},
	{name: "find_contact", gate: gateMessages, fallback: "Searching for the contact.",
		use:  "the user asks to find someone in their contacts.",
		args: []argSpec{{name: "query", required: true, doc: "the name, number or email to look for"}}},
	{name: "send_whatsapp_message", gate: gateWhatsApp, fallback: "Sending a WhatsApp message.",
		use: "the user asks to send a message and says WhatsApp.",
		args: []argSpec{
			{name: "contact", required: true, doc: "the recipient's name or phone number"},
			{name: "message", required: true, doc: "the message body, exactly as the user wants it sent"},
		}},
	{name: "read_whatsapp_messages", gate: gateWhatsApp, fallback: "Checking WhatsApp messages.",
		use:  "the user asks to read or check WhatsApp messages.",
		args: []argSpec{{name: "contact", doc: "a name or phone number; leave it out for all chats"}}},
	{name: "browser_use", gate: gateBrowser, fallback: "Starting the browser task.",
		use: "the user asks for something to be done on a website (search a shop, fill a form, play a video).",
		args: []argSpec{
			{name: "task", required: true, doc: "a complete, self-contained description of the task, with any site or URL"},
			{name: "config_preset", dropEmpty: true, doc: "a browser preset name; leave it out unless the user named one"},
		}},
	{name: "close_browser", gate: gateBrowser, fallback: "Closing the browser.",
		use: "the user asks to stop the browser task or close the automated browser."},
	{name: "manage_subscription", gate: gateSubscription, fallback: "Opening subscription management.",
		use: "the user explicitly asks to manage, change or cancel their Nexy subscription or billing."},
	{name: "buy_subscription", gate: gateSubscription, fallback: "Opening the subscription purchase page.",
		use: "the user explicitly asks to buy, upgrade to or pay for a Nexy subscription."},
}

func lookupCommand(name string) (commandSpec, bool) {
	for _, c := range commandTable {
		if c.name == name {
			return c, true
		}
	}
	return commandSpec{}, false
}

// AllowedCommands returns the commands enabled by f, in a stable order.
func AllowedCommands(f Features) []string {
	var out []string
	for _, c := range commandTable {
		if c.gate.enabled(f) {
			out = append(out, c.name)
		}
	}
	return out
}

// NormalizeCommand lower-cases a command name and turns runs of '-', '.' and
// white space into one '_' ("Open-App" → "open_app").
func NormalizeCommand(name string) string {
	var b strings.Builder
	sep := false
	for _, r := range strings.TrimSpace(name) {
		if r == '-' || r == '.' || r == '_' || unicode.IsSpace(r) {
			sep = true
			continue
		}
		if sep && b.Len() > 0 {
			b.WriteByte('_')
		}
		sep = false
		b.WriteRune(unicode.ToLower(r))
	}
	return b.String()
}

// ValidateCommand checks a model's command against the allowlist for f and its
// argument schema, failing closed. The returned Action has the normalized name
// and only the known args (unknown ones are dropped; read_messages gets
// limit 10 when the model gave none; a trailing ".app" is removed from app_name).
func ValidateCommand(command string, args map[string]any, f Features) (Action, error) {
	name := NormalizeCommand(command)
	spec, ok := lookupCommand(name)
	if !ok {
		return Action{}, fmt.Errorf("llm command %q: %w", truncate(command, 64), ErrUnknownCommand)
	}
	if !spec.gate.enabled(f) {
		return Action{}, fmt.Errorf("llm command %q: %w by configuration", name, ErrCommandDisabled)
	}
	out := make(map[string]any, len(spec.args))
	for _, a := range spec.args {
		v, err := a.validate(args)
		if err != nil {
			return Action{}, fmt.Errorf("llm command %q: arg %q: %w", name, a.name, err)
		}
		if v != nil {
			out[a.name] = v
		}
	}
	return Action{Command: name, Args: out}, nil
}

// validate returns the value to forward (nil: leave the arg out).
func (a argSpec) validate(args map[string]any) (any, error) {
	v, present := args[a.name]
	if !present || v == nil {
		switch {
		case a.required:
			return nil, fmt.Errorf("%w: required", ErrInvalidArgs)
		case a.def != 0:
			return a.def, nil
		}
		return nil, nil
	}
	if a.kind == argInt {
		n, ok := asInt(v)
		if !ok {
			return nil, fmt.Errorf("%w: must be an integer, got %s", ErrInvalidArgs, describe(v))
		}
		if n < a.min || n > a.max {
			return nil, fmt.Errorf("%w: %d is outside %d..%d", ErrInvalidArgs, n, a.min, a.max)
		}
		return n, nil
	}
	s, ok := v.(string)
	if !ok {
		return nil, fmt.Errorf("%w: must be a string, got %s", ErrInvalidArgs, describe(v))
	}
	for a.trimApp && len(s) >= 4 && strings.EqualFold(s[len(s)-4:], ".app") {
		s = s[:len(s)-4] // "X.app.app" too, so validating again changes nothing
	}
	if strings.TrimSpace(s) == "" {
		if a.dropEmpty {
			return nil, nil
		}
		return nil, fmt.Errorf("%w: must not be empty", ErrInvalidArgs)
	}
	return s, nil
}

// asInt accepts the number types a decoded JSON value can have, if integral.
func asInt(v any) (int, bool) {
	var f float64
	switch n := v.(type) {
	case int:
		return n, true
	case int64:
		if n < math.MinInt32 || n > math.MaxInt32 {
			return 0, false
		}
		return int(n), true
	case json.Number:
		if i, err := n.Int64(); err == nil {
			return asInt(i)
		}
		var err error
		if f, err = n.Float64(); err != nil {
			return 0, false
		}
	case float64:
		f = n
	default:
		return 0, false
	}
	if f != math.Trunc(f) || f < math.MinInt32 || f > math.MaxInt32 {
		return 0, false
	}
	return int(f), true
}

func describe(v any) string {
	switch v.(type) {
	case string:
		return "a string"
	case bool:
		return "a boolean"
	case json.Number, float64, int, int64:
		return "a number"
	case map[string]any:
		return "an object"
	case []any:
		return "an array"
	}
	return fmt.Sprintf("%T", v)
}

// FallbackText is the sentence spoken for an action the model sent without text.
func FallbackText(a Action) string {
	name := NormalizeCommand(a.Command)
	spec, ok := lookupCommand(name)
	if !ok {
		return "Done."
	}
	if name == "open_app" || name == "close_app" {
		if app, _ := a.Args["app_name"].(string); strings.TrimSpace(app) != "" {
			verb := "Opening"
			if name == "close_app" {
				verb = "Closing"
			}
			return verb + " " + strings.TrimSpace(app) + "."
		}
	}
	return spec.fallback
}

// WireJSON renders the action_json of an ActionMessage:
// {"session_id":"…","command":"…","args":{…}} in that key order, args never
// null, non-ASCII kept as is, no HTML escaping.
func (a Action) WireJSON(sessionID string) (string, error) {
	if sessionID == "" {
		return "", errors.New("llm action: empty session id")
	}
	if a.Command == "" {
		return "", errors.New("llm action: empty command")
	}
	args := a.Args
	if args == nil {
		args = map[string]any{}
	}
	var b bytes.Buffer
	enc := json.NewEncoder(&b)
	enc.SetEscapeHTML(false)
	b.WriteString(`{"session_id":`)
	for i, v := range []any{sessionID, a.Command, args} {
		if err := enc.Encode(v); err != nil {
			return "", fmt.Errorf("llm action %q: encode: %w", a.Command, err)
		}
		b.Truncate(b.Len() - 1) // Encode appends a newline
		switch i {
		case 0:
			b.WriteString(`,"command":`)
		case 1:
			b.WriteString(`,"args":`)
		}
	}
	b.WriteByte('}')
	return b.String(), nil
}
