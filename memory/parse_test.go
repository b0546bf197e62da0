package memory

import (
	"encoding/json"
	"errors"
	"flag"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// -update rewrites the parser goldens: go test ./memory -run TestParseGolden -update
// Registered only if no other test file in the package did it already.
func init() {
	if flag.Lookup("update") == nil {
		flag.Bool("update", false, "rewrite golden files under testdata/")
	}
}

func updateGoldens() bool {
	f := flag.Lookup("update")
	return f != nil && f.Value.String() == "true"
}

// parseGolden is what a golden file records about one parse.
type parseGolden struct {
	Mode      string       `json:"mode,omitempty"` // "strict" or "repair"
	Remember  []goldenFact `json:"remember,omitempty"`
	Forget    []string     `json:"forget,omitempty"`
	ForgetAll bool         `json:"forget_all,omitempty"`
	Digest    string       `json:"digest,omitempty"`
	Error     string       `json:"error,omitempty"` // the ParseError reason
}

type goldenFact struct {
	Slot string `json:"slot"`
	Text string `json:"text"`
}

func goldenOf(t *testing.T, out string) parseGolden {
	t.Helper()
	u, repaired, err := parseAnalysis(out)
	if err != nil {
		var pe *ParseError
		if !errors.As(err, &pe) {
			t.Fatalf("error %T: %v", err, err)
		}
		return parseGolden{Error: pe.Reason}
	}
	if u.Method != MethodLLM {
		t.Errorf("Method = %q", u.Method)
	}
	g := parseGolden{Mode: "strict", Forget: u.Forget, ForgetAll: u.ForgetAll, Digest: u.Digest}
	if repaired {
		g.Mode = "repair"
	}
	for _, f := range u.Remember {
		g.Remember = append(g.Remember, goldenFact{f.Slot, f.Text})
	}
	return g
}

// TestParseGolden runs every testdata/analysis/*.txt through the parser and
// compares with its .golden. A file named strict_* must pass the strict
// pass, repair_* must need the repair pass.
func TestParseGolden(t *testing.T) {
	files, err := filepath.Glob(filepath.Join("testdata", "analysis", "*.txt"))
	if err != nil || len(files) < 30 {
		t.Fatalf("inputs: %v (%d found)", err, len(files))
	}
	for _, f := range files {
		name := strings.TrimSuffix(filepath.Base(f), ".txt")
		t.Run(name, func(t *testing.T) {
			in, err := os.ReadFile(f)
			if err != nil {
				t.Fatal(err)
			}
			g := goldenOf(t, string(in))
			checkMode(t, name, g)
			got, _ := json.MarshalIndent(g, "", "  ")
			got = append(got, '\n')
			path := strings.TrimSuffix(f, ".txt") + ".golden"
			if updateGoldens() {
				if err := os.WriteFile(path, got, 0o644); err != nil {
					t.Fatal(err)
				}
			}
			want, err := os.ReadFile(path)
			if err != nil {
				t.Fatalf("%v (run with -update to create it)", err)
			}
			if string(got) != string(want) {
				t.Errorf("%s differs (run with -update after reviewing):\n%s", path, got)
			}
		})
	}
}

func checkMode(t *testing.T, name string, g parseGolden) {
	t.Helper()
	switch {
	case strings.HasPrefix(name, "strict_") && g.Mode != "strict":
		t.Errorf("%s: mode %q, want strict", name, g.Mode)
	case strings.HasPrefix(name, "repair_") && g.Mode != "repair":
		t.Errorf("%s: mode %q, want repair", name, g.Mode)
	}
}

func TestParseErrorType(t *testing.T) {
	_, err := ParseAnalysis("{}")
	var pe *ParseError
	if !errors.As(err, &pe) || pe.Reason != ReasonJSON || !strings.Contains(err.Error(), ReasonJSON) {
		t.Fatalf("err = %v", err)
	}
}

// TestParseBounds: an answer with more lines than one update may carry is
// cut at MaxFactsPerUpdate facts and terms.
func TestParseBounds(t *testing.T) {
	var b strings.Builder
	for i := 0; i < 3*MaxFactsPerUpdate; i++ {
		b.WriteString("FACT note: note number " + strings.Repeat("i", i+1) + "\nFORGET: term " + strings.Repeat("t", i+1) + "\n")
	}
	u, err := ParseAnalysis(b.String())
	if err != nil || len(u.Remember) != MaxFactsPerUpdate || len(u.Forget) != MaxFactsPerUpdate {
		t.Fatalf("%d facts, %d terms, %v", len(u.Remember), len(u.Forget), err)
	}
}
