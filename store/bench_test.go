package store

import (
	"context"
	"fmt"
	"sync/atomic"
	"testing"
	"time"
)

// BenchmarkSaveTurn is the time one turn waits for its record to commit
// when it is alone: what the writer adds before end_message.
//
//	go test ./store -run '^$' -bench SaveTurn -benchtime 2000x
func BenchmarkSaveTurn(b *testing.B) {
	db := openTest(b)
	ctx := context.Background()
	b.ReportAllocs()
	for i := 0; b.Loop(); i++ {
		if err := db.SaveTurn(ctx, testTurn("HW-BENCH", fmt.Sprintf("s%d", i), time.Now())); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkSaveTurnParallel is throughput under load: many turns finishing
// at once share commits. turns/s is the figure to quote.
func BenchmarkSaveTurnParallel(b *testing.B) {
	db := openTest(b)
	ctx := context.Background()
	var n atomic.Int64
	b.SetParallelism(32) // 32 × GOMAXPROCS turns finishing together
	b.ReportAllocs()
	b.ResetTimer()
	start := time.Now()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			i := n.Add(1)
			if err := db.SaveTurn(ctx, testTurn(fmt.Sprintf("HW-%d", i%200), fmt.Sprintf("s%d", i), time.Now())); err != nil {
				b.Error(err)
				return
			}
		}
	})
	b.ReportMetric(float64(n.Load())/time.Since(start).Seconds(), "turns/s")
}
