package store

import (
	"context"
	"fmt"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/nexy-server/nexy/internal/cputime"
)

// Benchmarks report allocs/op and cpu-ns/op (the process's CPU time per op,
// the writer goroutine included) besides wall time: on a shared machine
// wall time also counts the time other processes held the CPU.
//
//	go test ./store -run '^$' -bench 'Memory|SaveTurn|DevicesVersion' -benchmem -count 3

// BenchmarkSaveTurn is the time one turn waits for its record to commit
// when it is alone: what the writer adds before end_message.
//
//	go test ./store -run '^$' -bench SaveTurn -benchtime 2000x
func BenchmarkSaveTurn(b *testing.B) {
	db := openTest(b)
	ctx := context.Background()
	b.ReportAllocs()
	cpu0 := cputime.Self()
	for i := 0; b.Loop(); i++ {
		if err := db.SaveTurn(ctx, testTurn("HW-BENCH", fmt.Sprintf("s%d", i), time.Now())); err != nil {
			b.Fatal(err)
		}
	}
	cputime.Report(b, cpu0)
}

// BenchmarkSaveTurnParallel is throughput under load: 50 devices finishing
// turns at once share commits. turns/s and cpu-ns/op are the figures to
// quote.
func BenchmarkSaveTurnParallel(b *testing.B) {
	const devices = 50
	db := openTest(b)
	ctx := context.Background()
	var n atomic.Int64
	b.ReportAllocs()
	b.ResetTimer()
	cpu0 := cputime.Self()
	start := time.Now()
	var wg sync.WaitGroup
	for g := range devices {
		wg.Go(func() {
			hw := fmt.Sprintf("HW-%d", g)
			for {
				i := n.Add(1)
				if i > int64(b.N) {
					return
				}
				if err := db.SaveTurn(ctx, testTurn(hw, fmt.Sprintf("s%d", i), time.Now())); err != nil {
					b.Error(err)
					return
				}
			}
		})
	}
	wg.Wait()
	b.StopTimer()
	b.ReportMetric(float64(b.N)/time.Since(start).Seconds(), "turns/s")
	cputime.Report(b, cpu0)
}

// seedMemory gives a device turns, facts and daily digests, and returns the
// query a turn would make.
func seedMemory(b *testing.B, db *DB, hw string, turns, facts, digests int) MemoryQuery {
	b.Helper()
	ctx := context.Background()
	now := time.Now()
	for i := range turns {
		if err := db.QueueTurn(ctx, testTurn(hw, fmt.Sprintf("s%d", i), now.Add(time.Duration(i-turns)*time.Minute))); err != nil {
			b.Fatal(err)
		}
	}
	for i := range max(facts, digests) {
		c := MemoryChange{HardwareID: hw}
		if i < digests {
			c.Digest = &Digest{Day: now.AddDate(0, 0, -i).Format(time.DateOnly), Text: "asked about the weather; answered sunny"}
		}
		if i < facts {
			c.Add = []Fact{{Slot: "note", Text: fmt.Sprintf("fact number %d about the user", i)}}
		}
		if err := db.ApplyMemory(ctx, c); err != nil {
			b.Fatal(err)
		}
	}
	// Queued turns are committed before this returns.
	if err := db.writer.do(ctx, "sync", func(context.Context, *wtx) error { return nil }); err != nil {
		b.Fatal(err)
	}
	return MemoryQuery{RecentTurns: 6, RecentSince: now.Add(-24 * time.Hour), DigestSince: now.AddDate(0, 0, -30).Format(time.DateOnly)}
}

// BenchmarkMemory is what every turn pays to load memory before its model
// call, for a typical device: a few facts and digests, 6 recent turns.
func BenchmarkMemory(b *testing.B) {
	db := openTest(b)
	ctx := context.Background()
	q := seedMemory(b, db, "HW-MEM", 10, 4, 3)
	b.ReportAllocs()
	cpu0 := cputime.Self()
	for b.Loop() {
		m, err := db.Memory(ctx, "HW-MEM", q)
		if err != nil || len(m.Recent) != 6 || len(m.Facts) != 4 || len(m.Digests) != 3 {
			b.Fatalf("memory %d/%d/%d %v", len(m.Recent), len(m.Facts), len(m.Digests), err)
		}
	}
	cputime.Report(b, cpu0)
}

// BenchmarkMemoryLoad is a heavy device: 200 turns, 20 facts and 30 daily
// digests.
//
//	go test ./store -run '^$' -bench MemoryLoad
func BenchmarkMemoryLoad(b *testing.B) {
	db := openTest(b)
	ctx := context.Background()
	q := seedMemory(b, db, "HW-MEM", 200, 20, 30)
	b.ReportAllocs()
	cpu0 := cputime.Self()
	for b.Loop() {
		m, err := db.Memory(ctx, "HW-MEM", q)
		if err != nil || len(m.Recent) != 6 || len(m.Facts) != 20 || len(m.Digests) != 30 {
			b.Fatalf("memory %d/%d/%d %v", len(m.Recent), len(m.Facts), len(m.Digests), err)
		}
	}
	cputime.Report(b, cpu0)
}

// BenchmarkMemoryBusyDevice: a device with 2,000 turns in the last day (a
// shared Mac, or `nexy bench` with one device) must still read its last 6
// turns without sorting the whole day.
func BenchmarkMemoryBusyDevice(b *testing.B) {
	db := openTest(b)
	ctx := context.Background()
	q := seedMemory(b, db, "HW-BUSY", 2000, 4, 3)
	b.ReportAllocs()
	cpu0 := cputime.Self()
	for b.Loop() {
		m, err := db.Memory(ctx, "HW-BUSY", q)
		if err != nil || len(m.Recent) != 6 {
			b.Fatalf("memory %d %v", len(m.Recent), err)
		}
	}
	cputime.Report(b, cpu0)
}

// BenchmarkUseSince is the quota check a COMMIT makes for a device with a
// day of turns.
func BenchmarkUseSince(b *testing.B) {
	db := openTest(b)
	ctx := context.Background()
	seedMemory(b, db, "HW-USE", 50, 0, 0)
	midnight := time.Now().Add(-24 * time.Hour)
	b.ReportAllocs()
	cpu0 := cputime.Self()
	for b.Loop() {
		if u, err := db.UseSince(ctx, "HW-USE", midnight); err != nil || u.Turns != 50 {
			b.Fatal(u, err)
		}
	}
	cputime.Report(b, cpu0)
}
