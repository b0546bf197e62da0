package config

import (
	"fmt"
	"strings"
	"time"
)

// EnvName is the environment variable that overrides key ("limits.idle_timeout"
// → "NEXY_LIMITS_IDLE_TIMEOUT").
func EnvName(key string) string {
	return EnvPrefix + strings.ToUpper(strings.ReplaceAll(key, ".", "_"))
}

// keyErr is a configuration error naming the key and its env variable:
// "config: limits.idle_timeout (NEXY_LIMITS_IDLE_TIMEOUT): …".
func keyErr(key string, format string, args ...any) error {
	if strings.Contains(key, "[") {
		// A list entry ([[llm.fallbacks]]) has no environment override.
		return fmt.Errorf("config: %s: %s", key, fmt.Sprintf(format, args...))
	}
	return fmt.Errorf("config: %s (%s): %s", key, EnvName(key), fmt.Sprintf(format, args...))
}

func firstErr(errs []error) error {
	for _, err := range errs {
		if err != nil {
			return err
		}
	}
	return nil
}

func oneOf(key, v string, allowed ...string) error {
	for _, a := range allowed {
		if v == a {
			return nil
		}
	}
	return keyErr(key, "%q is not one of %s", v, quoteList(allowed))
}

// quoteList prints "a", "b" or "c".
func quoteList(vs []string) string {
	q := make([]string, len(vs))
	for i, v := range vs {
		q[i] = fmt.Sprintf("%q", v)
	}
	if len(q) < 2 {
		return strings.Join(q, "")
	}
	return strings.Join(q[:len(q)-1], ", ") + " or " + q[len(q)-1]
}

func intIn(key string, v, lo, hi int) error {
	if v < lo || v > hi {
		return keyErr(key, "%d is outside %d..%d", v, lo, hi)
	}
	return nil
}

// intInRef is intIn whose upper bound is another setting.
func intInRef(key string, v, lo, hi int, hiKey string) error {
	if v < lo || v > hi {
		return keyErr(key, "%d is outside %d..%d (%s)", v, lo, hi, hiKey)
	}
	return nil
}

func floatIn(key string, v, lo, hi float64) error {
	if !(v >= lo && v <= hi) { // also refuses NaN
		return keyErr(key, "%v is outside %v..%v", v, lo, hi)
	}
	return nil
}

func durIn(key string, v Duration, lo, hi time.Duration) error {
	if v.Duration < lo || v.Duration > hi {
		return keyErr(key, "%s is outside %s..%s", ShortDuration(v.Duration), ShortDuration(lo), ShortDuration(hi))
	}
	return nil
}

// bytesIn checks a byte count; a bound that is another setting (or derived
// from settings) is named by loName / hiName.
func bytesIn(key string, v int, lo int64, loName string, hi int64, hiName string) error {
	if int64(v) < lo || int64(v) > hi {
		return keyErr(key, "%d is outside %s..%s", v, bound(lo, loName), bound(hi, hiName))
	}
	return nil
}

func bound(n int64, name string) string {
	s := fmt.Sprint(n)
	var notes []string
	if h := humanBytes(n); h != "" {
		notes = append(notes, h)
	}
	if name != "" {
		notes = append(notes, name)
	}
	if len(notes) > 0 {
		s += " (" + strings.Join(notes, ", ") + ")"
	}
	return s
}

// humanBytes is "64 KiB", "16 MiB", "1 GiB" for exact multiples, else "".
func humanBytes(n int64) string {
	for _, u := range []struct {
		size int64
		name string
	}{{1 << 30, "GiB"}, {1 << 20, "MiB"}, {1 << 10, "KiB"}} {
		if n >= u.size && n%u.size == 0 {
			return fmt.Sprintf("%d %s", n/u.size, u.name)
		}
	}
	return ""
}

// ShortDuration prints a duration the way a setting is written: "10m",
// "1h", "1m30s", "500ms".
func ShortDuration(d time.Duration) string {
	s := d.String()
	if strings.HasSuffix(s, "m0s") {
		s = strings.TrimSuffix(s, "0s")
	}
	if strings.HasSuffix(s, "h0m") {
		s = strings.TrimSuffix(s, "0m")
	}
	return s
}
