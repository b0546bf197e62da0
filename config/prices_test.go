package config

import (
	"math"
	"strings"
	"testing"
)

func TestParsePrices(t *testing.T) {
	p, err := ParsePrices(DefaultPrices)
	if err != nil {
		t.Fatal(err)
	}
	if got := p["gemini-2.5-flash"]; got != (Price{0.30, 2.50}) {
		t.Errorf("gemini-2.5-flash = %+v", got)
	}
	if usd, ok := p.Cost("gemini-2.5-flash", 1_000_000, 2_000_000); !ok || math.Abs(usd-5.30) > 1e-9 {
		t.Errorf("cost = %v %v, want 5.30", usd, ok)
	}
	if _, ok := p.Cost("llama3.2", 1, 1); ok {
		t.Error("an unlisted model has a price without \"*\"")
	}
	star, _ := ParsePrices("*=1/2")
	if usd, ok := star.Cost("anything", 1e6, 1e6); !ok || usd != 3 {
		t.Errorf("\"*\" price: %v %v", usd, ok)
	}
	for _, bad := range []string{"m", "m=1", "m=a/b", "=1/2", "m=-1/2", "m=1/2,m=1/2", "m=1/99999"} {
		if _, err := ParsePrices(bad); err == nil {
			t.Errorf("%q accepted", bad)
		}
	}
	if p, err := ParsePrices(" , "); err != nil || len(p) != 0 {
		t.Errorf("empty list: %v %v", p, err)
	}
}

func TestBadPricesNameTheKey(t *testing.T) {
	c := Default("dev")
	c.Usage.Prices = "gemini=cheap"
	err := c.Validate()
	if err == nil || !strings.Contains(err.Error(), "usage.prices (NEXY_USAGE_PRICES)") {
		t.Fatalf("validate: %v", err)
	}
}

// FuzzParsePrices: never panics; what it accepts it prices sanely.
func FuzzParsePrices(f *testing.F) {
	for _, s := range []string{DefaultPrices, "*=0/0", "m=1/2,,n=3/4", "m = 1e2 / 0x10", "m=NaN/1", "=/"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		p, err := ParsePrices(s)
		if err != nil {
			return
		}
		for model, pr := range p {
			if model == "" || !(pr.Input >= 0 && pr.Input <= 1e4 && pr.Output >= 0 && pr.Output <= 1e4) {
				t.Fatalf("accepted %q → %q %+v", s, model, pr)
			}
		}
	})
}
