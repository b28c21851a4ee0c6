package main

import (
	"context"
	"math"
	"runtime"
	"slices"
	"sync"
	"time"
)

// Every loop is bounded in time (its phase's duration) and in count.
const maxOpsPerWorker = 20_000_000

// worker is one load goroutine with its own latency records, preallocated
// and sorted only at the end.
type worker struct {
	id   int
	k    int             // operations started
	lat  []time.Duration // every counted request (or commit)
	lat2 []time.Duration // a phase's second series: authorizes in flows, service time when paced
	lat3 []time.Duration // a phase's third series: captures in flows

	requests, flows, errors int64
}

func (w *worker) init(id, capHint int) {
	w.id = id
	w.lat = make([]time.Duration, 0, capHint)
	w.lat2 = make([]time.Duration, 0, capHint/2+1)
	w.lat3 = make([]time.Duration, 0, capHint/2+1)
}

func (w *worker) fail(b *bench, phase, msg string) {
	w.errors++
	b.errs.add(phase, msg)
}

type loopResult struct {
	elapsed time.Duration
	workers []*worker
	cpu     cpuUse
}

func (r loopResult) sum(f func(*worker) int64) int64 {
	var n int64
	for _, w := range r.workers {
		n += f(w)
	}
	return n
}

// latencies merges and sorts one series of every worker.
func (r loopResult) latencies(series func(*worker) []time.Duration) []time.Duration {
	n := 0
	for _, w := range r.workers {
		n += len(series(w))
	}
	all := make([]time.Duration, 0, n)
	for _, w := range r.workers {
		all = append(all, series(w)...)
	}
	slices.Sort(all)
	return all
}

// capHint sizes each worker's latency slice for d at up to 30,000 requests
// a second in total (more than this machine's ceiling), but at most 65,536
// entries (long growth phases run far below that rate); append grows a
// slice that needs more.
func (b *bench) capHint(d time.Duration) int {
	n := int(d.Seconds()*30000)/b.cfg.concurrency + 1024
	return min(n, 1<<16)
}

// closedLoop runs concurrency workers, each calling op back to back, until d
// has passed, ctx is done, stop (when not nil) says so, or maxOpsPerWorker.
func (b *bench) closedLoop(ctx context.Context, d time.Duration, stop func() bool, op func(context.Context, *worker)) loopResult {
	ws := make([]*worker, b.cfg.concurrency)
	for i := range ws {
		ws[i] = &worker{}
		ws[i].init(i, b.capHint(d))
	}
	cpu0 := b.readCPU()
	start := time.Now()
	deadline := start.Add(d)
	var wg sync.WaitGroup
	for _, w := range ws {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for ; w.k < maxOpsPerWorker; w.k++ {
				if ctx.Err() != nil || !time.Now().Before(deadline) || (stop != nil && stop()) {
					return
				}
				op(ctx, w)
			}
		}()
	}
	wg.Wait()
	return loopResult{elapsed: time.Since(start), workers: ws, cpu: cpuBetween(cpu0, b.readCPU(), runtime.NumCPU())}
}

// readCPU samples CPU time, with Caddy's while it runs.
func (b *bench) readCPU() cpuSample {
	pid := 0
	if b.caddy != nil && !b.caddy.exited() {
		pid = b.caddy.pid()
	}
	return readCPU(pid)
}

// pacedLoop is open-loop: concurrency workers share one schedule of rate
// requests a second, worker i sending at start + (i + k·concurrency)/rate.
// A late worker sends at once, and its latency counts from the scheduled
// time (lat), so queueing is not hidden; lat2 is the service time alone.
func (b *bench) pacedLoop(ctx context.Context, d time.Duration, rate float64, op func(context.Context, *worker)) loopResult {
	n := b.cfg.concurrency
	period := time.Duration(float64(n) / rate * float64(time.Second))
	ws := make([]*worker, n)
	for i := range ws {
		ws[i] = &worker{}
		ws[i].init(i, int(d.Seconds()*rate)/n+1024)
	}
	cpu0 := b.readCPU()
	start := time.Now().Add(50 * time.Millisecond)
	deadline := start.Add(d)
	var wg sync.WaitGroup
	for _, w := range ws {
		wg.Add(1)
		go func() {
			defer wg.Done()
			next := start.Add(time.Duration(w.id) * period / time.Duration(n))
			for ; w.k < maxOpsPerWorker && next.Before(deadline); w.k++ {
				if wait := time.Until(next); wait > 0 {
					select {
					case <-ctx.Done():
						return
					case <-time.After(wait):
					}
				}
				if ctx.Err() != nil {
					return
				}
				sent := time.Now()
				before := len(w.lat)
				op(ctx, w)
				done := time.Now()
				if len(w.lat) > before { // op recorded a request: count from the schedule
					w.lat[len(w.lat)-1] = done.Sub(next)
					w.lat2 = append(w.lat2, done.Sub(sent))
				}
				next = next.Add(period)
			}
		}()
	}
	wg.Wait()
	return loopResult{elapsed: time.Since(start), workers: ws, cpu: cpuBetween(cpu0, b.readCPU(), runtime.NumCPU())}
}

// stats are the percentiles of a sorted series.
type stats struct {
	n                   int
	p50, p99, p999, max time.Duration
}

func percentiles(sorted []time.Duration) stats {
	s := stats{n: len(sorted)}
	if s.n == 0 {
		return s
	}
	at := func(q float64) time.Duration {
		i := int(math.Ceil(q*float64(s.n))) - 1 // nearest rank
		return sorted[min(max(i, 0), s.n-1)]
	}
	s.p50, s.p99, s.p999, s.max = at(0.50), at(0.99), at(0.999), sorted[s.n-1]
	return s
}
