package main

import (
	"bytes"
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"time"

	"github.com/dgraph-io/badger/v4"
)

// row is one measured phase.
type row struct {
	name     string
	expect   string // the answer every request should get
	requests int64
	flows    int64 // authorize→capture flows completed; -1 when not a flow phase
	elapsed  time.Duration
	lat      stats
	errors   int64
	rss      int64 // Caddy's VmRSS at the end of the phase; 0 when not measured
	cpu      cpuUse
	unit     string
	noRatio  bool // not comparable with the respond ceiling
}

func (r row) rate() float64 {
	if r.elapsed <= 0 {
		return 0
	}
	return float64(r.requests) / r.elapsed.Seconds()
}

func (r row) flowRate() float64 {
	if r.elapsed <= 0 || r.flows < 0 {
		return 0
	}
	return float64(r.flows) / r.elapsed.Seconds()
}

func (b *bench) makeRow(name, expect string, res loopResult, series func(*worker) []time.Duration) row {
	r := row{
		name: name, expect: expect, elapsed: res.elapsed, unit: "req/s", flows: -1, cpu: res.cpu,
		requests: res.sum(func(w *worker) int64 { return w.requests }),
		errors:   res.sum(func(w *worker) int64 { return w.errors }),
		lat:      percentiles(res.latencies(series)),
	}
	if b.caddy != nil && !b.caddy.exited() {
		r.rss, _, _ = b.caddy.rss.now()
	}
	return r
}

func allLat(w *worker) []time.Duration  { return w.lat }
func authLat(w *worker) []time.Duration { return w.lat2 }
func capLat(w *worker) []time.Duration  { return w.lat3 }

// phaseDone logs a phase's outcome and fails the run when it was cut short.
func (b *bench) phaseDone(ctx context.Context, r row) error {
	logf("  %s: %d requests, %.0f %s, p99 %s, %d errors", r.name, r.requests, r.rate(), r.unit, fmtDur(r.lat.p99), r.errors)
	if ctx.Err() != nil {
		return errors.New("interrupted")
	}
	if b.caddy != nil && b.caddy.crashed() {
		return fmt.Errorf("Caddy exited during %q; log:\n%s", r.name, b.caddy.logTail(4096))
	}
	return nil
}

// warmUp opens the keep-alive connections with unmeasured GET /respond.
func (b *bench) warmUp(ctx context.Context) {
	if b.cfg.warmup <= 0 {
		return
	}
	logf("warm-up: GET /respond for %s", b.cfg.warmup)
	b.closedLoop(ctx, b.cfg.warmup, nil, func(ctx context.Context, w *worker) {
		_, _, _ = b.get(ctx, "/respond")
	})
}

// (a) the ceiling: Caddy's bare respond.
func (b *bench) phaseRespond(ctx context.Context) (row, error) {
	const phase = "a"
	logf("phase a: GET /respond for %s", b.cfg.duration)
	res := b.closedLoop(ctx, b.cfg.duration, nil, func(ctx context.Context, w *worker) {
		t0 := time.Now()
		st, body, err := b.get(ctx, "/respond")
		w.lat = append(w.lat, time.Since(t0))
		w.requests++
		if err != nil || st != http.StatusOK || string(body) != "ok" {
			w.fail(b, phase, describe("respond", st, body, err))
		}
	})
	r := b.makeRow("a. bare `respond` (GET /respond)", "200 ok", res, allLat)
	return r, b.phaseDone(ctx, r)
}

// syncFlow is one authorize (unique data.id, tok_visa_<n>) then a capture
// of the returned transaction token, both signed, both expecting 200.
func (b *bench) syncFlow(ctx context.Context, w *worker, phase string) bool {
	n := b.seq.Add(1)
	body := authorizeBody(b.runID, n, "tok_visa_")
	t0 := time.Now()
	st, resp, err := b.post(ctx, "/commercelayer/authorize", body, clSign(b.secret, body))
	d := time.Since(t0)
	w.requests++
	w.lat, w.lat2 = append(w.lat, d), append(w.lat2, d)
	token := jsonField(resp, "transaction_token")
	if err != nil || st != http.StatusOK || token == "" {
		w.fail(b, phase, describe("authorize", st, resp, err))
		return false
	}
	b.payments.Add(1)
	body = captureBody(b.runID, n, token)
	t0 = time.Now()
	st, resp, err = b.post(ctx, "/commercelayer/capture", body, clSign(b.secret, body))
	d = time.Since(t0)
	w.requests++
	w.lat, w.lat3 = append(w.lat, d), append(w.lat3, d)
	if err != nil || st != http.StatusOK || jsonField(resp, "transaction_token") == "" {
		w.fail(b, phase, describe("capture", st, resp, err))
		return false
	}
	w.flows++
	return true
}

// authorizeOnce sends one signed authorize with a unique data.id and the
// token prefix, expecting status; it returns the answer when it matched.
func (b *bench) authorizeOnce(ctx context.Context, w *worker, phase, tokenPrefix string, want int) ([]byte, time.Time, bool) {
	n := b.seq.Add(1)
	body := authorizeBody(b.runID, n, tokenPrefix)
	t0 := time.Now()
	st, resp, err := b.post(ctx, "/commercelayer/authorize", body, clSign(b.secret, body))
	end := time.Now()
	w.requests++
	w.lat = append(w.lat, end.Sub(t0))
	if err != nil || st != want {
		w.fail(b, phase, describe("authorize", st, resp, err))
		return nil, end, false
	}
	b.payments.Add(1)
	return resp, end, true
}

// (b) signed authorize→capture flows.
func (b *bench) phaseFlows(ctx context.Context) ([]row, error) {
	const phase = "b"
	logf("phase b: authorize→capture flows for %s", b.cfg.duration)
	res := b.closedLoop(ctx, b.cfg.duration, nil, func(ctx context.Context, w *worker) { b.syncFlow(ctx, w, phase) })
	all := b.makeRow("b. sync authorize→capture (both requests)", "200, 200", res, allLat)
	all.flows = res.sum(func(w *worker) int64 { return w.flows })
	auth := b.makeRow("b. … authorize requests only", "200", res, authLat)
	auth.requests = int64(auth.lat.n)
	auth.noRatio = true
	capt := b.makeRow("b. … capture requests only", "200", res, capLat)
	capt.requests = int64(capt.lat.n)
	capt.noRatio = true
	auth.errors, capt.errors = -1, -1 // counted once, in the first row
	return []row{all, auth, capt}, b.phaseDone(ctx, all)
}

// (c) a signed-looking authorize with a wrong signature: 401.
func (b *bench) phaseRejected(ctx context.Context) (row, error) {
	const phase = "c"
	logf("phase c: wrong signatures for %s", b.cfg.duration)
	body := authorizeBody(b.runID, b.seq.Add(1), "tok_visa_")
	sig := clSign([]byte("not-the-shared-secret"), body)
	res := b.closedLoop(ctx, b.cfg.duration, nil, func(ctx context.Context, w *worker) {
		t0 := time.Now()
		st, resp, err := b.post(ctx, "/commercelayer/authorize", body, sig)
		w.lat = append(w.lat, time.Since(t0))
		w.requests++
		if err != nil || st != http.StatusUnauthorized {
			w.fail(b, phase, describe("wrong signature", st, resp, err))
		}
	})
	r := b.makeRow("c. signature rejected (POST authorize, wrong signature)", "401", res, allLat)
	return r, b.phaseDone(ctx, r)
}

// (d) idempotent replays: one signed authorize, sent once for real, then
// repeated by every goroutine; each repeat must get the first answer byte
// for byte. With perWorker, each goroutine repeats its own authorize
// instead (a supplementary row: the same path without all requests sharing
// one idempotency key).
func (b *bench) phaseReplay(ctx context.Context, perWorker bool) (row, error) {
	phase, name := "d", "d. idempotent replay (one signed authorize body, repeated)"
	if perWorker {
		phase, name = "d2", "d2. idempotent replay, one body per connection (supplementary)"
	}
	logf("phase %s: replays for %s", phase, b.cfg.duration)
	type original struct {
		body, sig, answer []byte
	}
	n := 1
	if perWorker {
		n = b.cfg.concurrency
	}
	originals := make([]original, n)
	for i := range originals {
		body := authorizeBody(b.runID, b.seq.Add(1), "tok_visa_")
		sig := clSign(b.secret, body)
		st, resp, err := b.post(ctx, "/commercelayer/authorize", body, sig)
		if err != nil || st != http.StatusOK {
			return row{}, fmt.Errorf("phase %s: the original authorize failed: %s", phase, describe("authorize", st, resp, err))
		}
		b.payments.Add(1)
		originals[i] = original{body: body, sig: []byte(sig), answer: resp}
	}
	res := b.closedLoop(ctx, b.cfg.duration, nil, func(ctx context.Context, w *worker) {
		o := originals[w.id%n]
		t0 := time.Now()
		st, resp, err := b.post(ctx, "/commercelayer/authorize", o.body, string(o.sig))
		w.lat = append(w.lat, time.Since(t0))
		w.requests++
		if err != nil || st != http.StatusOK || !bytes.Equal(resp, o.answer) {
			w.fail(b, phase, describe("replay (want the first answer byte for byte)", st, resp, err))
		}
	})
	r := b.makeRow(name, "200, first answer", res, allLat)
	return r, b.phaseDone(ctx, r)
}

// (e) the durability ceiling: raw Badger commits with SyncWrites, in this
// process, at the same concurrency, each goroutine writing its own keys.
func (b *bench) phaseBadger(ctx context.Context) (row, error) {
	const phase = "e"
	logf("phase e: raw Badger commits (SyncWrites) for %s", b.cfg.duration)
	dir := filepath.Join(b.tmp, "badger-raw")
	db, err := badger.Open(badger.DefaultOptions(dir).WithSyncWrites(true).WithLogger(nil))
	if err != nil {
		return row{}, fmt.Errorf("phase e: opening Badger: %v", err)
	}
	value := make([]byte, 100)
	_, _ = rand.Read(value)
	res := b.closedLoop(ctx, b.cfg.duration, nil, func(ctx context.Context, w *worker) {
		key := fmt.Appendf(nil, "bench/%04d/%010d", w.id, w.k)
		t0 := time.Now()
		err := db.Update(func(txn *badger.Txn) error { return txn.Set(key, value) })
		w.lat = append(w.lat, time.Since(t0))
		w.requests++
		if err != nil {
			w.fail(b, phase, "commit: "+err.Error())
		}
	})
	cerr := db.Close()
	if !b.cfg.keep {
		_ = os.RemoveAll(dir)
	}
	r := b.makeRow("e. raw Badger commits, SyncWrites(true), in-process", "commit", res, allLat)
	r.unit, r.noRatio = "commits/s", true
	if cerr != nil {
		return r, fmt.Errorf("phase e: closing Badger: %v", cerr)
	}
	return r, b.phaseDone(ctx, r)
}

// resources is what Caddy used, read at the end of a run.
type resources struct {
	hwm, sampledMax, lastRSS int64 // bytes
	anon, file               int64 // the last RSS's parts
	payments                 int64
	duRunning, appRunning    int64
	duClosed, appClosed      int64
	stopped                  bool
}

// finishCaddy reads Caddy's memory (VmHWM must be read before it exits) and
// the storage's size, stops Caddy, and reads the size again.
func (b *bench) finishCaddy() (resources, error) {
	var res resources
	b.client.CloseIdleConnections()
	res.lastRSS, res.sampledMax, res.hwm = b.caddy.rss.now()
	res.anon, res.file = rssParts(b.caddy.pid())
	res.payments = b.payments.Load()
	var err error
	if res.duRunning, res.appRunning, err = diskUsage(b.storage); err != nil {
		return res, err
	}
	logf("stopping Caddy")
	if err := b.caddy.stop(30 * time.Second); err != nil {
		return res, err
	}
	res.stopped = true
	res.duClosed, res.appClosed, err = diskUsage(b.storage)
	return res, err
}

func (b *bench) runSync(ctx context.Context) error {
	b.warmUp(ctx)
	var rows []row
	ceiling, err := b.phaseRespond(ctx)
	if err != nil {
		return err
	}
	rows = append(rows, ceiling)
	flows, err := b.phaseFlows(ctx)
	if err != nil {
		return err
	}
	rows = append(rows, flows...)
	for _, phase := range []func(context.Context) (row, error){
		b.phaseRejected,
		func(ctx context.Context) (row, error) { return b.phaseReplay(ctx, false) },
		func(ctx context.Context) (row, error) { return b.phaseReplay(ctx, true) },
	} {
		r, err := phase(ctx)
		if err != nil {
			return err
		}
		rows = append(rows, r)
	}
	res, err := b.finishCaddy()
	if err != nil {
		return err
	}
	// After Caddy has exited, so the two do not compete for the disk.
	raw, err := b.phaseBadger(ctx)
	if err != nil {
		return err
	}
	rows = append(rows, raw)

	rep := newReport(b, "sync")
	rep.phaseTable(rows, ceiling.rate())
	rep.resources(res)
	rep.errorSamples("a", "b", "c", "d", "d2", "e", "warmup")
	rep.targetsSync(rows, res)
	rep.print()
	return nil
}

func (b *bench) runAsync(ctx context.Context) error {
	b.warmUp(ctx)
	ceiling, err := b.phaseRespond(ctx)
	if err != nil {
		return err
	}
	const phase = "async"
	logf("async: tok_async authorizes for %s (async_delay %s, reconcile_interval %s)", b.cfg.duration, b.cfg.asyncDelay, b.cfg.reconcile)
	driveStart := time.Now()
	loop := func(ctx context.Context, d time.Duration, op func(context.Context, *worker)) loopResult {
		return b.closedLoop(ctx, d, nil, op)
	}
	name := "async authorize (tok_async) → 202, closed loop"
	if b.cfg.asyncRate > 0 {
		loop = func(ctx context.Context, d time.Duration, op func(context.Context, *worker)) loopResult {
			return b.pacedLoop(ctx, d, b.cfg.asyncRate, op)
		}
		name = fmt.Sprintf("async authorize (tok_async) → 202, open loop at %.0f/s, from the scheduled send time", b.cfg.asyncRate)
	}
	res := loop(ctx, b.cfg.duration, func(ctx context.Context, w *worker) {
		resp, at, ok := b.authorizeOnce(ctx, w, phase, "tok_async_", http.StatusAccepted)
		if !ok {
			return
		}
		if id := jsonField(resp, "action_id"); id != "" {
			b.cb.accepted(id, at)
		} else {
			w.fail(b, phase, describe("202 without action_id", http.StatusAccepted, resp, nil))
		}
	})
	driveEnd := time.Now()
	drive := b.makeRow(name, "202 + action_id", res, allLat)
	if err := b.phaseDone(ctx, drive); err != nil {
		return err
	}
	// Wait, at most -duration, for the callbacks still owed.
	logf("waiting up to %s for %d outstanding callbacks", b.cfg.duration, b.cb.outstanding())
	drainDeadline := time.Now().Add(b.cfg.duration)
	for i := 0; b.cb.outstanding() > 0 && time.Now().Before(drainDeadline) && ctx.Err() == nil && i < 100000; i++ {
		time.Sleep(20 * time.Millisecond)
	}
	if ctx.Err() != nil {
		return errors.New("interrupted")
	}
	missing := b.cb.outstanding()
	resUse, err := b.finishCaddy()
	if err != nil {
		return err
	}
	rep := newReport(b, "async")
	rep.phaseTable([]row{ceiling, drive}, ceiling.rate())
	rep.callbacks(b.cb, driveStart, driveEnd, missing)
	rep.resources(resUse)
	rep.errorSamples("a", phase, "warmup")
	rep.print()
	return nil
}

func (b *bench) runLatency(ctx context.Context) error {
	b.warmUp(ctx)
	ceiling, err := b.phaseRespond(ctx)
	if err != nil {
		return err
	}
	const phase = "peak"
	logf("latency: closed-loop sync authorizes for %s to find the peak", b.cfg.duration)
	res := b.closedLoop(ctx, b.cfg.duration, nil, func(ctx context.Context, w *worker) {
		b.authorizeOnce(ctx, w, phase, "tok_visa_", http.StatusOK)
	})
	peak := b.makeRow("sync authorize, closed loop (peak)", "200", res, allLat)
	if err := b.phaseDone(ctx, peak); err != nil {
		return err
	}
	rate, what := peak.rate()/2, "half the peak"
	if b.cfg.pacedRate > 0 {
		rate, what = b.cfg.pacedRate, "-paced-rate"
	}
	if rate < 1 {
		return fmt.Errorf("the peak authorize rate (%.1f/s) is too low to pace at half of it", peak.rate())
	}
	const pacedPhase = "paced"
	logf("latency: open-loop sync authorizes at %.0f/s (%s) for %s", rate, what, b.cfg.duration)
	pres := b.pacedLoop(ctx, b.cfg.duration, rate, func(ctx context.Context, w *worker) {
		b.authorizeOnce(ctx, w, pacedPhase, "tok_visa_", http.StatusOK)
	})
	paced := b.makeRow(fmt.Sprintf("sync authorize, open loop at %.0f/s (%s), from the scheduled send time", rate, what), "200", pres, allLat)
	service := b.makeRow("… same requests, service time (from the actual send)", "200", pres, authLat)
	service.errors, service.noRatio = -1, true
	if err := b.phaseDone(ctx, paced); err != nil {
		return err
	}
	resUse, err := b.finishCaddy()
	if err != nil {
		return err
	}
	rep := newReport(b, "latency")
	rep.phaseTable([]row{ceiling, peak, paced, service}, ceiling.rate())
	rep.resources(resUse)
	rep.errorSamples("a", phase, pacedPhase, "warmup")
	if b.cfg.pacedRate == 0 {
		rep.targetsLatency(peak, paced, rate)
	}
	rep.print()
	return nil
}

// growthStep is the store measured at one size.
type growthStep struct {
	target     int
	payments   int64 // when the window started
	after      int64 // when the window ended (disk per payment divides by this)
	reached    bool
	lowMemory  bool // growing stopped because the machine ran low on memory
	growTime   time.Duration
	growFlows  int64
	growErrors int64
	window     row
	rss, hwm   int64
	anon, file int64
	du, app    int64
	elapsed    time.Duration // since the run started
}

func (b *bench) runGrowth(ctx context.Context) error {
	var steps []growthStep
	for _, target := range b.cfg.payments {
		step := growthStep{target: target}
		have := b.payments.Load()
		logf("growth: %d payments → %d (authorize→capture flows at concurrency %d, at most %s)", have, target, b.cfg.concurrency, b.cfg.growTimeout)
		stopProgress := b.progress(ctx, "growing", target)
		grow := b.closedLoop(ctx, b.cfg.growTimeout,
			func() bool { return b.payments.Load() >= int64(target) || b.lowMemory.Load() },
			func(ctx context.Context, w *worker) { b.syncFlow(ctx, w, "grow") })
		stopProgress()
		step.growTime = grow.elapsed
		step.growFlows = grow.sum(func(w *worker) int64 { return w.flows })
		step.growErrors = grow.sum(func(w *worker) int64 { return w.errors })
		step.payments = b.payments.Load()
		step.reached = step.payments >= int64(target)
		if ctx.Err() != nil {
			return errors.New("interrupted")
		}
		if b.caddy.crashed() {
			return fmt.Errorf("Caddy exited while growing the store; log:\n%s", b.caddy.logTail(4096))
		}
		logf("growth: %d payments after %s; measuring a %s window", step.payments, step.growTime.Round(time.Second), b.cfg.window)
		win := b.closedLoop(ctx, b.cfg.window, nil, func(ctx context.Context, w *worker) { b.syncFlow(ctx, w, "window") })
		step.window = b.makeRow("window", "200, 200", win, allLat)
		step.window.flows = win.sum(func(w *worker) int64 { return w.flows })
		if err := b.phaseDone(ctx, step.window); err != nil {
			return err
		}
		step.after = b.payments.Load()
		step.rss, _, step.hwm = b.caddy.rss.now()
		step.anon, step.file = rssParts(b.caddy.pid())
		var err error
		if step.du, step.app, err = diskUsage(b.storage); err != nil {
			return err
		}
		step.elapsed = time.Since(b.started)
		step.lowMemory = !step.reached && b.lowMemory.Load()
		steps = append(steps, step)
		if !step.reached {
			logf("growth: %d payments not reached (within -grow-timeout %s, machine low on memory: %v); stopping here",
				target, b.cfg.growTimeout, step.lowMemory)
			break
		}
	}
	rest := b.atRest(ctx)
	resUse, err := b.finishCaddy()
	if err != nil {
		return err
	}
	rep := newReport(b, "growth")
	rep.growthTable(steps)
	if len(steps) > 0 {
		rep.restTable(rest, steps[len(steps)-1].after)
	}
	rep.resources(resUse)
	rep.errorSamples("grow", "window", "warmup")
	rep.growthSummary(steps, resUse)
	rep.print()
	return nil
}

// restSample is Caddy's memory some time after the load stopped.
type restSample struct {
	after      time.Duration
	rss        int64
	anon, file int64
}

// atRest samples Caddy's RSS while it sits idle for -rest after the last
// window: under load, RSS includes the heap's headroom and the table pages
// a compaction touched, which an idle Caddy gives back (the Go runtime
// forces a GC after 2 minutes without one, then returns free memory).
func (b *bench) atRest(ctx context.Context) []restSample {
	if b.cfg.rest <= 0 {
		return nil
	}
	logf("growth: leaving Caddy idle for %s", b.cfg.rest)
	var out []restSample
	start := time.Now()
	for _, at := range []time.Duration{5 * time.Second, 15 * time.Second, 30 * time.Second, time.Minute, 2 * time.Minute, 150 * time.Second, 3 * time.Minute, 5 * time.Minute} {
		if at > b.cfg.rest {
			break
		}
		select {
		case <-ctx.Done():
			return out
		case <-time.After(time.Until(start.Add(at))):
		}
		rss, _, _ := b.caddy.rss.now()
		anon, file := rssParts(b.caddy.pid())
		out = append(out, restSample{after: at, rss: rss, anon: anon, file: file})
		logf("  at rest for %s: RSS %s (anon %s, file %s)", at, fmtBytes(rss), fmtBytes(anon), fmtBytes(file))
	}
	return out
}

// minMemAvailable protects a shared machine: growing stops when less memory
// than this is available.
const minMemAvailable = 2 << 30

// progress logs the payment count every 10 seconds until stopped, and
// stops the growth when the machine runs low on memory.
func (b *bench) progress(ctx context.Context, what string, target int) (stop func()) {
	done := make(chan struct{})
	finished := make(chan struct{})
	go func() {
		defer close(finished)
		t := time.NewTicker(10 * time.Second)
		defer t.Stop()
		last, lastAt := b.payments.Load(), time.Now()
		for {
			select {
			case <-done:
				return
			case <-ctx.Done():
				return
			case now := <-t.C:
				n := b.payments.Load()
				rate := float64(n-last) / now.Sub(lastAt).Seconds()
				eta := "?"
				if rate > 0 {
					eta = (time.Duration(float64(int64(target)-n)/rate) * time.Second).Round(time.Second).String()
				}
				if avail, err := procStatusKBFile("/proc/meminfo", "MemAvailable"); err == nil && avail<<10 < minMemAvailable {
					logf("  the machine has only %s of memory available; stopping the growth", fmtBytes(avail<<10))
					b.lowMemory.Store(true)
				}
				rss, _, _ := b.caddy.rss.now()
				anon, file := rssParts(b.caddy.pid())
				logf("  %s: %d/%d payments, %.0f payments/s, RSS %s (anon %s, file %s), ETA %s",
					what, n, target, rate, fmtBytes(rss), fmtBytes(anon), fmtBytes(file), eta)
				last, lastAt = n, now
			}
		}
	}()
	return func() { close(done); <-finished }
}
