package config

import (
	"errors"
	"fmt"
	"os"
	"reflect"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/pelletier/go-toml/v2"
)

// EnvPrefix starts every environment override.
const EnvPrefix = "NEXY_"

// envConfigPath names the config file when -config is not given.
const envConfigPath = "NEXY_CONFIG"

// Loaded is a validated configuration and where it came from.
type Loaded struct {
	Config
	// Path is the file that was read, "" when none was.
	Path string
	// UnknownEnv lists NEXY_* variables that match no key (likely typos).
	UnknownEnv []string
}

// Load builds the configuration: profile defaults, then the TOML file (path, or
// $NEXY_CONFIG, or ./nexy.toml when present), then NEXY_* overrides from env,
// then *_file secrets; and validates the result. env is os.Environ()-shaped.
func Load(path string, env []string) (*Loaded, error) {
	vars := envMap(env)
	path, explicit := pickPath(path, vars)
	data, err := readConfigFile(path, explicit)
	if err != nil {
		return nil, err
	}
	if data == nil {
		path = ""
	}
	cfg := Default(profileOf(data, vars))
	if err := decodeTOML(data, &cfg); err != nil {
		return nil, fmt.Errorf("config: %s: %w", path, err)
	}
	unknown, err := applyEnv(&cfg, vars)
	if err != nil {
		return nil, err
	}
	if err := readSecretFiles(&cfg); err != nil {
		return nil, err
	}
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	return &Loaded{Config: cfg, Path: path, UnknownEnv: unknown}, nil
}

func envMap(env []string) map[string]string {
	m := make(map[string]string)
	for _, kv := range env {
		if k, v, ok := strings.Cut(kv, "="); ok && strings.HasPrefix(k, EnvPrefix) {
			m[k] = v
		}
	}
	return m
}

func pickPath(path string, vars map[string]string) (string, bool) {
	if path != "" {
		return path, true
	}
	if p := vars[envConfigPath]; p != "" {
		return p, true
	}
	return "nexy.toml", false
}

// readConfigFile returns nil data when an implicit ./nexy.toml does not exist:
// a fresh machine runs on defaults.
func readConfigFile(path string, explicit bool) ([]byte, error) {
	data, err := os.ReadFile(path)
	if errors.Is(err, os.ErrNotExist) && !explicit {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("config: read %s: %w", path, err)
	}
	return data, nil
}

// profileOf finds the profile before the rest is decoded, because the
// profile chooses the defaults the file then overrides.
func profileOf(data []byte, vars map[string]string) string {
	if p, ok := vars["NEXY_SERVER_PROFILE"]; ok {
		return p
	}
	var peek struct {
		Server struct {
			Profile string `toml:"profile"`
		} `toml:"server"`
	}
	_ = toml.Unmarshal(data, &peek) // a broken file is reported by decodeTOML
	return peek.Server.Profile
}

// decodeTOML applies a nexy.toml document to cfg. The document is parsed into
// plain values and each one is checked against its setting's type here, so
// every message names the key and its env variable (go-toml reports a value
// handed to UnmarshalText without its key).
func decodeTOML(data []byte, cfg *Config) error {
	if data == nil {
		return nil
	}
	fields := map[string]field{}
	sections := map[string]bool{}
	for _, f := range Fields(cfg) {
		fields[f.Key] = f
		sections[strings.SplitN(f.Key, ".", 2)[0]] = true
	}
	var doc map[string]any
	if err := toml.Unmarshal(data, &doc); err != nil {
		return syntaxErr(data, err, fields)
	}
	var unknown []string
	type leaf struct {
		f field
		v any
	}
	var leaves []leaf
	for _, name := range sortedKeys(doc) {
		if !sections[name] {
			unknown = append(unknown, name)
			continue
		}
		table, ok := doc[name].(map[string]any)
		if !ok {
			return fmt.Errorf("%s: %s is not a table; write the section as [%s] with its keys below it", name, describe(doc[name]), name)
		}
		for _, k := range sortedKeys(table) {
			key := name + "." + k
			if key == "llm.fallbacks" {
				if err := decodeFallbacks(table[k], cfg); err != nil {
					return err
				}
				continue
			}
			sub, isTable := table[k].(map[string]any)
			if _, leafKey := fields[key]; isTable && !leafKey {
				for _, kk := range sortedKeys(sub) {
					if f, ok := fields[key+"."+kk]; ok {
						leaves = append(leaves, leaf{f, sub[kk]})
					} else {
						unknown = append(unknown, key+"."+kk)
					}
				}
				continue
			}
			f, ok := fields[key]
			if !ok {
				unknown = append(unknown, key)
				continue
			}
			leaves = append(leaves, leaf{f, table[k]})
		}
	}
	if len(unknown) > 0 {
		return unknownKeys(unknown, fields)
	}
	for _, l := range leaves {
		if err := setTOML(l.f.Value, l.v); err != nil {
			return fmt.Errorf("%s (%s): %w", l.f.Key, l.f.Env, err)
		}
	}
	return nil
}

// decodeFallbacks reads [[llm.fallbacks]]: a list of tables, each with the
// keys of LLMFallback.
func decodeFallbacks(v any, cfg *Config) error {
	list, ok := v.([]map[string]any)
	if !ok {
		if anys, isList := v.([]any); isList {
			for _, a := range anys {
				m, isMap := a.(map[string]any)
				if !isMap {
					list = nil
					break
				}
				list = append(list, m)
			}
			ok = list != nil || len(anys) == 0
		}
	}
	if !ok {
		return fmt.Errorf("llm.fallbacks: %s is not a list of tables; write each fallback as [[llm.fallbacks]] with its keys below it", describe(v))
	}
	cfg.LLM.Fallbacks = make([]LLMFallback, len(list))
	for i, table := range list {
		fv := reflect.ValueOf(&cfg.LLM.Fallbacks[i]).Elem()
		keys := map[string]reflect.Value{}
		for j := 0; j < fv.NumField(); j++ {
			keys[fv.Type().Field(j).Tag.Get("toml")] = fv.Field(j)
		}
		for _, k := range sortedKeys(table) {
			dst, known := keys[k]
			if !known {
				return fmt.Errorf("unknown key llm.fallbacks[%d].%s (a fallback has provider, model, base_url, api_key, api_key_file and timeout)", i, k)
			}
			if err := setTOML(dst, table[k]); err != nil {
				return fmt.Errorf("llm.fallbacks[%d].%s: %w", i, k, err)
			}
		}
	}
	return nil
}

// syntaxErr reports a document go-toml cannot parse, with its position and,
// when known, the key and its env variable.
func syntaxErr(data []byte, err error, fields map[string]field) error {
	var de *toml.DecodeError
	if !errors.As(err, &de) {
		return err
	}
	row, col := de.Position()
	key := de.Key()
	if len(key) == 0 {
		// Decoding into a map loses the key of a bad value (an integer too
		// large, say); decoding into the struct knows it.
		var scratch Config
		var sde *toml.DecodeError
		if errors.As(toml.Unmarshal(data, &scratch), &sde) {
			if r, c := sde.Position(); r == row && c == col {
				key = sde.Key()
			}
		}
	}
	where := ""
	if k := strings.Join(key, "."); k != "" {
		where = " " + k
		if f, ok := fields[k]; ok {
			where += " (" + f.Env + ")"
		}
		where = ":" + where
	}
	return fmt.Errorf("line %d column %d%s: %s", row, col, where, strings.TrimPrefix(de.Error(), "toml: "))
}

func sortedKeys(m map[string]any) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	return keys
}

// unknownKeys names keys that are no setting, with the likely intended one.
func unknownKeys(keys []string, fields map[string]field) error {
	for i, k := range keys {
		if near := nearestKey(k, fields); near != "" {
			keys[i] = fmt.Sprintf("%s (did you mean %s?)", k, near)
		}
	}
	if len(keys) == 1 {
		return fmt.Errorf("unknown key %s", keys[0])
	}
	return fmt.Errorf("unknown keys %s", strings.Join(keys, ", "))
}

// nearestKey is the setting within two edits of k, if exactly one is.
func nearestKey(k string, fields map[string]field) string {
	found := ""
	for name := range fields {
		if editDistance(k, name) <= 2 {
			if found != "" {
				return ""
			}
			found = name
		}
	}
	return found
}

func editDistance(a, b string) int {
	prev := make([]int, len(b)+1)
	cur := make([]int, len(b)+1)
	for j := range prev {
		prev[j] = j
	}
	for i := 1; i <= len(a); i++ {
		cur[0] = i
		for j := 1; j <= len(b); j++ {
			cost := 1
			if a[i-1] == b[j-1] {
				cost = 0
			}
			cur[j] = min(prev[j]+1, cur[j-1]+1, prev[j-1]+cost)
		}
		prev, cur = cur, prev
	}
	return prev[len(b)]
}

// describe prints a TOML value the way it was written.
func describe(v any) string {
	switch v := v.(type) {
	case string:
		return strconv.Quote(v)
	case map[string]any:
		return "a table"
	case []any:
		return "an array"
	default:
		return fmt.Sprint(v)
	}
}

var durationType = reflect.TypeOf(Duration{})

// setTOML stores a parsed TOML value in a setting of matching type.
func setTOML(dst reflect.Value, v any) error {
	if dst.Type() == durationType {
		s, ok := v.(string)
		if !ok {
			return fmt.Errorf("%s is not a duration; write it like \"30s\"", describe(v))
		}
		d, err := parseDuration(s)
		if err != nil {
			return err
		}
		dst.Set(reflect.ValueOf(d))
		return nil
	}
	switch dst.Kind() {
	case reflect.String:
		s, ok := v.(string)
		if !ok {
			return fmt.Errorf("%s is not a string; write it in double quotes", describe(v))
		}
		dst.SetString(s)
	case reflect.Bool:
		b, ok := v.(bool)
		if !ok {
			return fmt.Errorf("%s is not true or false", describe(v))
		}
		dst.SetBool(b)
	case reflect.Int:
		n, ok := v.(int64)
		if !ok || dst.OverflowInt(n) {
			return fmt.Errorf("%s is not an integer", describe(v))
		}
		dst.SetInt(n)
	case reflect.Float64:
		switch n := v.(type) {
		case float64:
			dst.SetFloat(n)
		case int64:
			dst.SetFloat(float64(n))
		default:
			return fmt.Errorf("%s is not a number", describe(v))
		}
	default:
		return fmt.Errorf("unsupported setting type %s", dst.Kind())
	}
	return nil
}

func parseDuration(s string) (Duration, error) {
	d, err := time.ParseDuration(s)
	if err != nil {
		return Duration{}, fmt.Errorf("%q is not a duration; write it like \"30s\", \"2m\" or \"500ms\"", s)
	}
	return Duration{d}, nil
}

// field is one leaf setting: its TOML key, env name and value.
type field struct {
	Key   string
	Env   string
	Value reflect.Value
}

// Fields lists every leaf setting of cfg in declaration order. An embedded
// struct's settings belong to its section ([tts] holds Speaker's); a struct
// field is a sub-table ([tts.fallback]); a list of tables ([[llm.fallbacks]])
// is no leaf: decodeTOML reads it, and it has no environment override.
func Fields(cfg *Config) []field {
	var out []field
	root := reflect.ValueOf(cfg).Elem()
	for i := 0; i < root.NumField(); i++ {
		out = appendFields(out, root.Type().Field(i).Tag.Get("toml"), root.Field(i))
	}
	return out
}

func appendFields(out []field, prefix string, sv reflect.Value) []field {
	for j := 0; j < sv.NumField(); j++ {
		sf, fv := sv.Type().Field(j), sv.Field(j)
		switch {
		case sf.Anonymous:
			out = appendFields(out, prefix, fv)
		case fv.Kind() == reflect.Slice:
		case fv.Kind() == reflect.Struct && fv.Type() != durationType:
			out = appendFields(out, prefix+"."+sf.Tag.Get("toml"), fv)
		default:
			key := prefix + "." + sf.Tag.Get("toml")
			out = append(out, field{Key: key, Env: EnvName(key), Value: fv})
		}
	}
	return out
}

func applyEnv(cfg *Config, vars map[string]string) ([]string, error) {
	known := map[string]bool{envConfigPath: true}
	for _, f := range Fields(cfg) {
		known[f.Env] = true
		raw, ok := vars[f.Env]
		if !ok {
			continue
		}
		if err := setValue(f.Value, raw); err != nil {
			return nil, fmt.Errorf("config: environment: %s (%s): %w", f.Key, f.Env, err)
		}
	}
	var unknown []string
	for k := range vars {
		if !known[k] {
			unknown = append(unknown, k)
		}
	}
	sort.Strings(unknown)
	return unknown, nil
}

// setValue stores an environment value (text) in a setting.
func setValue(v reflect.Value, raw string) error {
	if v.Type() == durationType {
		d, err := parseDuration(raw)
		if err != nil {
			return err
		}
		v.Set(reflect.ValueOf(d))
		return nil
	}
	switch v.Kind() {
	case reflect.String:
		v.SetString(raw)
	case reflect.Bool:
		b, err := strconv.ParseBool(raw)
		if err != nil {
			return fmt.Errorf("%q is not true or false", raw)
		}
		v.SetBool(b)
	case reflect.Int:
		n, err := strconv.Atoi(raw)
		if err != nil {
			return fmt.Errorf("%q is not an integer", raw)
		}
		v.SetInt(int64(n))
	case reflect.Float64:
		f, err := strconv.ParseFloat(raw, 64)
		if err != nil {
			return fmt.Errorf("%q is not a number", raw)
		}
		v.SetFloat(f)
	default:
		return fmt.Errorf("unsupported setting type %s", v.Kind())
	}
	return nil
}

// readSecretFiles resolves api_key_file settings (Docker/systemd secrets).
func readSecretFiles(cfg *Config) error {
	type secretFile struct {
		key  string
		file string
		dst  *string
	}
	pairs := []secretFile{
		{"llm.api_key_file", cfg.LLM.APIKeyFile, &cfg.LLM.APIKey},
		{"tts.api_key_file", cfg.TTS.APIKeyFile, &cfg.TTS.APIKey},
		{"tts.fallback.api_key_file", cfg.TTS.Fallback.APIKeyFile, &cfg.TTS.Fallback.APIKey},
	}
	for i := range cfg.LLM.Fallbacks {
		f := &cfg.LLM.Fallbacks[i]
		pairs = append(pairs, secretFile{fmt.Sprintf("llm.fallbacks[%d].api_key_file", i), f.APIKeyFile, &f.APIKey})
	}
	for _, p := range pairs {
		if p.file == "" {
			continue
		}
		if *p.dst != "" {
			return keyErr(p.key, "set either %s or the key file, not both", strings.TrimSuffix(p.key, "_file"))
		}
		b, err := os.ReadFile(p.file)
		if err != nil {
			return keyErr(p.key, "%v", err)
		}
		*p.dst = strings.TrimSpace(string(b))
		if *p.dst == "" {
			return keyErr(p.key, "file %s is empty", p.file)
		}
		if !keyChars(*p.dst) {
			return keyErr(p.key, "file %s: the key in it contains spaces, line breaks or control characters", p.file)
		}
	}
	return nil
}

// Secrets returns the configured secret values, for masking in logs.
func (c *Config) Secrets() []string {
	var out []string
	keys := []string{c.LLM.APIKey, c.TTS.APIKey, c.TTS.Fallback.APIKey}
	for _, f := range c.LLM.Fallbacks {
		keys = append(keys, f.APIKey)
	}
	for _, s := range keys {
		if len(s) >= 4 {
			out = append(out, s)
		}
	}
	return out
}
