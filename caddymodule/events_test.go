package caddymodule

// Integration tests of payment events: real Caddy (caddytest, admin on
// localhost:2999), real Badger store, sandbox PSP, and listeners on loopback
// that check every delivery's Paybridge-Signature with crypto/hmac.
//
// No t.Parallel: caddytest runs one Caddy per process.

import (
	"bytes"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"github.com/caddyserver/caddy/v2/caddyconfig"
	"io"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"slices"
	"sort"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/paybridge/caddy-paybridge/payment"
	"github.com/paybridge/caddy-paybridge/signature"
	"github.com/paybridge/caddy-paybridge/store"
)

// evCLSecret is the Commerce Layer shared secret of the events tests; it
// must never show up in an event body.
const evCLSecret = "cl-events-shared-secret"

// --- config -----------------------------------------------------------------

// evEndpoint is one `endpoint` of the events block.
type evEndpoint struct {
	url     string
	name    string   // "" leaves the name to its default
	secrets []string // the first signs; every one is sent as a v1
	types   []string // nil: every type
}

// evOpts are the knobs of the events config.
type evOpts struct {
	endpoints  []evEndpoint
	maxAge     string // default 30s
	asyncDelay string // sandbox async_delay, default 200ms
}

// evSetup is one test's paybridge with events: where it stores, and how to
// (re)build its Caddyfile.
type evSetup struct {
	storage string
	ledger  string
	cb      *recorder
}

func newEvSetup(t *testing.T) *evSetup {
	t.Helper()
	dir := t.TempDir()
	return &evSetup{
		storage: filepath.Join(dir, "store"),
		ledger:  filepath.Join(dir, "ledger"),
		cb:      newRecorder(t, http.StatusOK),
	}
}

// config is the standard Caddyfile (handlers /cl/, /clfail/, /clsmall/,
// reconcile_interval 50ms) with, in the paybridge global option,
// retry_backoff 50ms 200ms, max_age and the events block.
func (s *evSetup) config(t *testing.T, o evOpts) string {
	t.Helper()
	if o.maxAge == "" {
		o.maxAge = "30s"
	}
	var b strings.Builder
	b.WriteString("retry_backoff 50ms 200ms\n")
	fmt.Fprintf(&b, "\t\tmax_age %s\n", o.maxAge)
	if len(o.endpoints) > 0 {
		b.WriteString("\t\tevents {\n")
		for _, ep := range o.endpoints {
			fmt.Fprintf(&b, "\t\t\tendpoint %s {\n", ep.url)
			if ep.name != "" {
				fmt.Fprintf(&b, "\t\t\t\tname %s\n", ep.name)
			}
			fmt.Fprintf(&b, "\t\t\t\tsecret %s\n", strings.Join(ep.secrets, " "))
			if len(ep.types) > 0 {
				fmt.Fprintf(&b, "\t\t\t\ttypes %s\n", strings.Join(ep.types, " "))
			}
			b.WriteString("\t\t\t}\n")
		}
		b.WriteString("\t\t}\n")
	}
	return stdConfig(t, cfgParams{
		Storage: s.storage, Ledger: s.ledger, Secrets: []string{evCLSecret}, CallbackURL: s.cb.URL(),
		AsyncDelay: o.asyncDelay, Paybridge: b.String(),
	})
}

// start loads the config and returns an env whose helpers (send,
// authorize, capture) talk to it.
func (s *evSetup) start(t *testing.T, o evOpts) *env {
	t.Helper()
	e := &env{t: t, storage: s.storage, ledger: s.ledger, secret: evCLSecret, cb: s.cb}
	e.tester = startCaddy(t, s.config(t, o))
	return e
}

// --- the listener -------------------------------------------------------------

// evArrival is one request an evSink received.
type evArrival struct {
	n      int // arrival order, from 0
	header http.Header
	body   []byte
	at     time.Time
	status int // what the sink answered
}

func (a evArrival) ok() bool { return a.status >= 200 && a.status <= 299 }

// evSink is an events listener on loopback. It records every request and
// answers the status decide returns (decide gets the arrival number), or
// the fixed status when decide is nil.
type evSink struct {
	srv    *httptest.Server
	fixed  atomic.Int32
	mu     sync.Mutex
	decide func(n int) int
	got    []evArrival
}

func newEvSink(t *testing.T, status int) *evSink {
	t.Helper()
	s := &evSink{}
	s.fixed.Store(int32(status))
	s.srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		s.mu.Lock()
		n := len(s.got)
		st := int(s.fixed.Load())
		if s.decide != nil {
			st = s.decide(n)
		}
		s.got = append(s.got, evArrival{n: n, header: r.Header.Clone(), body: body, at: time.Now(), status: st})
		s.mu.Unlock()
		w.WriteHeader(st)
	}))
	t.Cleanup(s.srv.Close)
	return s
}

func (s *evSink) url() string { return s.srv.URL + "/events" }

func (s *evSink) setStatus(st int) {
	s.mu.Lock()
	s.decide = nil
	s.fixed.Store(int32(st))
	s.mu.Unlock()
}

func (s *evSink) setDecide(f func(n int) int) {
	s.mu.Lock()
	s.decide = f
	s.mu.Unlock()
}

func (s *evSink) all() []evArrival {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]evArrival(nil), s.got...)
}

func (s *evSink) count(okOnly bool) int {
	n := 0
	for _, a := range s.all() {
		if !okOnly || a.ok() {
			n++
		}
	}
	return n
}

func (s *evSink) dump() string {
	var b strings.Builder
	for _, a := range s.all() {
		fmt.Fprintf(&b, "\n  #%d %s -> %d %s", a.n, a.at.Format("15:04:05.000"), a.status, a.body)
	}
	return b.String()
}

// --- the event body -------------------------------------------------------------

// evBody is an event as listeners receive it.
type evBody struct {
	ID         string            `json:"id"`
	Type       string            `json:"type"`
	OccurredAt string            `json:"occurred_at"`
	Sequence   int64             `json:"sequence"`
	Purchase   map[string]string `json:"purchase"`
	Payment    struct {
		ID               string `json:"id"`
		Platform         string `json:"platform"`
		Gateway          string `json:"gateway"`
		GatewayReference string `json:"gateway_reference"`
	} `json:"payment"`
	Amount struct {
		Value    int64  `json:"value"`
		Currency string `json:"currency"`
	} `json:"amount"`
	PaymentData map[string]string `json:"paymentData"`
}

// parseEvBody decodes an event and checks its shape: exactly the
// documented top-level keys, payment {id, platform, gateway,
// gateway_reference}, amount {value, currency}, a purchase naming an order
// or a cart, and a paymentData object of strings.
func parseEvBody(body []byte) (evBody, error) {
	var ev evBody
	var top map[string]json.RawMessage
	if err := json.Unmarshal(body, &top); err != nil {
		return ev, fmt.Errorf("not a JSON object: %v", err)
	}
	wantTop := []string{"amount", "id", "occurred_at", "payment", "paymentData", "purchase", "sequence", "type"}
	if got := rawKeys(top); !slices.Equal(got, wantTop) {
		return ev, fmt.Errorf("top-level keys %v, want %v", got, wantTop)
	}
	sub := func(key string, want ...string) error {
		var m map[string]json.RawMessage
		if err := json.Unmarshal(top[key], &m); err != nil || m == nil {
			return fmt.Errorf("%s is not an object: %s", key, top[key])
		}
		if got := rawKeys(m); !slices.Equal(got, want) {
			return fmt.Errorf("%s keys %v, want %v", key, got, want)
		}
		return nil
	}
	if err := sub("payment", "gateway", "gateway_reference", "id", "platform"); err != nil {
		return ev, err
	}
	if err := sub("amount", "currency", "value"); err != nil {
		return ev, err
	}
	if err := sub("purchase", "orderId", "orderNumber"); err != nil {
		if err2 := sub("purchase", "cartId"); err2 != nil {
			return ev, err
		}
	}
	// paymentData: an object (never null) whose values are strings.
	var pd map[string]json.RawMessage
	if err := json.Unmarshal(top["paymentData"], &pd); err != nil || pd == nil {
		return ev, fmt.Errorf("paymentData is not an object: %s", top["paymentData"])
	}
	dec := json.NewDecoder(bytes.NewReader(body))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&ev); err != nil {
		return ev, fmt.Errorf("decoding: %v", err)
	}
	return ev, nil
}

func rawKeys(m map[string]json.RawMessage) []string {
	out := make([]string, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	sort.Strings(out)
	return out
}

// --- the signature -------------------------------------------------------------

// evHMAC is the v1 of body at t under secret, computed here independently
// of the signature package: hex HMAC-SHA256(secret, "<t>.<body>").
func evHMAC(secret, t string, body []byte) string {
	m := hmac.New(sha256.New, []byte(secret))
	m.Write([]byte(t))
	m.Write([]byte("."))
	m.Write(body)
	return hex.EncodeToString(m.Sum(nil))
}

// checkEvSignature checks a's Paybridge-Signature: "t=<unix>,v1=…[,v1=…]",
// with exactly one v1 per secret, each the HMAC of "<t>.<body>" under its
// secret, t within 5 minutes of the arrival; and that the signature
// package's Verify accepts it with each secret alone. It returns t.
func checkEvSignature(t testing.TB, a evArrival, secrets []string) int64 {
	t.Helper()
	h := a.header.Get(signature.Header)
	if h == "" {
		t.Errorf("arrival #%d has no %s header: %s", a.n, signature.Header, a.body)
		return 0
	}
	if vs := a.header.Values(signature.Header); len(vs) != 1 {
		t.Errorf("arrival #%d has %d %s headers", a.n, len(vs), signature.Header)
	}
	var ts string
	var v1 []string
	for item := range strings.SplitSeq(h, ",") {
		k, v, ok := strings.Cut(item, "=")
		if !ok {
			t.Errorf("arrival #%d: malformed signature item %q in %q", a.n, item, h)
			return 0
		}
		switch k {
		case "t":
			if ts != "" {
				t.Errorf("arrival #%d: two t in %q", a.n, h)
			}
			ts = v
		case "v1":
			v1 = append(v1, v)
		default:
			t.Errorf("arrival #%d: unexpected signature item %q in %q", a.n, item, h)
		}
	}
	unix, err := strconv.ParseInt(ts, 10, 64)
	if err != nil {
		t.Errorf("arrival #%d: t %q is not unix seconds", a.n, ts)
		return 0
	}
	if d := a.at.Sub(time.Unix(unix, 0)); d > 5*time.Minute || d < -5*time.Minute {
		t.Errorf("arrival #%d: t=%d is %s away from the arrival time", a.n, unix, d)
	}
	if len(v1) != len(secrets) {
		t.Errorf("arrival #%d: %d v1 values, want one per secret (%d): %q", a.n, len(v1), len(secrets), h)
	}
	for _, s := range secrets {
		want := evHMAC(s, ts, a.body)
		if !slices.Contains(v1, want) {
			t.Errorf("arrival #%d: no v1 equals HMAC-SHA256(%q, t.body) = %s; header %q", a.n, s, want, h)
		}
		if err := signature.Verify(h, a.body, [][]byte{[]byte(s)}, a.at, 5*time.Minute); err != nil {
			t.Errorf("arrival #%d: signature.Verify with %q: %v", a.n, s, err)
		}
	}
	if err := signature.Verify(h, a.body, [][]byte{[]byte("not-the-secret")}, a.at, 5*time.Minute); err == nil {
		t.Errorf("arrival #%d: signature verifies with a wrong secret", a.n)
	}
	if ct := a.header.Get("Content-Type"); !strings.HasPrefix(ct, "application/json") {
		t.Errorf("arrival #%d: Content-Type %q", a.n, ct)
	}
	return unix
}

// --- flows ---------------------------------------------------------------------

// wantEv is an event a flow must produce.
type wantEv struct {
	typ    string
	amount int64
	ref    string // the operation's gateway reference; "" when not known (declines)
	code   string // paymentData.decline_code; "" for none
}

// evFlow is one payment driven through /cl/, with the events it must
// produce, in order.
type evFlow struct {
	e           *env
	name        string
	source      string
	last4       string
	orderID     string
	orderNumber string
	paymentID   string // metadata.payment_id of the Commerce Layer answers
	want        []wantEv
}

// evOpResult is what a successful Commerce Layer answer told.
type evOpResult struct {
	token, paymentID, ref, actionID string
	amount                          int64
}

// newEvFlow starts a flow whose source token is prefix + "_" + a fresh id;
// the sandbox's last4 is the id's last four characters.
func (e *env) newEvFlow(name, prefix string) *evFlow {
	u := uid()
	return &evFlow{
		e: e, name: name, source: prefix + "_" + u, last4: u[len(u)-4:],
		orderID: "ord_ep_" + u, orderNumber: "NR-ep_" + u,
	}
}

func (f *evFlow) expect(typ string, amount int64, ref, code string) {
	f.want = append(f.want, wantEv{typ: typ, amount: amount, ref: ref, code: code})
}

// ok sends doc to action, expects a success with status, and checks that
// the answer names the flow's payment.
func (f *evFlow) ok(action string, doc map[string]any, status int) evOpResult {
	t := f.e.t
	t.Helper()
	r := f.e.send(action, doc)
	data := assertOK(t, r, status)
	res := evOpResult{token: str(t, data, "transaction_token"), amount: num(t, data, "amount_cents")}
	meta, _ := data["metadata"].(map[string]any)
	res.paymentID, _ = meta["payment_id"].(string)
	res.ref, _ = meta["gateway_reference"].(string)
	if !strings.HasPrefix(res.paymentID, "pay_") || !strings.HasPrefix(res.ref, "sbx_") {
		t.Fatalf("%s %s: metadata without payment_id or gateway_reference: %s", f.name, action, r.Body)
	}
	if status == http.StatusAccepted {
		res.actionID = str(t, data, "action_id")
	}
	if f.paymentID == "" {
		f.paymentID = res.paymentID
	} else if f.paymentID != res.paymentID {
		t.Fatalf("%s %s: metadata.payment_id %s, the flow's payment is %s", f.name, action, res.paymentID, f.paymentID)
	}
	return res
}

func (f *evFlow) refused(action string, doc map[string]any, status int, code string) {
	f.e.t.Helper()
	assertError(f.e.t, f.e.send(action, doc), status, code)
}

func (f *evFlow) authorizeDoc(amount int64) map[string]any {
	return authorizeDoc(strings.TrimPrefix(f.orderID, "ord_"), f.source, amount)
}

func (f *evFlow) authorize(amount int64, status int) evOpResult {
	f.e.t.Helper()
	return f.ok("authorize", f.authorizeDoc(amount), status)
}

func (f *evFlow) capture(auth evOpResult, authAmount, amount, balance int64, status int) evOpResult {
	f.e.t.Helper()
	return f.ok("capture", captureDoc("au_"+uid(), auth.token, authAmount, amount, balance), status)
}

func (f *evFlow) refund(capture evOpResult, captured, amount, balance int64, status int) evOpResult {
	f.e.t.Helper()
	return f.ok("refund", refundDoc("ca_"+uid(), capture.token, captured, amount, balance), status)
}

// settled waits for the Commerce Layer callback of an operation answered 202.
func (f *evFlow) settled(op evOpResult) {
	f.e.t.Helper()
	f.e.cb.waitAction(f.e.t, op.actionID, 5*time.Second)
}

// --- checking what a listener got ------------------------------------------------

// evStreamOpts says how to check one listener's arrivals.
type evStreamOpts struct {
	secrets []string // the endpoint's secrets, all of which must sign
	// forbidden strings no body may contain (source tokens, secrets).
	forbidden []string
	since     time.Time // events cannot have occurred before this
	// filter, when set, is the only types the listener must get; the
	// sequences it sees then have the gaps of what was filtered out.
	filter map[string]bool
}

// evGot is one event as a listener first accepted it.
type evGot struct {
	ev   evBody
	body []byte
	at   time.Time
}

// evWaitDelivered waits until every flow has all of its (wanted) events
// accepted by the sink, or fails.
func evWaitDelivered(t *testing.T, s *evSink, flows []*evFlow, filter map[string]bool, timeout time.Duration) {
	t.Helper()
	want := map[string]int{}
	for _, f := range flows {
		for _, w := range f.want {
			if filter == nil || filter[w.typ] {
				want[f.orderID]++
			}
		}
	}
	var got map[string]int
	ok := waitUntil(timeout, func() bool {
		got = map[string]int{}
		ids := map[string]bool{}
		for _, a := range s.all() {
			if !a.ok() {
				continue
			}
			var ev evBody
			if json.Unmarshal(a.body, &ev) != nil || ids[ev.ID] {
				continue
			}
			ids[ev.ID] = true
			got[ev.Purchase["orderId"]]++
		}
		for k, n := range want {
			if got[k] < n {
				return false
			}
		}
		return true
	})
	if !ok {
		t.Fatalf("not every event was delivered within %s: want per order %v, got %v; arrivals:%s", timeout, want, got, s.dump())
	}
}

// checkEvStream checks everything a listener received against flows:
//
//   - every request is a well-formed event with a valid signature;
//   - per payment, in arrival order, no event is even attempted before the
//     previous one was accepted (no overtaking), accepted sequences go up
//     by exactly 1 (by more only across filtered-out types), and a repeat
//     is an exact re-send (same id, same bytes);
//   - per payment, the accepted events are exactly the flow's (filtered)
//     events: type, amount, currency, purchase, payment, gateway reference,
//     paymentData;
//   - ids are unique across events; no body holds a forbidden string.
//
// It returns the accepted events per order id, in sequence order.
func checkEvStream(t *testing.T, arrivals []evArrival, flows []*evFlow, o evStreamOpts) map[string][]evGot {
	t.Helper()
	byOrder := map[string]*evFlow{}
	for _, f := range flows {
		byOrder[f.orderID] = f
	}
	type state struct {
		maxSeq    int64 // highest accepted sequence
		accepted  []evGot
		bodyByID  map[string][]byte
		idBySeq   map[int64]string
		lastOccur time.Time
	}
	states := map[string]*state{}
	ownerOfID := map[string]string{} // event id -> "order/sequence"
	for _, a := range arrivals {
		for _, bad := range o.forbidden {
			if bad != "" && bytes.Contains(a.body, []byte(bad)) {
				t.Errorf("arrival #%d carries %q: %s", a.n, bad, a.body)
			}
		}
		checkEvSignature(t, a, o.secrets)
		ev, err := parseEvBody(a.body)
		if err != nil {
			t.Errorf("arrival #%d: %v: %s", a.n, err, a.body)
			continue
		}
		order := ev.Purchase["orderId"]
		f := byOrder[order]
		if f == nil {
			t.Errorf("arrival #%d is about an order no flow made: %s", a.n, a.body)
			continue
		}
		st := states[order]
		if st == nil {
			st = &state{bodyByID: map[string][]byte{}, idBySeq: map[int64]string{}}
			states[order] = st
		}
		// one id, one event; one sequence, one event
		key := fmt.Sprintf("%s/%d", order, ev.Sequence)
		if k, seen := ownerOfID[ev.ID]; seen && k != key {
			t.Errorf("arrival #%d: event id %s is used by %s and %s", a.n, ev.ID, k, key)
		}
		ownerOfID[ev.ID] = key
		if id, seen := st.idBySeq[ev.Sequence]; seen && id != ev.ID {
			t.Errorf("arrival #%d: %s sequence %d carries id %s, earlier %s", a.n, f.name, ev.Sequence, ev.ID, id)
		}
		st.idBySeq[ev.Sequence] = ev.ID
		if first, seen := st.bodyByID[ev.ID]; seen {
			if !bytes.Equal(first, a.body) {
				t.Errorf("arrival #%d: event %s sent again with other bytes:\n first %s\n now   %s", a.n, ev.ID, first, a.body)
			}
			if ev.Sequence <= st.maxSeq {
				continue // a re-send of an event already accepted: allowed
			}
		} else {
			st.bodyByID[ev.ID] = append([]byte(nil), a.body...)
		}
		// a new event: it must come right after the last accepted one
		if o.filter == nil {
			if ev.Sequence != st.maxSeq+1 {
				t.Errorf("arrival #%d: %s got sequence %d after %d was the last accepted (overtaking or a gap):%s",
					a.n, f.name, ev.Sequence, st.maxSeq, arrivalsOf(arrivals, order))
			}
		} else if ev.Sequence <= st.maxSeq {
			t.Errorf("arrival #%d: %s got sequence %d after %d was accepted", a.n, f.name, ev.Sequence, st.maxSeq)
		}
		if !a.ok() {
			continue
		}
		st.maxSeq = ev.Sequence
		st.accepted = append(st.accepted, evGot{ev: ev, body: a.body, at: a.at})
	}

	out := map[string][]evGot{}
	for _, f := range flows {
		st := states[f.orderID]
		var got []evGot
		if st != nil {
			got = st.accepted
		}
		out[f.orderID] = got
		// the flow's events, with their sequence in the payment
		type numbered struct {
			wantEv
			seq int64
		}
		var want []numbered
		for i, w := range f.want {
			if o.filter == nil || o.filter[w.typ] {
				want = append(want, numbered{w, int64(i + 1)})
			}
		}
		if len(got) != len(want) {
			var types []string
			for _, g := range got {
				types = append(types, fmt.Sprintf("%d:%s", g.ev.Sequence, g.ev.Type))
			}
			t.Errorf("%s: %d events accepted %v, want %d %v:%s", f.name, len(got), types, len(want), want, arrivalsOf(arrivals, f.orderID))
			continue
		}
		var last time.Time
		for i, g := range got {
			w, ev := want[i], g.ev
			where := fmt.Sprintf("%s event %d (%s)", f.name, i+1, ev.Type)
			if ev.Type != w.typ || ev.Sequence != w.seq {
				t.Errorf("%s: type %s sequence %d, want %s sequence %d: %s", where, ev.Type, ev.Sequence, w.typ, w.seq, g.body)
			}
			if !strings.HasPrefix(ev.ID, "evt_") || len(ev.ID) <= len("evt_") {
				t.Errorf("%s: id %q, want evt_…", where, ev.ID)
			}
			at, err := time.Parse(time.RFC3339, ev.OccurredAt)
			if err != nil {
				t.Errorf("%s: occurred_at %q is not RFC 3339", where, ev.OccurredAt)
			} else {
				if at.Before(o.since.Truncate(time.Second)) || at.After(g.at.Add(time.Second)) {
					t.Errorf("%s: occurred_at %s is outside [%s, its arrival %s]", where, ev.OccurredAt, o.since.Format(time.RFC3339Nano), g.at.Format(time.RFC3339Nano))
				}
				if at.Before(last) {
					t.Errorf("%s: occurred_at %s is before the previous event's %s", where, at, last)
				}
				last = at
			}
			if ev.Purchase["orderId"] != f.orderID || ev.Purchase["orderNumber"] != f.orderNumber || len(ev.Purchase) != 2 {
				t.Errorf("%s: purchase %v, want {orderId %s, orderNumber %s}", where, ev.Purchase, f.orderID, f.orderNumber)
			}
			if f.paymentID != "" && ev.Payment.ID != f.paymentID {
				t.Errorf("%s: payment.id %s, want %s (metadata.payment_id of the Commerce Layer answer)", where, ev.Payment.ID, f.paymentID)
			}
			if !strings.HasPrefix(ev.Payment.ID, "pay_") {
				t.Errorf("%s: payment.id %q", where, ev.Payment.ID)
			}
			if i > 0 && ev.Payment.ID != got[0].ev.Payment.ID {
				t.Errorf("%s: payment.id %s, the payment's first event said %s", where, ev.Payment.ID, got[0].ev.Payment.ID)
			}
			if ev.Payment.Platform != "commercelayer" || ev.Payment.Gateway != "default" {
				t.Errorf("%s: payment platform %q gateway %q, want commercelayer default", where, ev.Payment.Platform, ev.Payment.Gateway)
			}
			if w.ref != "" && ev.Payment.GatewayReference != w.ref {
				t.Errorf("%s: gateway_reference %q, want %q (the operation's metadata.gateway_reference)", where, ev.Payment.GatewayReference, w.ref)
			}
			if !strings.HasPrefix(ev.Payment.GatewayReference, "sbx_") {
				t.Errorf("%s: gateway_reference %q", where, ev.Payment.GatewayReference)
			}
			if ev.Amount.Value != w.amount || ev.Amount.Currency != "EUR" {
				t.Errorf("%s: amount %d %s, want %d EUR", where, ev.Amount.Value, ev.Amount.Currency, w.amount)
			}
			pd := ev.PaymentData
			if pd["psp_reference"] != ev.Payment.GatewayReference {
				t.Errorf("%s: paymentData.psp_reference %q, gateway_reference %q", where, pd["psp_reference"], ev.Payment.GatewayReference)
			}
			if pd["brand"] != "sandbox" || pd["last4"] != f.last4 {
				t.Errorf("%s: paymentData brand %q last4 %q, want sandbox %q", where, pd["brand"], pd["last4"], f.last4)
			}
			if pd["decline_code"] != w.code {
				t.Errorf("%s: paymentData.decline_code %q, want %q", where, pd["decline_code"], w.code)
			}
		}
	}
	return out
}

// arrivalsOf lists the arrivals about order, for failure messages.
func arrivalsOf(arrivals []evArrival, order string) string {
	var b strings.Builder
	for _, a := range arrivals {
		if bytes.Contains(a.body, []byte(`"`+order+`"`)) {
			var ev evBody
			_ = json.Unmarshal(a.body, &ev)
			fmt.Fprintf(&b, "\n  #%d %s -> %d seq %d %s %s", a.n, a.at.Format("15:04:05.000"), a.status, ev.Sequence, ev.Type, ev.ID)
		}
	}
	return b.String()
}

func evForbidden(flows []*evFlow, secrets ...string) []string {
	out := append([]string{evCLSecret, "tok_"}, secrets...)
	for _, f := range flows {
		out = append(out, f.source)
	}
	return out
}

// --- the flows of the issue ---------------------------------------------------------

// evSyncFull: authorize 1000 → capture 400 → capture the rest (600) →
// refund 250 of the second capture → refund its rest (350).
func (e *env) evSyncFull() *evFlow {
	e.t.Helper()
	f := e.newEvFlow("sync full", "tok_visa")
	a := f.authorize(1000, http.StatusOK)
	f.expect("PaymentAuthorized", 1000, a.ref, "")
	c1 := f.capture(a, 1000, 400, 1000, http.StatusOK)
	f.expect("PaymentCaptured", 400, c1.ref, "")
	c2 := f.capture(a, 1000, 600, 600, http.StatusOK)
	f.expect("PaymentCaptured", 600, c2.ref, "")
	r1 := f.refund(c2, 600, 250, 600, http.StatusOK)
	f.expect("PaymentRefunded", 250, r1.ref, "")
	r2 := f.refund(c2, 600, 350, 350, http.StatusOK)
	f.expect("PaymentRefunded", 350, r2.ref, "")
	return f
}

// evVoided: authorize 700 → void.
func (e *env) evVoided() *evFlow {
	e.t.Helper()
	f := e.newEvFlow("authorize then void", "tok_visa")
	a := f.authorize(700, http.StatusOK)
	f.expect("PaymentAuthorized", 700, a.ref, "")
	v := f.ok("void", voidDoc("au_"+uid(), a.token, 700), http.StatusOK)
	f.expect("PaymentCancelled", 700, v.ref, "")
	return f
}

// evDeclined: an authorization of 500 declined (card_declined).
func (e *env) evDeclined() *evFlow {
	e.t.Helper()
	f := e.newEvFlow("declined", "tok_decline")
	f.refused("authorize", f.authorizeDoc(500), http.StatusUnprocessableEntity, "card_declined")
	f.expect("PaymentRefused", 500, "", "card_declined")
	return f
}

// evCaptureFail: authorize 300, every capture declined.
func (e *env) evCaptureFail() *evFlow {
	e.t.Helper()
	f := e.newEvFlow("capture fails", "tok_capture_fail")
	a := f.authorize(300, http.StatusOK)
	f.expect("PaymentAuthorized", 300, a.ref, "")
	f.refused("capture", captureDoc("au_"+uid(), a.token, 300, 300, 300), http.StatusUnprocessableEntity, "capture_declined")
	f.expect("PaymentCaptureFailed", 300, "", "capture_declined")
	return f
}

// evRefundFail: authorize 400, capture it, every refund declined.
func (e *env) evRefundFail() *evFlow {
	e.t.Helper()
	f := e.newEvFlow("refund fails", "tok_refund_fail")
	a := f.authorize(400, http.StatusOK)
	f.expect("PaymentAuthorized", 400, a.ref, "")
	c := f.capture(a, 400, 400, 400, http.StatusOK)
	f.expect("PaymentCaptured", 400, c.ref, "")
	f.refused("refund", refundDoc("ca_"+uid(), c.token, 400, 100, 400), http.StatusUnprocessableEntity, "refund_declined")
	f.expect("PaymentRefundFailed", 100, "", "refund_declined")
	return f
}

// evAsyncAuth starts an asynchronous authorization (tok_async, or tok_3ds
// when threeDS) of amount; its events are expected, and settle waits for it.
func (e *env) evAsyncAuth(name string, threeDS bool, amount int64) (*evFlow, evOpResult) {
	e.t.Helper()
	prefix, first := "tok_async", "PaymentReceived"
	if threeDS {
		prefix, first = "tok_3ds", "PaymentAuthenticationStarted"
	}
	f := e.newEvFlow(name, prefix)
	a := f.authorize(amount, http.StatusAccepted)
	f.expect(first, amount, a.ref, "")
	f.expect("PaymentAuthorized", amount, a.ref, "")
	return f, a
}

// --- tests ------------------------------------------------------------------------

// Done when #1: a listener receives every event of the sync and async flows,
// in order per payment, signed, with the documented body.
func TestEventsListenerGetsEveryFlow(t *testing.T) {
	const secret = "events-secret-1"
	sink := newEvSink(t, http.StatusOK)
	s := newEvSetup(t)
	e := s.start(t, evOpts{endpoints: []evEndpoint{{url: sink.url(), secrets: []string{secret}}}})
	since := time.Now()

	// the asynchronous ones first, so they settle while the rest runs
	asyncAuth, _ := e.evAsyncAuth("tok_async authorize", false, 800)
	threeDS, _ := e.evAsyncAuth("tok_3ds authorize", true, 900)
	asyncCap, auth := e.evAsyncAuth("tok_async capture", false, 1200)

	flows := []*evFlow{asyncAuth, threeDS, asyncCap,
		e.evSyncFull(), e.evVoided(), e.evDeclined(), e.evCaptureFail(), e.evRefundFail()}

	asyncCap.settled(auth)
	c := asyncCap.capture(auth, 1200, 1200, 1200, http.StatusAccepted)
	asyncCap.expect("PaymentCaptureStarted", 1200, c.ref, "")
	asyncCap.expect("PaymentCaptured", 1200, c.ref, "")
	asyncCap.settled(c)

	evWaitDelivered(t, sink, flows, nil, 10*time.Second)
	checkEvStream(t, sink.all(), flows, evStreamOpts{
		secrets: []string{secret}, forbidden: evForbidden(flows, secret), since: since,
	})
	if t.Failed() {
		t.Logf("arrivals:%s", sink.dump())
	}
}

// Done when #2: a listener failing (500) for a while, then failing every
// other request, then recovering, gets everything in order, with no gaps.
func TestEventsListenerFailsThenRecovers(t *testing.T) {
	const secret = "events-secret-2"
	sink := newEvSink(t, http.StatusInternalServerError)
	s := newEvSetup(t)
	e := s.start(t, evOpts{endpoints: []evEndpoint{{url: sink.url(), name: "flaky-erp", secrets: []string{secret}}}})
	since := time.Now()

	asyncAuth, _ := e.evAsyncAuth("tok_async authorize", false, 800)
	flows := []*evFlow{asyncAuth, e.evSyncFull(), e.evVoided(), e.evDeclined()}

	// the listener is down: every payment's first event is tried again and again
	if !waitUntil(5*time.Second, func() bool {
		tries := map[string]int{}
		for _, a := range sink.all() {
			var ev evBody
			if json.Unmarshal(a.body, &ev) == nil {
				tries[ev.Purchase["orderId"]]++
			}
		}
		for _, f := range flows {
			if tries[f.orderID] < 3 {
				return false
			}
		}
		return true
	}) {
		t.Fatalf("events were not retried while the listener failed:%s", sink.dump())
	}
	if n := sink.count(true); n != 0 {
		t.Fatalf("%d deliveries accepted by a listener answering 500", n)
	}

	// then it fails every other request, while more happens
	sink.setDecide(func(n int) int {
		if n%2 == 0 {
			return http.StatusInternalServerError
		}
		return http.StatusOK
	})
	flows = append(flows, e.evSyncFull(), e.evCaptureFail())
	if !waitUntil(5*time.Second, func() bool { return sink.count(true) >= 4 }) {
		t.Fatalf("nothing got through a listener failing every other request:%s", sink.dump())
	}

	// and recovers
	sink.setStatus(http.StatusOK)
	evWaitDelivered(t, sink, flows, nil, 10*time.Second)
	checkEvStream(t, sink.all(), flows, evStreamOpts{
		secrets: []string{secret}, forbidden: evForbidden(flows, secret), since: since,
	})
	if t.Failed() {
		t.Logf("arrivals:%s", sink.dump())
	}
}

// evReadOutbox reads the dead letters and pending messages straight from
// the store; paybridge must be stopped (Badger opens a directory once).
func evReadOutbox(t *testing.T, storage string) (dead, pending []payment.Message) {
	t.Helper()
	st, err := store.Open(store.Options{Dir: storage, GCInterval: -1})
	if err != nil {
		t.Fatalf("opening the store after paybridge stopped: %v", err)
	}
	defer st.Close()
	dead, err = st.DeadLetters(100)
	if err != nil {
		t.Fatal(err)
	}
	pending, err = st.PendingMessages(100)
	if err != nil {
		t.Fatal(err)
	}
	return dead, pending
}

// adminPost POSTs to the admin endpoint.
func adminPost(t *testing.T, path string) response {
	t.Helper()
	req, err := http.NewRequest(http.MethodPost, "http://"+adminAddr+path, nil)
	if err != nil {
		t.Fatal(err)
	}
	resp, err := (&http.Client{Timeout: 10 * time.Second}).Do(req)
	if err != nil {
		t.Fatalf("POST %s: %v", path, err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return response{Status: resp.StatusCode, Header: resp.Header, Body: b}
}

// Done when #3: a listener that always fails gets its event dead-lettered
// after max_age (1s here; the delivery package's own tests cover aging with
// an injected clock), and the admin API's retry delivers it once the
// listener is back.
func TestEventsDeadLetterAndAdminRetry(t *testing.T) {
	const secret = "events-secret-3"
	const name = "dead-erp"
	sink := newEvSink(t, http.StatusInternalServerError)
	s := newEvSetup(t)
	o := evOpts{maxAge: "1s", endpoints: []evEndpoint{{url: sink.url(), name: name, secrets: []string{secret}}}}
	e := s.start(t, o)
	since := time.Now()

	f := e.newEvFlow("authorize", "tok_visa")
	a := f.authorize(1000, http.StatusOK)
	f.expect("PaymentAuthorized", 1000, a.ref, "")
	dead0 := scrapeMetrics(t).value(t, "paybridge_deliveries_total", "target", name, "outcome", "dead")

	// it dies after max_age: the worker reports it dead
	if !waitUntil(6*time.Second, func() bool {
		return scrapeMetrics(t).value(t, "paybridge_deliveries_total", "target", name, "outcome", "dead") >= dead0+1
	}) {
		t.Fatalf("the event was not dead-lettered after max_age 1s; attempts:%s", sink.dump())
	}
	tries := sink.all()
	if len(tries) < 2 {
		t.Fatalf("%d attempts before the dead letter, want retries:%s", len(tries), sink.dump())
	}
	if span := tries[len(tries)-1].at.Sub(tries[0].at); span < 800*time.Millisecond {
		t.Errorf("attempts spanned %s only, dead-lettered before max_age (1s)", span)
	}

	// Find its sequence number in the store (paybridge stopped), check it
	if err := loadConfig(emptyConfig); err != nil {
		t.Fatal(err)
	}
	dead, pending := evReadOutbox(t, s.storage)
	if len(pending) != 0 || len(dead) != 1 {
		t.Fatalf("outbox: %d pending, %d dead, want 0 and 1: %+v %+v", len(pending), len(dead), pending, dead)
	}
	d := dead[0]
	if d.Kind != "event" || d.Target != name || d.PaymentID != f.paymentID || !d.Dead || d.Attempts < 2 || d.LastError != "HTTP 500" {
		t.Errorf("dead letter %+v", d)
	}
	if !bytes.Equal(d.Body, tries[0].body) {
		t.Errorf("dead letter body %s, what was sent %s", d.Body, tries[0].body)
	}

	// start again, same storage; the listener is back; a dead letter stays dead
	sink.setStatus(http.StatusOK)
	s.start(t, o)
	before := len(sink.all())
	time.Sleep(400 * time.Millisecond) // twice the longest backoff: nothing may be sent
	if n := len(sink.all()); n != before {
		t.Fatalf("a dead letter was sent again without a retry:%s", sink.dump())
	}

	retriedAt := time.Now()
	r := adminPost(t, fmt.Sprintf("/paybridge/outbox/%d/retry", d.Seq))
	if r.Status < 200 || r.Status > 299 {
		t.Fatalf("POST /paybridge/outbox/%d/retry: %s (is caddymodule/admin.go in place?)", d.Seq, r)
	}
	evWaitDelivered(t, sink, []*evFlow{f}, nil, 5*time.Second)
	got := checkEvStream(t, sink.all(), []*evFlow{f}, evStreamOpts{
		secrets: []string{secret}, forbidden: evForbidden([]*evFlow{f}, secret), since: since,
	})
	if evs := got[f.orderID]; len(evs) == 1 {
		if evs[0].at.Before(retriedAt) {
			t.Errorf("delivered before the retry")
		}
		if !bytes.Equal(evs[0].body, tries[0].body) {
			t.Errorf("the retry sent %s, the original was %s", evs[0].body, tries[0].body)
		}
	}
	// signed afresh at send time
	for _, a := range sink.all() {
		if a.ok() {
			if ts := checkEvSignature(t, a, []string{secret}); ts < retriedAt.Unix() {
				t.Errorf("the retried event carries t=%d, older than the retry (%d): not signed at send time", ts, retriedAt.Unix())
			}
		}
	}
	if !waitUntil(3*time.Second, func() bool {
		m := scrapeMetrics(t)
		return m.value(t, "paybridge_dead_letters") == 0 && m.value(t, "paybridge_outbox_pending") == 0
	}) {
		t.Errorf("after the retry was delivered the outbox gauges do not read 0 pending, 0 dead")
	}
}

// Done when #4: Caddy stopped while events wait for a listener that is
// down loses none of them: started again on the same storage, with the
// listener up, every event arrives, in order.
func TestEventsSurviveRestart(t *testing.T) {
	const secret = "events-secret-4"
	sink := newEvSink(t, http.StatusServiceUnavailable)
	s := newEvSetup(t)
	// The endpoint keeps its default name, a digest of its URL: the same URL
	// after the restart must find the queued events.
	o := evOpts{asyncDelay: "1s", endpoints: []evEndpoint{{url: sink.url(), secrets: []string{secret}}}}
	e := s.start(t, o)
	since := time.Now()

	// one still pending at the PSP when Caddy stops (async_delay 1s)
	pendingFlow, _ := e.evAsyncAuth("tok_async pending at the stop", false, 800)
	flows := []*evFlow{pendingFlow, e.evSyncFull(), e.evSyncFull(), e.evVoided(), e.evRefundFail()}
	if !waitUntil(5*time.Second, func() bool {
		orders := map[string]bool{}
		for _, a := range sink.all() {
			var ev evBody
			if json.Unmarshal(a.body, &ev) == nil {
				orders[ev.Purchase["orderId"]] = true
			}
		}
		return len(orders) == len(flows)
	}) {
		t.Fatalf("events were not attempted before the stop:%s", sink.dump())
	}

	if err := loadConfig(emptyConfig); err != nil {
		t.Fatal(err)
	}
	assertStoreReleased(t, s.storage)
	if n := sink.count(true); n != 0 {
		t.Fatalf("%d events accepted by a listener that was down", n)
	}
	sink.setStatus(http.StatusOK)
	s.start(t, o)

	evWaitDelivered(t, sink, flows, nil, 10*time.Second)
	checkEvStream(t, sink.all(), flows, evStreamOpts{
		secrets: []string{secret}, forbidden: evForbidden(flows, secret), since: since,
	})
	if t.Failed() {
		t.Logf("arrivals:%s", sink.dump())
	}
}

// Done when #5: two endpoints, one filtered, get exactly their types.
func TestEventsEndpointFilters(t *testing.T) {
	const secretA, secretB = "events-secret-filtered", "events-secret-all"
	filtered := newEvSink(t, http.StatusOK)
	every := newEvSink(t, http.StatusOK)
	s := newEvSetup(t)
	e := s.start(t, evOpts{endpoints: []evEndpoint{
		{url: filtered.url(), name: "erp-filtered", secrets: []string{secretA}, types: []string{"PaymentAuthorized", "PaymentCaptured"}},
		{url: every.url(), secrets: []string{secretB}},
	}})
	since := time.Now()

	asyncAuth, _ := e.evAsyncAuth("tok_async authorize", false, 800)
	flows := []*evFlow{asyncAuth, e.evSyncFull(), e.evVoided(), e.evDeclined(), e.evCaptureFail(), e.evRefundFail()}
	filter := map[string]bool{"PaymentAuthorized": true, "PaymentCaptured": true}

	evWaitDelivered(t, every, flows, nil, 10*time.Second)
	evWaitDelivered(t, filtered, flows, filter, 10*time.Second)
	gotAll := checkEvStream(t, every.all(), flows, evStreamOpts{
		secrets: []string{secretB}, forbidden: evForbidden(flows, secretA, secretB), since: since,
	})
	gotSome := checkEvStream(t, filtered.all(), flows, evStreamOpts{
		secrets: []string{secretA}, forbidden: evForbidden(flows, secretA, secretB), since: since, filter: filter,
	})

	// compare the sets exactly: the filtered endpoint got the unfiltered
	// one's events of its types, the same events (ids, bytes), nothing else
	set := func(m map[string][]evGot, keep map[string]bool) map[string]string {
		out := map[string]string{}
		for _, evs := range m {
			for _, g := range evs {
				if keep == nil || keep[g.ev.Type] {
					out[fmt.Sprintf("%s/%d/%s/%s", g.ev.Payment.ID, g.ev.Sequence, g.ev.Type, g.ev.ID)] = string(g.body)
				}
			}
		}
		return out
	}
	wantSome, haveSome := set(gotAll, filter), set(gotSome, nil)
	if len(wantSome) == 0 {
		t.Fatal("no event of the filtered types was produced")
	}
	for k, body := range wantSome {
		if b, ok := haveSome[k]; !ok {
			t.Errorf("the filtered endpoint misses %s", k)
		} else if b != body {
			t.Errorf("%s: the endpoints got different bodies:\n %s\n %s", k, b, body)
		}
	}
	for k := range haveSome {
		if _, ok := wantSome[k]; !ok {
			t.Errorf("the filtered endpoint got %s, which is not of its types or not an event the other endpoint got", k)
		}
	}
	// the sink of the filtered endpoint saw no other type, ever
	for _, a := range filtered.all() {
		var ev evBody
		if json.Unmarshal(a.body, &ev) == nil && !filter[ev.Type] {
			t.Errorf("the filtered endpoint was sent a %s", ev.Type)
		}
	}
}

// Done when #6: during a rotation an endpoint with two secrets sends two v1
// values, each verifying with its own secret.
func TestEventsSecretRotation(t *testing.T) {
	const newSecret, oldSecret = "events-secret-new", "events-secret-old"
	sink := newEvSink(t, http.StatusOK)
	s := newEvSetup(t)
	e := s.start(t, evOpts{endpoints: []evEndpoint{{url: sink.url(), secrets: []string{newSecret, oldSecret}}}})
	since := time.Now()

	flows := []*evFlow{e.evVoided()}
	evWaitDelivered(t, sink, flows, nil, 5*time.Second)
	checkEvStream(t, sink.all(), flows, evStreamOpts{
		secrets: []string{newSecret, oldSecret}, forbidden: evForbidden(flows, newSecret, oldSecret), since: since,
	})
	for _, a := range sink.all() {
		h := a.header.Get(signature.Header)
		var ts string
		var v1 []string
		for item := range strings.SplitSeq(h, ",") {
			k, v, _ := strings.Cut(item, "=")
			switch k {
			case "t":
				ts = v
			case "v1":
				v1 = append(v1, v)
			}
		}
		if len(v1) != 2 {
			t.Fatalf("arrival #%d: %d v1 values, want 2: %q", a.n, len(v1), h)
		}
		// each v1 verifies with exactly one of the secrets, and each secret
		// with one v1
		for _, sec := range []string{newSecret, oldSecret} {
			mac := evHMAC(sec, ts, a.body)
			n := 0
			for _, v := range v1 {
				if hmac.Equal([]byte(v), []byte(mac)) {
					n++
				}
			}
			if n != 1 {
				t.Errorf("arrival #%d: %d v1 values match HMAC with %q, want 1: %q", a.n, n, sec, h)
			}
		}
		if v1[0] == v1[1] {
			t.Errorf("arrival #%d: both v1 values are equal", a.n)
		}
	}
}

// A `secret` or `types` line without values is a mistake even after a line
// that gave some: it is refused where it is, not taken as nothing.
func TestEventsBareListLineRefused(t *testing.T) {
	adapter := caddyconfig.GetAdapter("caddyfile")
	for _, line := range []string{"secret", "types"} {
		events := "events {\n\t\t\tendpoint https://erp.example/hook {\n\t\t\t\tsecret s1\n\t\t\t\ttypes PaymentAuthorized\n\t\t\t\t" + line + "\n\t\t\t}\n\t\t}"
		cfg := clConfig(t, sandboxGW+"\n\t\t"+events, "shared_secret s\n\t\t\tcallback_url http://127.0.0.1:1/cb")
		_, _, err := adapter.Adapt([]byte(cfg), map[string]any{"filename": "Caddyfile"})
		if err == nil || !strings.Contains(err.Error(), "Caddyfile:") {
			t.Errorf("a bare %q line: %v, want an error naming its line", line, err)
		}
	}
}
