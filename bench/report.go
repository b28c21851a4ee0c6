package main

import (
	"fmt"
	"math"
	"os"
	"slices"
	"strings"
	"time"
)

// report collects Markdown and prints it to standard output at the end.
type report struct {
	b  *bench
	sb strings.Builder
}

func newReport(b *bench, mode string) *report {
	r := &report{b: b}
	m := b.machine
	r.f("### paybridge load benchmark: `-mode %s`\n\n", mode)
	r.f("- Date: %s\n", b.started.UTC().Format("2006-01-02 15:04 UTC"))
	r.f("- Machine: %d CPUs (nproc), %s, %s, %.1f GiB RAM, Linux %s\n", m.nproc, m.arch, m.cpu, m.memGiB, m.kernel)
	r.f("- Go: %s; Caddy: %s\n", m.goVer, orUnknown(m.caddy))
	commit := orUnknown(m.commit)
	if m.dirty > 0 {
		commit += fmt.Sprintf(" with %d changed or new files in the work tree", m.dirty)
	}
	r.f("- Code: paybridge at %s\n", commit)
	r.f("- Command: `%s`\n", commandLine())
	settings := fmt.Sprintf("%d goroutines, one keep-alive connection each, loopback; load generator and Caddy share the machine", b.cfg.concurrency)
	switch mode {
	case "async":
		settings += fmt.Sprintf("; %s of tok_async authorizes; sandbox async_delay %s; reconcile_interval %s", b.cfg.duration, b.cfg.asyncDelay, b.cfg.reconcile)
	case "growth":
		settings += fmt.Sprintf("; sizes %v; %s window per size; at most %s growing to one size", b.cfg.payments, b.cfg.window, b.cfg.growTimeout)
	default:
		settings += fmt.Sprintf("; %s per phase", b.cfg.duration)
	}
	r.f("- Settings: %s\n", settings)
	r.f("- Load average (1/5/15 min) at the start: %s; at the end: %s\n", m.load, loadAvg())
	r.f("- Elapsed: %s\n\n", time.Since(b.started).Round(time.Second))
	return r
}

func (r *report) f(format string, args ...any) { fmt.Fprintf(&r.sb, format, args...) }

func (r *report) print() { fmt.Fprint(os.Stdout, r.sb.String()) }

func (r *report) phaseTable(rows []row, ceiling float64) {
	r.f("| phase | expected answer | requests | rate | flows/s | p50 | p99 | p99.9 | errors | vs respond | Caddy RSS at end | CPUs: Caddy / bench / other / irq / steal |\n")
	r.f("|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|\n")
	for _, x := range rows {
		flows, ratio, errs, rss := "", "", "", ""
		if x.flows >= 0 {
			flows = fmt.Sprintf("%.0f", x.flowRate())
		}
		if !x.noRatio && ceiling > 0 {
			ratio = fmt.Sprintf("%.2f×", x.rate()/ceiling)
		}
		if x.errors >= 0 {
			errs = fmt.Sprint(x.errors)
		}
		if x.rss > 0 {
			rss = fmtBytes(x.rss)
		}
		r.f("| %s | %s | %d | %.0f %s | %s | %s | %s | %s | %s | %s | %s | %s |\n",
			x.name, x.expect, x.requests, x.rate(), x.unit, flows,
			fmtDur(x.lat.p50), fmtDur(x.lat.p99), fmtDur(x.lat.p999), errs, ratio, rss, fmtCPU(x.cpu))
	}
	r.f("\n")
}

func (r *report) resources(res resources) {
	r.f("| Caddy process | value |\n|---|---:|\n")
	r.f("| peak RSS (VmHWM, read at the end) | %s |\n", fmtBytes(res.hwm))
	r.f("| largest sampled VmRSS (every 500 ms) | %s |\n", fmtBytes(res.sampledMax))
	r.f("| VmRSS at the end | %s |\n", fmtBytes(res.lastRSS))
	r.f("| … of which anonymous (RssAnon) / file-backed (RssFile) | %s / %s |\n", fmtBytes(res.anon), fmtBytes(res.file))
	r.f("| payments created | %d |\n", res.payments)
	r.f("| storage on disk while running (du) | %s (apparent %s) |\n", fmtBytes(res.duRunning), fmtBytes(res.appRunning))
	r.f("| … per payment | %s |\n", perPayment(res.duRunning, res.payments))
	if res.stopped {
		r.f("| storage on disk after Caddy stopped (du) | %s (apparent %s) |\n", fmtBytes(res.duClosed), fmtBytes(res.appClosed))
		r.f("| … per payment | %s |\n", perPayment(res.duClosed, res.payments))
	}
	r.f("\n")
}

func (r *report) callbacks(cb *callbackServer, driveStart, driveEnd time.Time, missing int) {
	cb.mu.Lock()
	e2e := append([]time.Duration(nil), cb.e2e...)
	matched, early, dupes, last := cb.matched, cb.early, cb.dupes, cb.last
	cb.mu.Unlock()
	slices.Sort(e2e)
	s := percentiles(e2e)
	rate := 0.0
	if !last.IsZero() && last.After(driveStart) {
		rate = float64(matched) / last.Sub(driveStart).Seconds()
	}
	r.f("| callbacks (signed, at the loopback listener) | value |\n|---|---:|\n")
	r.f("| callbacks received (all POSTs) | %d |\n", cb.received.Load())
	r.f("| matched to a 202 by data.action_id | %d |\n", matched)
	r.f("| callbacks/s (matched, from the first authorize to the last callback) | %.0f |\n", rate)
	r.f("| e2e 202 → callback p50 | %s |\n", fmtDur(s.p50))
	r.f("| e2e p99 | %s |\n", fmtDur(s.p99))
	r.f("| e2e p99.9 | %s |\n", fmtDur(s.p999))
	r.f("| e2e max | %s |\n", fmtDur(s.max))
	r.f("| drive time / last callback after the drive ended | %s / %s |\n",
		driveEnd.Sub(driveStart).Round(time.Millisecond), lastAfter(last, driveEnd))
	r.f("| 202s never called back (after waiting up to -duration) | %d |\n", missing)
	r.f("| bad X-CommerceLayer-Signature | %d |\n", cb.badSig.Load())
	r.f("| malformed callbacks | %d |\n", cb.malformed.Load())
	r.f("| success:false callbacks | %d |\n", cb.failed.Load())
	r.f("| duplicate callbacks (at-least-once) | %d |\n", dupes)
	r.f("| callbacks read before their 202 | %d |\n", early)
	r.f("\n")
}

func lastAfter(last, end time.Time) string {
	if last.IsZero() {
		return "none"
	}
	return last.Sub(end).Round(time.Millisecond).String()
}

func (r *report) errorSamples(phases ...string) {
	var lines []string
	for _, p := range phases {
		r.b.errs.mu.Lock()
		total := r.b.errs.all[p]
		r.b.errs.mu.Unlock()
		for _, s := range r.b.errs.samples(p) {
			lines = append(lines, fmt.Sprintf("- phase %s (%d errors in all): %s", p, total, strings.ReplaceAll(s, "\n", " ")))
		}
	}
	if len(lines) == 0 {
		return
	}
	r.f("Error samples (first 5 per phase):\n\n%s\n\n", strings.Join(lines, "\n"))
}

func findRow(rows []row, prefix string) (row, bool) {
	for _, x := range rows {
		if strings.HasPrefix(x.name, prefix) {
			return x, true
		}
	}
	return row{}, false
}

func verdict(ok bool) string {
	if ok {
		return "met"
	}
	return "not met"
}

func (r *report) targetsSync(rows []row, res resources) {
	a, _ := findRow(rows, "a.")
	b, _ := findRow(rows, "b. sync")
	c, _ := findRow(rows, "c.")
	d, _ := findRow(rows, "d.")
	e, _ := findRow(rows, "e.")
	r.f("Targets (from the issue), as measured in this run:\n\n")
	if e.rate() > 0 {
		r.f("- sync authorize ≥ 1.0× raw Badger durable commits: phase b %.0f req/s (authorize + capture) = %.2f×; %.0f flows/s, i.e. authorizes/s, = %.2f× the %.0f commits/s of phase e: %s\n",
			b.rate(), b.rate()/e.rate(), b.flowRate(), b.flowRate()/e.rate(), e.rate(), verdict(b.flowRate() >= e.rate()))
	}
	if a.rate() > 0 {
		r.f("- signature-rejected ≥ 0.50× bare respond: %.2f×: %s\n", c.rate()/a.rate(), verdict(c.rate() >= 0.5*a.rate()))
		r.f("- idempotent replay ≥ 0.50× bare respond: %.2f×: %s\n", d.rate()/a.rate(), verdict(d.rate() >= 0.5*a.rate()))
	}
	r.f("- p99 < 10 ms at half the peak rate: see `-mode latency`\n")
	r.f("- RSS < 150 MiB after 1,000,000 payments: see `-mode growth` (this run: VmHWM %s after %d payments)\n\n", fmtBytes(res.hwm), res.payments)
}

func (r *report) targetsLatency(peak, paced row, rate float64) {
	achieved := paced.rate()
	r.f("Targets (from the issue), as measured in this run:\n\n")
	r.f("- p99 < 10 ms at half the peak rate: peak %.0f authorizes/s; paced at %.0f/s (achieved %.0f/s), p99 %s from the scheduled send time (service time p99 in the last row): %s\n\n",
		peak.rate(), rate, achieved, fmtDur(paced.lat.p99), verdict(paced.lat.n > 0 && paced.lat.p99 < 10*time.Millisecond))
}

func (r *report) growthTable(steps []growthStep) {
	r.f("| payments (target) | payments at window start → end | reached | grow time | grow flows/s | window req/s | window flows/s | p50 | p99 | p99.9 | errors (grow + window) | Caddy RSS (anon / file) | VmHWM so far | storage du | du per payment | window CPUs: Caddy / bench / other / irq / steal | elapsed |\n")
	r.f("|---:|---:|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|\n")
	for _, s := range steps {
		growRate := 0.0
		if s.growTime > 0 {
			growRate = float64(s.growFlows) / s.growTime.Seconds()
		}
		r.f("| %d | %d → %d | %s | %s | %.0f | %.0f | %.0f | %s | %s | %s | %d | %s | %s | %s | %s | %s | %s |\n",
			s.target, s.payments, s.after, reachedText(s), s.growTime.Round(time.Second), growRate,
			s.window.rate(), s.window.flowRate(), fmtDur(s.window.lat.p50), fmtDur(s.window.lat.p99), fmtDur(s.window.lat.p999),
			s.growErrors+s.window.errors, fmt.Sprintf("%s (%s / %s)", fmtBytes(s.rss), fmtBytes(s.anon), fmtBytes(s.file)), fmtBytes(s.hwm), fmtBytes(s.du), perPayment(s.du, s.after),
			fmtCPU(s.window.cpu), s.elapsed.Round(time.Second))
	}
	r.f("\n")
}

// growthSummary compares the largest size with the smallest. "Flat" is
// within ±20%, a threshold this tool states, not one from the issue.
func (r *report) restTable(samples []restSample, payments int64) {
	if len(samples) == 0 {
		return
	}
	last := samples[len(samples)-1]
	r.f("- at rest after %d payments: RSS %s after %s idle", payments, fmtBytes(last.rss), last.after)
	if payments >= 1_000_000 {
		r.f("; target RSS < 150 MiB: %s", verdict(last.rss < 150<<20))
	}
	r.f("\n\n")
	r.f("| Caddy idle after the last window for | VmRSS | anonymous (RssAnon) | file-backed (RssFile) |\n|---:|---:|---:|---:|\n")
	for _, s := range samples {
		r.f("| %s | %s | %s | %s |\n", s.after, fmtBytes(s.rss), fmtBytes(s.anon), fmtBytes(s.file))
	}
	r.f("\n")
}

func (r *report) growthSummary(steps []growthStep, res resources) {
	if len(steps) == 0 {
		return
	}
	first, last := steps[0], steps[len(steps)-1]
	r.f("Cost as the store grows (largest measured size vs smallest; flat = within ±20%%):\n\n")
	if len(steps) < 2 {
		r.f("- only one size measured: nothing to compare\n")
	} else {
		cmp := func(what string, a, b float64, fmtv func(float64) string) {
			if a <= 0 {
				r.f("- %s: %s → %s\n", what, fmtv(a), fmtv(b))
				return
			}
			ratio := b / a
			r.f("- %s: %s at %d → %s at %d payments (%.2f×): %s\n", what, fmtv(a), first.after, fmtv(b), last.after, ratio,
				map[bool]string{true: "flat", false: "not flat"}[math.Abs(ratio-1) <= 0.2])
		}
		num := func(v float64) string { return fmt.Sprintf("%.0f", v) }
		ms := func(v float64) string { return fmtDur(time.Duration(v)) }
		by := func(v float64) string { return fmtBytes(int64(v)) }
		cmp("window throughput (req/s)", first.window.rate(), last.window.rate(), num)
		cmp("window p99", float64(first.window.lat.p99), float64(last.window.lat.p99), ms)
		cmp("Caddy RSS after the window", float64(first.rss), float64(last.rss), by)
		cmp("… anonymous part (RssAnon)", float64(first.anon), float64(last.anon), by)
		cmp("… file-backed part (RssFile)", float64(first.file), float64(last.file), by)
		cmp("storage du per payment", perPaymentF(first.du, first.after), perPaymentF(last.du, last.after), by)
	}
	hit := "not measured in this run (largest size " + fmt.Sprint(last.after) + ")"
	if last.after >= 1_000_000 {
		hit = fmt.Sprintf("VmHWM %s after %d payments: %s", fmtBytes(res.hwm), res.payments, verdict(res.hwm < 150<<20))
	}
	r.f("- target RSS < 150 MiB after 1,000,000 payments: %s\n\n", hit)
}

func fmtCPU(c cpuUse) string {
	return fmt.Sprintf("%.2f / %.2f / %.2f / %.2f / %.2f", c.caddy, c.bench, c.other, c.irq, c.steal)
}

func reachedText(s growthStep) string {
	switch {
	case s.reached:
		return "yes"
	case s.lowMemory:
		return "no (machine low on memory)"
	default:
		return "no (-grow-timeout)"
	}
}

func orUnknown(s string) string {
	if s == "" {
		return "unknown"
	}
	return s
}

func fmtDur(d time.Duration) string {
	switch {
	case d <= 0:
		return "-"
	case d < time.Millisecond:
		return fmt.Sprintf("%.3f ms", float64(d)/1e6)
	case d < 100*time.Millisecond:
		return fmt.Sprintf("%.2f ms", float64(d)/1e6)
	default:
		return fmt.Sprintf("%.0f ms", float64(d)/1e6)
	}
}

func fmtBytes(n int64) string {
	switch {
	case n <= 0:
		return "-"
	case n < 1<<10:
		return fmt.Sprintf("%d B", n)
	case n < 1<<20:
		return fmt.Sprintf("%.1f KiB", float64(n)/(1<<10))
	case n < 1<<30:
		return fmt.Sprintf("%.1f MiB", float64(n)/(1<<20))
	default:
		return fmt.Sprintf("%.2f GiB", float64(n)/(1<<30))
	}
}

func perPaymentF(bytes, payments int64) float64 {
	if payments <= 0 {
		return 0
	}
	return float64(bytes) / float64(payments)
}

func perPayment(bytes, payments int64) string {
	if payments <= 0 {
		return "-"
	}
	return fmt.Sprintf("%.0f B", perPaymentF(bytes, payments))
}
