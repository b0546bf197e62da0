package loadgen

import (
	"math"
	"slices"
	"time"
)

// Percentiles summarize one stage's latencies, in milliseconds.
type Percentiles struct {
	N   int     `json:"n"`
	P50 float64 `json:"p50_ms"`
	P90 float64 `json:"p90_ms"`
	P99 float64 `json:"p99_ms"`
	Max float64 `json:"max_ms"`
}

// Percentile is the nearest-rank p-th percentile (0 < p ≤ 100) of sorted
// samples: the smallest sample with at least p% of all at or below it.
func Percentile(sorted []time.Duration, p float64) time.Duration {
	if len(sorted) == 0 {
		return 0
	}
	rank := int(math.Ceil(p / 100 * float64(len(sorted))))
	return sorted[min(max(rank, 1), len(sorted))-1]
}

// Summarize sorts samples in place and returns their percentiles.
func Summarize(samples []time.Duration) Percentiles {
	slices.Sort(samples)
	if len(samples) == 0 {
		return Percentiles{}
	}
	return Percentiles{N: len(samples), P50: ms(Percentile(samples, 50)), P90: ms(Percentile(samples, 90)),
		P99: ms(Percentile(samples, 99)), Max: ms(samples[len(samples)-1])}
}

func ms(d time.Duration) float64 { return math.Round(float64(d)/1e3) / 1e3 }

// ratio is a/b, 0 when either is unknown.
func ratio(a, b float64) float64 {
	if a <= 0 || b <= 0 {
		return 0
	}
	return math.Round(a/b*1000) / 1000
}
