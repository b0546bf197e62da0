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

// BenchmarkMemoryLoad is what loading memory adds before a turn's model
// call: a device with 200 turns, 20 facts and 30 daily digests.
//
//	go test ./store -run '^$' -bench MemoryLoad
func BenchmarkMemoryLoad(b *testing.B) {
	db := openTest(b)
	ctx := context.Background()
	now := time.Now()
	for i := range 200 {
		if err := db.QueueTurn(ctx, testTurn("HW-MEM", fmt.Sprintf("s%d", i), now.Add(time.Duration(i-200)*time.Minute))); err != nil {
			b.Fatal(err)
		}
	}
	for i := range 30 {
		c := MemoryChange{HardwareID: "HW-MEM", Digest: &Digest{Day: now.AddDate(0, 0, -i).Format(time.DateOnly), Text: "asked about the weather; answered sunny"}}
		if i < 20 {
			c.Add = []Fact{{Slot: "note", Text: fmt.Sprintf("fact number %d about the user", i)}}
		}
		if err := db.ApplyMemory(ctx, c); err != nil {
			b.Fatal(err)
		}
	}
	q := MemoryQuery{RecentTurns: 6, RecentSince: now.Add(-24 * time.Hour), DigestSince: now.AddDate(0, 0, -30).Format(time.DateOnly)}
	b.ReportAllocs()
	for b.Loop() {
		m, err := db.Memory(ctx, "HW-MEM", q)
		if err != nil || len(m.Recent) != 6 || len(m.Facts) != 20 || len(m.Digests) != 30 {
			b.Fatalf("memory %d/%d/%d %v", len(m.Recent), len(m.Facts), len(m.Digests), err)
		}
	}
}
