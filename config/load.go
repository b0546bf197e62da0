package config

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"reflect"
	"sort"
	"strconv"
	"strings"

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

func decodeTOML(data []byte, cfg *Config) error {
	if data == nil {
		return nil
	}
	dec := toml.NewDecoder(bytes.NewReader(data))
	dec.DisallowUnknownFields()
	err := dec.Decode(cfg)
	var strict *toml.StrictMissingError
	if errors.As(err, &strict) {
		keys := make([]string, 0, len(strict.Errors))
		for _, e := range strict.Errors {
			keys = append(keys, strings.Join(e.Key(), "."))
		}
		return fmt.Errorf("unknown key(s) %s", strings.Join(keys, ", "))
	}
	var de *toml.DecodeError
	if errors.As(err, &de) {
		row, col := de.Position()
		return fmt.Errorf("line %d column %d: %s (key %s)", row, col, de.Error(), strings.Join(de.Key(), "."))
	}
	return err
}

// field is one leaf setting: its TOML key, env name and value.
type field struct {
	Key   string
	Env   string
	Value reflect.Value
}

// Fields lists every leaf setting of cfg in declaration order.
func Fields(cfg *Config) []field {
	var out []field
	root := reflect.ValueOf(cfg).Elem()
	for i := 0; i < root.NumField(); i++ {
		section := root.Type().Field(i).Tag.Get("toml")
		sv := root.Field(i)
		for j := 0; j < sv.NumField(); j++ {
			key := sv.Type().Field(j).Tag.Get("toml")
			out = append(out, field{
				Key:   section + "." + key,
				Env:   EnvPrefix + strings.ToUpper(section+"_"+key),
				Value: sv.Field(j),
			})
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
			return nil, fmt.Errorf("config: %s (from %s): %w", f.Key, f.Env, err)
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

func setValue(v reflect.Value, raw string) error {
	if u, ok := v.Addr().Interface().(interface{ UnmarshalText([]byte) error }); ok {
		return u.UnmarshalText([]byte(raw))
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
	pairs := []struct {
		key  string
		file string
		dst  *string
	}{
		{"llm.api_key_file", cfg.LLM.APIKeyFile, &cfg.LLM.APIKey},
		{"tts.api_key_file", cfg.TTS.APIKeyFile, &cfg.TTS.APIKey},
	}
	for _, p := range pairs {
		if p.file == "" {
			continue
		}
		if *p.dst != "" {
			return keyErr(p.key, "set either the key or the key file, not both")
		}
		b, err := os.ReadFile(p.file)
		if err != nil {
			return keyErr(p.key, "%v", err)
		}
		*p.dst = strings.TrimSpace(string(b))
		if *p.dst == "" {
			return keyErr(p.key, "file %s is empty", p.file)
		}
	}
	return nil
}

// Secrets returns the configured secret values, for masking in logs.
func (c *Config) Secrets() []string {
	var out []string
	for _, s := range []string{c.LLM.APIKey, c.TTS.APIKey} {
		if len(s) >= 4 {
			out = append(out, s)
		}
	}
	return out
}
