package server

import (
	"strings"
	"testing"
)

// maskRef is masker.mask before its prefilter: both regexes on every value.
func maskRef(secrets []string, v string) string {
	for _, s := range secrets {
		v = strings.ReplaceAll(v, s, "****")
	}
	v = bearerRE.ReplaceAllString(v, "${1}****")
	return keyParamRE.ReplaceAllString(v, "${1}****")
}

var maskCases = []struct{ in, want string }{
	{"", ""},
	{"grpc", "grpc"},
	{"StreamAudio", "StreamAudio"},
	{"Authorization: Bearer abcdefgh12345", "Authorization: Bearer ****"},
	{"BEARER\tabcdefgh12345", "BEARER\t****"},
	{"bEaReR   eyJhbGciOiJIUzI1NiJ9.e30.sig", "bEaReR   ****"},
	{"bearer short", "bearer short"},
	{"bearerabcdefgh12345", "bearerabcdefgh12345"},
	{"GET /status?token=abc123&x=1", "GET /status?token=****&x=1"},
	{"https://h/v1?api_key=AIzaSyD&key=k2 next", "https://h/v1?api_key=****&key=**** next"},
	{"API-KEY=x PASSWORD=hunter2 Secret=s3 TOKEN=t", "API-KEY=**** PASSWORD=**** Secret=**** TOKEN=****"},
	{"apikey=x", "apikey=****"},
	{"monkey=banana", "monkey=****"}, // the regex has no word boundary; kept as it was
	{"key=", "key="},
	{`key="quoted"`, `key="quoted"`},
	{"a=b c=d keys=e", "a=b c=d keys=e"},
	{"==key==x", "==key=****"},
	// Go's (?i) folds k with U+212A KELVIN SIGN and s with U+017F LONG S.
	{"\u212Aey=abc", "\u212Aey=****"},
	{"pa\u017F\u017Fword=hunter2", "pa\u017F\u017Fword=****"},
	{"\u017Fecret=x&to\u212Aen=y", "\u017Fecret=****&to\u212Aen=****"},
	{"ключ=значение", "ключ=значение"},
	{"bad utf8 \xff key=\xfe\xff", "bad utf8 \xff key=****"},
	{"secret sk-proj-4f7a9c2e1b8d6f3a0e5c7b9d2f4a6c8e here", "secret **** here"},
	{"two secrets nexy-admin-7Qm2xK9pL4vR8sT1 and sk-proj-4f7a9c2e1b8d6f3a0e5c7b9d2f4a6c8e", "two secrets **** and ****"},
}

func TestMask(t *testing.T) {
	m := &masker{secrets: benchSecrets}
	for _, c := range maskCases {
		if got := m.mask(c.in); got != c.want {
			t.Errorf("mask(%q) = %q, want %q", c.in, got, c.want)
		}
		if ref := maskRef(benchSecrets, c.in); ref != c.want {
			t.Errorf("reference mask(%q) = %q, want %q (case is wrong)", c.in, ref, c.want)
		}
	}
	for _, v := range benchLogValues {
		if got, want := m.mask(v), maskRef(benchSecrets, v); got != want {
			t.Errorf("mask(%q) = %q, reference %q", v, got, want)
		}
	}
}

// FuzzMask: the prefilters never skip a value a regex would change, so the
// masked value is always the reference's.
func FuzzMask(f *testing.F) {
	for _, c := range maskCases {
		f.Add(c.in, "")
	}
	for _, v := range benchLogValues {
		f.Add(v, "sk-test")
	}
	f.Add("token=xyz", "xyz")
	f.Add("Bearer sk-123456789", "sk-1")
	f.Fuzz(func(t *testing.T, v, secret string) {
		var secrets []string
		if secret != "" {
			secrets = []string{secret}
		}
		if bearerRE.MatchString(v) && !mayHaveBearer(v) {
			t.Fatalf("bearerRE matches %q, prefilter says no", v)
		}
		if keyParamRE.MatchString(v) && !mayHaveKeyParam(v) {
			t.Fatalf("keyParamRE matches %q, prefilter says no", v)
		}
		m := &masker{secrets: secrets}
		if got, want := m.mask(v), maskRef(secrets, v); got != want {
			t.Fatalf("mask(%q) with secret %q = %q, reference %q", v, secret, got, want)
		}
	})
}
