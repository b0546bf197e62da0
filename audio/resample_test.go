package audio

import (
	"bytes"
	"fmt"
	"io"
	"math"
	"math/cmplx"
	"math/rand/v2"
	"testing"
	"time"
)

var testRates = []int{8000, 11025, 16000, 22050, 24000, 44100, 48000, 96000}

// skipFor is how many output samples around each end contain the filter's
// start-up/flush transient (a sine switched on at t=0 is not band-limited).
func skipFor(t *testing.T, in int) int {
	t.Helper()
	if in == SampleRate {
		return 0
	}
	f, err := filterFor(in, SampleRate)
	if err != nil {
		t.Fatal(err)
	}
	return 2 * f.k * SampleRate / in
}

// TestFilterResponse measures the prototype filter of every rate pair from its
// float32 coefficients: ±0.1 dB to 0.9×Nyquist, ≥ 80 dB from Nyquist on.
func TestFilterResponse(t *testing.T) {
	for _, in := range testRates {
		if in == SampleRate {
			continue
		}
		t.Run(fmt.Sprint(in), func(t *testing.T) {
			f, err := filterFor(in, SampleRate)
			if err != nil {
				t.Fatal(err)
			}
			h := make([]float64, f.l*f.k) // reassemble the prototype
			for p := 0; p < f.l; p++ {
				for tp := 0; tp < f.k; tp++ {
					h[p+f.l*tp] = float64(f.coef[p*f.k+f.k-1-tp])
				}
			}
			fu := float64(in * f.l)
			nyq := float64(min(in, SampleRate)) / 2
			gain := func(hz float64) float64 {
				var s complex128
				w := -2 * math.Pi * hz / fu
				for k, v := range h {
					s += complex(v, 0) * cmplx.Rect(1, w*float64(k))
				}
				return db(cmplx.Abs(s) / float64(f.l))
			}
			worstPass := 0.0
			for i := 0; i <= 60; i++ {
				g := gain(0.9 * nyq * float64(i) / 60)
				worstPass = math.Max(worstPass, math.Abs(g))
			}
			worstStop := -1000.0
			// Dense just above the edge (the highest Kaiser sidelobes), then
			// across the whole stopband up to the virtual Nyquist.
			for i := 0; i <= 200; i++ {
				worstStop = math.Max(worstStop, gain(nyq*(1+0.5*float64(i)/200)))
			}
			for i := 1; i <= 200; i++ {
				worstStop = math.Max(worstStop, gain(1.5*nyq+(fu/2-1.5*nyq)*float64(i)/200))
			}
			t.Logf("%d Hz: L/M=%d/%d, %d taps/phase, passband ripple %.4f dB, stopband %.1f dB",
				in, f.l, f.m, f.k, worstPass, worstStop)
			if worstPass > 0.1 {
				t.Errorf("passband deviation %.4f dB > 0.1 dB", worstPass)
			}
			if worstStop > -80 {
				t.Errorf("stopband only %.1f dB down, want ≤ -80 dB", worstStop)
			}
		})
	}
}

// TestResampleSine checks a 1 kHz tone and a tone at 0.85×Nyquist for every
// rate: exact length, SNR/THD+N ≥ 70 dB against the ideal 48 kHz sine (which
// also proves the group delay is compensated), amplitude within 0.1 dB.
func TestResampleSine(t *testing.T) {
	for _, in := range testRates {
		for _, freq := range []float64{1000, 0.85 * float64(min(in, SampleRate)) / 2} {
			t.Run(fmt.Sprintf("%d/%.0fHz", in, freq), func(t *testing.T) {
				const amp = 16384
				n := in / 2 // 0.5 s
				x := sine(n, in, freq, amp)
				y := decodeAll(t, bytes.NewReader(s16(x)), PCM16, Format{in, 1})
				if len(y) != wantLen(n, in) {
					t.Fatalf("got %d samples, want %d", len(y), wantLen(n, in))
				}
				ideal := func(i int) float64 { return amp * math.Sin(2*math.Pi*freq*float64(i)/SampleRate) }
				skip := skipFor(t, in)
				from, to := skip, len(y)-skip
				snr := snrDB(y, ideal, from, to)
				gain := db(rms(y, from, to) / (amp / math.Sqrt2))
				t.Logf("SNR %.1f dB, gain %+.4f dB", snr, gain)
				if snr < 70 {
					t.Errorf("SNR %.1f dB < 70 dB", snr)
				}
				if math.Abs(gain) > 0.1 {
					t.Errorf("amplitude off by %.4f dB", gain)
				}
			})
		}
	}
}

// TestResampleAliasRejection: a 30 kHz tone in a 96 kHz stream is above the
// 24 kHz output Nyquist and must vanish (≥ 70 dB), not fold down to 18 kHz.
// Measured on the float output, before int16 rounding hides it entirely.
func TestResampleAliasRejection(t *testing.T) {
	const amp = 30000
	for _, freq := range []float64{24000, 30000, 40000} {
		rs, err := newResampler(96000, SampleRate)
		if err != nil {
			t.Fatal(err)
		}
		x := make([]float32, 96000/2)
		for i := range x {
			x[i] = float32(amp * math.Sin(2*math.Pi*freq*float64(i)/96000))
		}
		rs.write(x)
		rs.flush()
		y := make([]float32, len(x))
		n := rs.read(y)
		skip := skipFor(t, 96000)
		var p float64
		for _, v := range y[skip : n-skip] {
			p += float64(v) * float64(v)
		}
		att := db(math.Sqrt(p/float64(n-2*skip)) / (amp / math.Sqrt2))
		t.Logf("%.0f Hz at 96 kHz → 48 kHz: %.1f dB", freq, att)
		if att > -70 {
			t.Errorf("%.0f Hz tone only attenuated %.1f dB, want ≤ -70 dB", freq, att)
		}
		// And through the public path the int16 output is (near) silent.
		z := decodeAll(t, bytes.NewReader(s16(sine(96000/2, 96000, freq, amp))), PCM16, Format{96000, 1})
		if r := rms(z, skip, len(z)-skip); r > 1 {
			t.Errorf("%.0f Hz: int16 output RMS %.2f, want ≤ 1 LSB", freq, r)
		}
	}
}

// TestResampleDC: a constant passes unchanged once the start-up edge is over.
func TestResampleDC(t *testing.T) {
	for _, in := range testRates {
		x := make([]int16, in/4)
		for i := range x {
			x[i] = -12345
		}
		y := decodeAll(t, bytes.NewReader(s16(x)), PCM16, Format{in, 1})
		skip := skipFor(t, in)
		for i := skip; i < len(y)-skip; i++ {
			if y[i] != -12345 {
				t.Fatalf("%d Hz: sample %d = %d, want -12345", in, i, y[i])
			}
		}
	}
}

// TestResampleClipping: a full-scale square wave overshoots (Gibbs); the
// output must clip to int16, never wrap around to the opposite sign.
func TestResampleClipping(t *testing.T) {
	for _, in := range []int{22050, 24000, 96000} {
		period := in / 1000
		x := make([]int16, in/4)
		for i := range x {
			if (i/(period/2))%2 == 0 {
				x[i] = 32767
			} else {
				x[i] = -32768
			}
		}
		y := decodeAll(t, bytes.NewReader(s16(x)), PCM16, Format{in, 1})
		clipped := 0
		for j, v := range y {
			// Middle of each half-period in input time: sign must match.
			pos := float64(j) * float64(in) / SampleRate
			ph := math.Mod(pos, float64(period)) / float64(period)
			if j > 100 && j < len(y)-100 {
				if ph > 0.1 && ph < 0.4 && v < 20000 || ph > 0.6 && ph < 0.9 && v > -20000 {
					t.Fatalf("%d Hz: sample %d = %d at phase %.2f: wrapped or lost level", in, j, v, ph)
				}
			}
			if v == 32767 || v == -32768 {
				clipped++
			}
		}
		if clipped == 0 {
			t.Errorf("%d Hz: expected some clipped overshoot samples", in)
		}
	}
}

// TestResampleAlignment: an impulse at input time t comes out centred at
// output time t (group delay compensated), for every ratio.
func TestResampleAlignment(t *testing.T) {
	for _, in := range testRates {
		// 0.2 s maps to an integer sample index at every test rate.
		n0 := in / 5
		x := make([]int16, in/2)
		x[n0] = 30000
		y := decodeAll(t, bytes.NewReader(s16(x)), PCM16, Format{in, 1})
		want := SampleRate / 5
		peak := 0
		for i := range y {
			if y[i] > y[peak] {
				peak = i
			}
		}
		if peak != want {
			t.Errorf("%d Hz: impulse at %d came out at %d, want %d", in, n0, peak, want)
		}
		if l, r := int(y[want-1]), int(y[want+1]); in <= SampleRate && abs(l-r) > 1 {
			t.Errorf("%d Hz: response around the peak is not symmetric: %d vs %d", in, l, r)
		}
	}
}

func abs(v int) int {
	if v < 0 {
		return -v
	}
	return v
}

// TestResampleTailFlushed: a tone that runs to the very end is still audible
// in the last millisecond of output (the filter tail is flushed at EOF).
func TestResampleTailFlushed(t *testing.T) {
	for _, in := range testRates {
		x := sine(in/10, in, 440, 20000)
		y := decodeAll(t, bytes.NewReader(s16(x)), PCM16, Format{in, 1})
		if len(y) != wantLen(len(x), in) {
			t.Fatalf("%d Hz: %d samples, want %d", in, len(y), wantLen(len(x), in))
		}
		if r := rms(y, len(y)-48, len(y)); r < 5000 {
			t.Errorf("%d Hz: last 1 ms has RMS %.0f: tail cut", in, r)
		}
	}
}

// TestResampleChunkingInvariance: the output for a stream fed in random-sized
// pieces (odd byte counts included) equals the output for the whole stream.
func TestResampleChunkingInvariance(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	for _, in := range testRates {
		x := make([]int16, in/3)
		for i := range x {
			x[i] = int16(rng.IntN(65536) - 32768)
		}
		data := s16(x)
		whole := decodeAll(t, bytes.NewReader(data), PCM16, Format{in, 1})
		for _, maxPiece := range []int{1, 7, 333, 5000} {
			pr := &pieceReader{data: data, rng: rand.New(rand.NewPCG(uint64(in), uint64(maxPiece))), max: maxPiece}
			d, err := Decode(pr, PCM16, Format{in, 1})
			if err != nil {
				t.Fatal(err)
			}
			// Read through odd-sized buffers too.
			var got []byte
			buf := make([]byte, 1+rng.IntN(3000))
			for {
				n, err := d.Read(buf)
				got = append(got, buf[:n]...)
				if err == io.EOF {
					break
				}
				if err != nil {
					t.Fatal(err)
				}
			}
			if !bytes.Equal(got, s16(whole)) {
				t.Fatalf("%d Hz, pieces ≤ %d bytes: output differs from whole-stream output", in, maxPiece)
			}
		}
	}
}

// TestResamplePassthrough: 48 kHz mono is copied bit for bit.
func TestResamplePassthrough(t *testing.T) {
	x := make([]int16, 10000)
	for i := range x {
		x[i] = int16(i*7919 - 32768)
	}
	y := decodeAll(t, bytes.NewReader(s16(x)), PCM16, Format{48000, 1})
	if !bytes.Equal(s16(y), s16(x)) {
		t.Fatal("48 kHz mono was altered")
	}
}

func TestUnsupportedRates(t *testing.T) {
	for _, in := range []int{0, -1, 999, 44056, 400000} {
		if _, err := Decode(bytes.NewReader(nil), PCM16, Format{in, 1}); err == nil {
			t.Errorf("rate %d accepted", in)
		} else {
			t.Logf("%d: %v", in, err)
		}
	}
	// Unusual but exact ratios work.
	for _, in := range []int{12000, 32000, 88200, 192000, 7350} {
		x := sine(in/10, in, 500, 10000)
		y := decodeAll(t, bytes.NewReader(s16(x)), PCM16, Format{in, 1})
		if len(y) != wantLen(len(x), in) {
			t.Errorf("%d Hz: %d samples, want %d", in, len(y), wantLen(len(x), in))
		}
	}
}

// TestFilterCacheShared: one table per rate pair, shared by all streams.
func TestFilterCacheShared(t *testing.T) {
	a, _ := filterFor(24000, SampleRate)
	b, _ := filterFor(24000, SampleRate)
	if a != b {
		t.Fatal("filter table rebuilt for the same rate pair")
	}
}

// TestConcurrentDecoders: many streams share one table (run with -race).
func TestConcurrentDecoders(t *testing.T) {
	x := s16(sine(4800, 22050, 700, 9000))
	want := decodeAll(t, bytes.NewReader(x), PCM16, Format{22050, 1})
	errs := make(chan error, 16)
	for g := 0; g < 16; g++ {
		go func() {
			d, err := Decode(bytes.NewReader(x), PCM16, Format{22050, 1})
			if err == nil {
				var b []byte
				if b, err = io.ReadAll(d); err == nil && !bytes.Equal(b, s16(want)) {
					err = fmt.Errorf("concurrent decode differs")
				}
			}
			errs <- err
		}()
	}
	for g := 0; g < 16; g++ {
		select {
		case err := <-errs:
			if err != nil {
				t.Fatal(err)
			}
		case <-time.After(20 * time.Second):
			t.Fatal("a concurrent decode never finished")
		}
	}
}

// TestFilterCacheBounded: more rate pairs than the cache holds still work,
// and the cache does not grow past its bound.
func TestFilterCacheBounded(t *testing.T) {
	for i := 1; i <= maxCachedFilters+8; i++ {
		if _, err := filterFor(1000*i, SampleRate); err != nil {
			t.Fatal(err)
		}
	}
	filterCache.Lock()
	n := len(filterCache.m)
	filterCache.Unlock()
	if n > maxCachedFilters {
		t.Fatalf("cache holds %d tables, bound is %d", n, maxCachedFilters)
	}
}

// TestResampleBlocksMatchSingles: with M = 1 an output is computed four
// positions at a time (fir4) or alone (fir1) depending on how much input is
// buffered; both must give the same float, bit for bit, so the output cannot
// depend on how the input arrived.
func TestResampleBlocksMatchSingles(t *testing.T) {
	rng := rand.New(rand.NewPCG(5, 6))
	c, x := make([]float32, 117), make([]float32, 120)
	for i := range c {
		c[i] = float32(rng.NormFloat64())
	}
	for i := range x {
		x[i] = float32(rng.NormFloat64() * 10000)
	}
	lanes := [4]float32{}
	lanes[0], lanes[1], lanes[2], lanes[3] = fir4(c, x)
	for j, v := range lanes {
		if w := fir1(c, x[j:j+len(c)]); v != w {
			t.Fatalf("lane %d: fir4 %v, fir1 %v", j, v, w)
		}
	}
	for _, in := range []int{8000, 12000, 16000, 24000} {
		input := make([]float32, in/10)
		for i := range input {
			input[i] = float32(rng.IntN(65536) - 32768)
		}
		whole, _ := newResampler(in, SampleRate)
		whole.write(input)
		whole.flush()
		want := make([]float32, 2*wantLen(len(input), in))
		want = want[:whole.read(want)]

		drip, _ := newResampler(in, SampleRate)
		var got []float32
		buf := make([]float32, 64)
		for i := 0; i <= len(input); i++ {
			if i < len(input) {
				drip.write(input[i : i+1])
			} else {
				drip.flush()
			}
			for {
				m := drip.read(buf[:1+rng.IntN(len(buf))])
				if m == 0 {
					break
				}
				got = append(got, buf[:m]...)
			}
		}
		if len(got) != len(want) || len(want) != wantLen(len(input), in) {
			t.Fatalf("%d Hz: %d outputs fed sample by sample, %d whole, want %d", in, len(got), len(want), wantLen(len(input), in))
		}
		for i := range want {
			if got[i] != want[i] {
				t.Fatalf("%d Hz: output %d is %v fed sample by sample, %v whole", in, i, got[i], want[i])
			}
		}
	}
}

// TestResampleFloatError: every kernel (dot, fir4, fir1) sums in float32; the
// result must stay within a small fraction of an int16 step of the same
// filter evaluated in float64, for loud random input at every rate.
func TestResampleFloatError(t *testing.T) {
	rng := rand.New(rand.NewPCG(7, 8))
	for _, in := range testRates {
		if in == SampleRate {
			continue
		}
		x := make([]float32, 3000)
		for i := range x {
			x[i] = float32(rng.IntN(65536) - 32768)
		}
		rs, err := newResampler(in, SampleRate)
		if err != nil {
			t.Fatal(err)
		}
		rs.write(x[:1234]) // part of it through blocks, part through single outputs
		y := make([]float32, 2*wantLen(len(x), in)+8)
		n := rs.read(y)
		rs.write(x[1234:])
		rs.flush()
		n += rs.read(y[n:])
		if n != wantLen(len(x), in) {
			t.Fatalf("%d Hz: %d outputs, want %d", in, n, wantLen(len(x), in))
		}
		f := rs.f
		worst := 0.0
		for j := 0; j < n; j++ {
			jm := int64(j) * int64(f.m)
			p, next := int(jm%int64(f.l)), int(int64(f.delay)+jm/int64(f.l))
			ref := 0.0
			for tp := 0; tp < f.k; tp++ {
				if i := next - f.k + 1 + tp; i >= 0 && i < len(x) {
					ref += float64(f.coef[p*f.k+tp]) * float64(x[i])
				}
			}
			worst = math.Max(worst, math.Abs(float64(y[j])-ref))
		}
		t.Logf("%d Hz: worst float32 error %.4f LSB", in, worst)
		if worst > 0.025 {
			t.Errorf("%d Hz: float32 error %.4f LSB, want ≤ 0.025", in, worst)
		}
	}
}
