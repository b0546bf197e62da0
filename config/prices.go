package config

import (
	"fmt"
	"strconv"
	"strings"
)

// DefaultPrices are list prices in USD per million tokens (input/output) of
// the models the sample config names, as published by Google and OpenAI in
// 2026; check them against your bill and override usage.prices.
const DefaultPrices = "gemini-2.5-flash-lite=0.10/0.40, gemini-flash-lite-latest=0.10/0.40, gemini-2.0-flash=0.10/0.40, " +
	"gemini-2.5-flash=0.30/2.50, gemini-2.5-pro=1.25/10.00, gpt-4o-mini=0.15/0.60, gpt-4.1-mini=0.40/1.60"

// Price is what a model costs, in USD per million tokens.
type Price struct{ Input, Output float64 }

// Prices maps a model name to its price; the key "*" prices any other model.
type Prices map[string]Price

// Cost is the estimated cost of a model's tokens; ok is false when the
// model has no price (and there is no "*").
func (p Prices) Cost(model string, input, output int64) (usd float64, ok bool) {
	pr, ok := p[model]
	if !ok {
		if pr, ok = p["*"]; !ok {
			return 0, false
		}
	}
	return (float64(input)*pr.Input + float64(output)*pr.Output) / 1e6, true
}

// ParsePrices reads usage.prices: "model=input/output, ...".
func ParsePrices(s string) (Prices, error) {
	out := Prices{}
	for _, item := range strings.Split(s, ",") {
		item = strings.TrimSpace(item)
		if item == "" {
			continue
		}
		model, pair, ok := strings.Cut(item, "=")
		in, outp, ok2 := strings.Cut(pair, "/")
		model = strings.TrimSpace(model)
		if !ok || !ok2 || model == "" {
			return nil, fmt.Errorf("%q: write each price as model=input/output (USD per million tokens), e.g. gemini-2.5-flash=0.30/2.50", item)
		}
		pin, err1 := strconv.ParseFloat(strings.TrimSpace(in), 64)
		pout, err2 := strconv.ParseFloat(strings.TrimSpace(outp), 64)
		// Written so NaN fails too: every comparison with NaN is false.
		if err1 != nil || err2 != nil || !(pin >= 0 && pin <= 1e4) || !(pout >= 0 && pout <= 1e4) {
			return nil, fmt.Errorf("%q: prices must be numbers from 0 to 10000 (USD per million tokens)", item)
		}
		if _, dup := out[model]; dup {
			return nil, fmt.Errorf("%q: model %s is priced twice", item, model)
		}
		out[model] = Price{Input: pin, Output: pout}
	}
	return out, nil
}
