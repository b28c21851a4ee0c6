package caddymodule

// Prometheus metrics, scraped from Caddy's admin endpoint while payments and
// event deliveries happen. No t.Parallel: one Caddy per process.

import (
	"fmt"
	"io"
	"net/http"
	"sort"
	"strconv"
	"strings"
	"testing"
	"time"
)

// --- scraping -----------------------------------------------------------------

// mSeries is one sample line of the text exposition format.
type mSeries struct {
	name   string
	labels map[string]string
	value  float64
}

func (s mSeries) String() string {
	ks := make([]string, 0, len(s.labels))
	for k := range s.labels {
		ks = append(ks, k)
	}
	sort.Strings(ks)
	var b strings.Builder
	b.WriteString(s.name)
	b.WriteString("{")
	for i, k := range ks {
		if i > 0 {
			b.WriteString(",")
		}
		fmt.Fprintf(&b, "%s=%q", k, s.labels[k])
	}
	b.WriteString("}")
	return b.String()
}

type mScrape struct {
	series []mSeries
	raw    string
}

// scrapeMetrics GETs the admin endpoint's /metrics and parses it.
func scrapeMetrics(t testing.TB) mScrape {
	t.Helper()
	req, err := http.NewRequest(http.MethodGet, "http://"+adminAddr+"/metrics", nil)
	if err != nil {
		t.Fatal(err)
	}
	// the plain text format, which parseMetrics reads
	req.Header.Set("Accept", "text/plain; version=0.0.4")
	resp, err := (&http.Client{Timeout: 10 * time.Second}).Do(req)
	if err != nil {
		t.Fatalf("GET /metrics: %v", err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("GET /metrics: HTTP %d: %s", resp.StatusCode, body)
	}
	s, err := parseMetrics(string(body))
	if err != nil {
		t.Fatalf("parsing /metrics: %v", err)
	}
	return s
}

// parseMetrics reads the Prometheus text format: `name{k="v",…} value`.
func parseMetrics(text string) (mScrape, error) {
	out := mScrape{raw: text}
	for n, line := range strings.Split(text, "\n") {
		line = strings.TrimSpace(line)
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		s := mSeries{labels: map[string]string{}}
		i := strings.IndexAny(line, "{ ")
		if i < 0 {
			return out, fmt.Errorf("line %d: %q", n+1, line)
		}
		s.name = line[:i]
		rest := line[i:]
		if rest[0] == '{' {
			rest = rest[1:]
			for {
				rest = strings.TrimLeft(rest, ", ")
				if strings.HasPrefix(rest, "}") {
					rest = rest[1:]
					break
				}
				eq := strings.Index(rest, `="`)
				if eq < 0 {
					return out, fmt.Errorf("line %d: bad labels in %q", n+1, line)
				}
				key := rest[:eq]
				rest = rest[eq+2:]
				var v strings.Builder
				closed := false
				for j := 0; j < len(rest); j++ {
					c := rest[j]
					if c == '\\' && j+1 < len(rest) {
						j++
						switch rest[j] {
						case 'n':
							v.WriteByte('\n')
						default:
							v.WriteByte(rest[j])
						}
						continue
					}
					if c == '"' {
						rest = rest[j+1:]
						closed = true
						break
					}
					v.WriteByte(c)
				}
				if !closed {
					return out, fmt.Errorf("line %d: unterminated label value in %q", n+1, line)
				}
				s.labels[key] = v.String()
			}
		}
		fields := strings.Fields(rest)
		if len(fields) < 1 {
			return out, fmt.Errorf("line %d: no value in %q", n+1, line)
		}
		v, err := strconv.ParseFloat(fields[0], 64)
		if err != nil {
			return out, fmt.Errorf("line %d: value %q: %v", n+1, fields[0], err)
		}
		s.value = v
		out.series = append(out.series, s)
	}
	return out, nil
}

// find returns the series called name whose labels include kv (pairs).
func (m mScrape) find(name string, kv ...string) []mSeries {
	var out []mSeries
	for _, s := range m.series {
		if s.name != name {
			continue
		}
		match := true
		for i := 0; i+1 < len(kv); i += 2 {
			if s.labels[kv[i]] != kv[i+1] {
				match = false
				break
			}
		}
		if match {
			out = append(out, s)
		}
	}
	return out
}

// value is the one series called name with labels kv; 0 when there is none
// (a counter never incremented is not exported yet).
func (m mScrape) value(t testing.TB, name string, kv ...string) float64 {
	t.Helper()
	ss := m.find(name, kv...)
	switch len(ss) {
	case 0:
		return 0
	case 1:
		return ss[0].value
	}
	t.Fatalf("%d series %s %v: %v", len(ss), name, kv, ss)
	return 0
}

func (m mScrape) has(name string) bool { return len(m.find(name)) > 0 }

// paybridge returns every paybridge_* series.
func (m mScrape) paybridge() []mSeries {
	var out []mSeries
	for _, s := range m.series {
		if strings.HasPrefix(s.name, "paybridge_") {
			out = append(out, s)
		}
	}
	return out
}

// checkMetricLabels: labels are kinds and names only, never URLs, ids or
// tokens.
func checkMetricLabels(t *testing.T, m mScrape, forbidden ...string) {
	t.Helper()
	allowed := map[string]bool{"platform": true, "action": true, "outcome": true, "gateway": true, "operation": true, "target": true, "le": true}
	idPrefixes := []string{"pay_", "pbt_", "pba_", "tok_", "evt_", "sbx_", "tx_", "pbk_", "ord_", "ep_", "cus_"}
	outcomes := map[string][]string{
		"paybridge_requests_total":   {"succeeded", "pending", "failed", "refused", "replayed"},
		"paybridge_deliveries_total": {"delivered", "retry", "dead"},
	}
	operations := []string{"authorize", "capture", "void", "refund", "validate", "revalidate", "status", "vault"}
	for _, s := range m.paybridge() {
		for k, v := range s.labels {
			if !allowed[k] {
				t.Errorf("%s: label %q is not one of the documented ones", s, k)
			}
			low := strings.ToLower(v)
			if strings.Contains(low, "http") || strings.Contains(v, "://") || strings.Contains(v, "127.0.0.1") || strings.Contains(low, "localhost") {
				t.Errorf("%s: label %s=%q looks like a URL", s, k, v)
			}
			for _, p := range idPrefixes {
				if strings.Contains(v, p) {
					t.Errorf("%s: label %s=%q holds a token or an id (%s…)", s, k, v, p)
				}
			}
			for _, f := range forbidden {
				if f != "" && strings.Contains(v, f) {
					t.Errorf("%s: label %s=%q holds %q", s, k, v, f)
				}
			}
		}
		if want, ok := outcomes[s.name]; ok && !mContains(want, s.labels["outcome"]) {
			t.Errorf("%s: outcome %q is not one of %v", s, s.labels["outcome"], want)
		}
		if strings.HasPrefix(s.name, "paybridge_gateway_request_duration_seconds") && !mContains(operations, s.labels["operation"]) {
			t.Errorf("%s: operation %q is not one of %v", s, s.labels["operation"], operations)
		}
	}
}

func mContains(list []string, v string) bool {
	for _, x := range list {
		if x == v {
			return true
		}
	}
	return false
}

// --- the test -------------------------------------------------------------------

// Done when #7: metrics move as operations happen, the outbox gauges
// reflect a failing listener, labels are kinds and names only, and a config
// reload keeps the counters' values.
func TestMetricsMoveWithOperations(t *testing.T) {
	const okName, downName = "metrics-erp-ok", "metrics-erp-down"
	up := newEvSink(t, http.StatusOK)
	down := newEvSink(t, http.StatusInternalServerError)
	s := newEvSetup(t)
	o := evOpts{maxAge: "1s", endpoints: []evEndpoint{
		{url: up.url(), name: okName, secrets: []string{"metrics-secret-ok"}},
		{url: down.url(), name: downName, secrets: []string{"metrics-secret-down"}},
	}}
	e := s.start(t, o)

	authOK := []string{"paybridge_requests_total", "platform", "commercelayer", "action", "authorize", "outcome", "succeeded"}
	captureOK := []string{"paybridge_requests_total", "platform", "commercelayer", "action", "capture", "outcome", "succeeded"}
	authFailed := []string{"paybridge_requests_total", "platform", "commercelayer", "action", "authorize", "outcome", "failed"}
	captureRefused := []string{"paybridge_requests_total", "platform", "commercelayer", "action", "capture", "outcome", "refused"}
	authPSP := []string{"paybridge_gateway_request_duration_seconds_count", "gateway", "default", "operation", "authorize"}
	delivered := func(target string) []string {
		return []string{"paybridge_deliveries_total", "target", target, "outcome", "delivered"}
	}
	retried := []string{"paybridge_deliveries_total", "target", downName, "outcome", "retry"}
	died := []string{"paybridge_deliveries_total", "target", downName, "outcome", "dead"}
	v := func(m mScrape, q []string) float64 { t.Helper(); return m.value(t, q[0], q[1:]...) }

	m0 := scrapeMetrics(t)
	for _, name := range []string{"paybridge_outbox_pending", "paybridge_dead_letters"} {
		if !m0.has(name) {
			t.Fatalf("/metrics has no %s:\n%s", name, m0.raw)
		}
	}
	if got := v(m0, []string{"paybridge_dead_letters"}); got != 0 {
		t.Errorf("paybridge_dead_letters = %v on a fresh store", got)
	}

	// 3 authorizations, one capture, one refused capture, one decline
	var tokens []string
	for range 3 {
		tokens = append(tokens, e.authorize("tok_visa_"+uid(), 1000))
	}
	e.capture(tokens[0], 1000, 1000)
	assertError(t, e.send("capture", captureDoc("au_"+uid(), tokens[0], 1000, 1, 0)), http.StatusUnprocessableEntity, "amount_exceeds_balance")
	assertError(t, e.send("authorize", authorizeDoc("ep_"+uid(), "tok_decline_"+uid(), 500)), http.StatusUnprocessableEntity, "card_declined")
	const events = 5 // 3 PaymentAuthorized, 1 PaymentCaptured, 1 PaymentRefused, to each endpoint

	m1 := scrapeMetrics(t)
	for _, c := range []struct {
		q    []string
		want float64
	}{{authOK, 3}, {captureOK, 1}, {authFailed, 1}, {captureRefused, 1}} {
		if d := v(m1, c.q) - v(m0, c.q); d != c.want {
			t.Errorf("%v went up by %v, want %v", c.q, d, c.want)
		}
	}
	if d := v(m1, authPSP) - v(m0, authPSP); d < 4 {
		t.Errorf("%v went up by %v, want at least 4 (3 authorized, 1 declined)", authPSP, d)
	}

	// the failing listener: messages wait in the outbox, attempts retry
	if got := v(m1, []string{"paybridge_outbox_pending"}); got <= 0 {
		t.Errorf("paybridge_outbox_pending = %v while a listener fails, want > 0", got)
	}
	if !waitUntil(5*time.Second, func() bool { return v(scrapeMetrics(t), retried) > v(m0, retried) }) {
		t.Errorf("%v did not move while the listener failed", retried)
	}

	// the working listener: every accepted delivery is counted
	if !waitUntil(5*time.Second, func() bool { return up.count(true) >= events }) {
		t.Fatalf("the working listener got %d events, want %d:%s", up.count(true), events, up.dump())
	}
	if !waitUntil(3*time.Second, func() bool {
		return v(scrapeMetrics(t), delivered(okName))-v(m0, delivered(okName)) == float64(up.count(true))
	}) {
		t.Errorf("%v went up by %v, the listener accepted %d", delivered(okName),
			v(scrapeMetrics(t), delivered(okName))-v(m0, delivered(okName)), up.count(true))
	}
	if d := v(scrapeMetrics(t), delivered(downName)) - v(m0, delivered(downName)); d != 0 {
		t.Errorf("%v went up by %v for a listener that only answers 500", delivered(downName), d)
	}

	// after max_age (1s) the failing listener's events are dead letters
	var m2 mScrape
	if !waitUntil(6*time.Second, func() bool {
		m2 = scrapeMetrics(t)
		return v(m2, []string{"paybridge_dead_letters"}) == events && v(m2, []string{"paybridge_outbox_pending"}) == 0
	}) {
		t.Fatalf("after max_age: dead_letters %v pending %v, want %d and 0; listener got:%s",
			v(m2, []string{"paybridge_dead_letters"}), v(m2, []string{"paybridge_outbox_pending"}), events, down.dump())
	}
	if d := v(m2, died) - v(m0, died); d != events {
		t.Errorf("%v went up by %v, want %d", died, d, events)
	}
	checkMetricLabels(t, m2, up.url(), down.url(), evCLSecret)

	// a reload (another max_age) keeps every counter's value
	o.maxAge = "2s"
	if err := loadConfig(s.config(t, o)); err != nil {
		t.Fatalf("reload: %v", err)
	}
	m3 := scrapeMetrics(t)
	before := map[string]float64{}
	for _, s := range m2.paybridge() {
		if s.name != "paybridge_outbox_pending" && s.name != "paybridge_dead_letters" {
			before[s.String()] = s.value
		}
	}
	after := map[string]float64{}
	for _, s := range m3.paybridge() {
		after[s.String()] = s.value
	}
	for k, was := range before {
		now, ok := after[k]
		if !ok {
			t.Errorf("after the reload %s is gone (was %v)", k, was)
		} else if now < was {
			t.Errorf("after the reload %s = %v, was %v: reset", k, now, was)
		}
	}
	for _, q := range [][]string{authOK, captureOK, authFailed, captureRefused, authPSP, delivered(okName), died} {
		if v(m3, q) != v(m2, q) {
			t.Errorf("%v = %v after the reload, %v before", q, v(m3, q), v(m2, q))
		}
	}
	if got := v(m3, []string{"paybridge_dead_letters"}); got != events {
		t.Errorf("paybridge_dead_letters = %v after the reload, want %d (they are in the store)", got, events)
	}

	// and they keep counting from there
	e.authorize("tok_visa_"+uid(), 1000)
	if d := v(scrapeMetrics(t), authOK) - v(m2, authOK); d != 1 {
		t.Errorf("%v went up by %v after one more authorization past the reload, want 1", authOK, d)
	}
	if !waitUntil(3*time.Second, func() bool {
		return v(scrapeMetrics(t), delivered(okName))-v(m0, delivered(okName)) == float64(up.count(true)) && up.count(true) == events+1
	}) {
		t.Errorf("after the reload the delivery counter does not follow: %v up by %v, listener accepted %d",
			delivered(okName), v(scrapeMetrics(t), delivered(okName))-v(m0, delivered(okName)), up.count(true))
	}
	checkMetricLabels(t, scrapeMetrics(t), up.url(), down.url(), evCLSecret)
}
