package sandbox

import (
	"context"
	"errors"
	"fmt"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/paybridge/caddy-paybridge/payment"
)

// clock is a fake clock safe for concurrent use.
type clock struct {
	mu sync.Mutex
	t  time.Time
}

func newClock() *clock { return &clock{t: time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)} }

func (c *clock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}

func (c *clock) Set(t time.Time) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.t = t
}

const (
	testDelay  = 2 * time.Second
	testOutage = 10 * time.Second
)

func newSandbox(t testing.TB, c *clock, ledger string) *Sandbox {
	t.Helper()
	s, err := New(Config{AsyncDelay: testDelay, Outage: testOutage, Ledger: ledger, Now: c.Now})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	return s
}

var kinds = []payment.Kind{payment.Authorize, payment.Capture, payment.Void, payment.Refund}

// describe reduces an answer to one word: "ok", "pending", "3ds" (pending
// on the customer), "fault", or the decline code.
func describe(t *testing.T, res payment.Result, err error) string {
	t.Helper()
	if err != nil {
		var f *payment.Fault
		if !errors.As(err, &f) {
			t.Fatalf("error %v is not a *payment.Fault", err)
		}
		if f.Sent {
			t.Errorf("simulated fault has Sent true: %v", err)
		}
		if !errors.Is(err, ErrUnreachable) {
			t.Errorf("fault %v does not wrap ErrUnreachable", err)
		}
		return "fault"
	}
	switch res.Outcome {
	case payment.OutcomeSucceeded:
		return "ok"
	case payment.OutcomePending:
		if res.AuthRequired {
			return "3ds"
		}
		return "pending"
	case payment.OutcomeDeclined:
		if res.Message == "" {
			t.Errorf("decline %s has no message", res.Code)
		}
		return res.Code
	}
	t.Fatalf("unexpected outcome %v", res.Outcome)
	return ""
}

// phases of the table test; at is the time after the operation's creation.
var phases = []struct {
	name    string
	at      time.Duration
	status  bool
	attempt int
}{
	{"execute", 0, false, 1},
	{"execute attempt 3", 0, false, 3},
	{"status before delay", time.Second, true, 1},
	{"status after delay in outage", 5 * time.Second, true, 1},
	{"execute after outage", 11 * time.Second, false, 1},
	{"status after outage", 11 * time.Second, true, 1},
}

// expectations lists, per phase, the outcome every kind has, with per-kind
// overrides.
type expectation struct {
	all  [6]string
	kind map[payment.Kind][6]string
}

var (
	allOK      = [6]string{"ok", "ok", "ok", "ok", "ok", "ok"}
	allDecline = [6]string{"card_declined", "card_declined", "card_declined", "card_declined", "card_declined", "card_declined"}
)

func only(k payment.Kind, w [6]string) map[payment.Kind][6]string {
	return map[payment.Kind][6]string{k: w}
}

var behaviourTable = map[string]expectation{
	"tok_unavailable":             {all: [6]string{"fault", "fault", "fault", "fault", "fault", "fault"}},
	"tok_outage_1a2b":             {all: [6]string{"fault", "fault", "fault", "fault", "ok", "ok"}},
	"tok_flaky_1a2b":              {all: [6]string{"fault", "ok", "ok", "ok", "fault", "ok"}},
	"tok_decline":                 {all: allDecline},
	"tok_decline_9z9z":            {all: allDecline},
	"tok_insufficient_funds_abcd": {all: allOK, kind: only(payment.Authorize, [6]string{"insufficient_funds", "insufficient_funds", "insufficient_funds", "insufficient_funds", "insufficient_funds", "insufficient_funds"})},
	"tok_async":                   {all: [6]string{"pending", "pending", "pending", "ok", "pending", "ok"}},
	"tok_async_77aa":              {all: [6]string{"pending", "pending", "pending", "ok", "pending", "ok"}},
	"tok_async_decline_7f3a":      {all: allOK, kind: only(payment.Authorize, [6]string{"pending", "pending", "pending", "card_declined", "pending", "card_declined"})},
	"tok_3ds_0001":                {all: allOK, kind: only(payment.Authorize, [6]string{"3ds", "3ds", "3ds", "ok", "3ds", "ok"})},
	"tok_capture_fail_x1":         {all: allOK, kind: only(payment.Capture, [6]string{"capture_declined", "capture_declined", "capture_declined", "capture_declined", "capture_declined", "capture_declined"})},
	"tok_refund_fail_x1":          {all: allOK, kind: only(payment.Refund, [6]string{"refund_declined", "refund_declined", "refund_declined", "refund_declined", "refund_declined", "refund_declined"})},
	"tok_visa_91c2":               {all: allOK},
	"":                            {all: allOK},
}

func TestBehaviourTable(t *testing.T) {
	c := newClock()
	ledger := filepath.Join(t.TempDir(), "ledger")
	s := newSandbox(t, c, ledger)
	// Status is asked of operations this table never executed: a sandbox
	// without a ledger answers them from the token alone (with one, it
	// knows they never ran; see TestStatusWithLedgerKnowsWhatRan).
	stateless := newSandbox(t, c, "")
	created := c.Now()
	executed := map[string]bool{} // ledger keys expected
	n := 0
	for token, exp := range behaviourTable {
		for _, kind := range kinds {
			want := exp.all
			if w, ok := exp.kind[kind]; ok {
				want = w
			}
			for i, ph := range phases {
				n++
				op := payment.Operation{
					Kind: kind, PaymentID: "pay_1", Key: fmt.Sprintf("key_%d", n),
					SourceToken: token, Amount: 1000, Currency: "EUR",
					CreatedAt: created, Attempt: ph.attempt,
				}
				name := fmt.Sprintf("%s/%s/%s", token, kind, ph.name)
				c.Set(created.Add(ph.at))
				var res payment.Result
				var err error
				if ph.status {
					res, err = stateless.Status(context.Background(), op)
				} else {
					res, err = s.Execute(context.Background(), op)
				}
				got := describe(t, res, err)
				if got != want[i] {
					t.Errorf("%s: got %s, want %s", name, got, want[i])
					continue
				}
				if err != nil {
					continue
				}
				if !ph.status && (got == "ok" || got == "pending" || got == "3ds") {
					executed[op.Key] = true
				}
				if res.Ref != Ref(op.Key) || !strings.HasPrefix(res.Ref, "sbx_") || len(res.Ref) != 4+24 {
					t.Errorf("%s: ref %q", name, res.Ref)
				}
				if res.Details["brand"] != "sandbox" || res.Details["last4"] != last4(token, Behaviour(token)) {
					t.Errorf("%s: details %v", name, res.Details)
				}
				if got == "pending" || got == "3ds" {
					wantAfter := max(created.Add(testDelay).Sub(c.Now()), 0)
					if res.CheckAfter != wantAfter {
						t.Errorf("%s: CheckAfter %s, want %s", name, res.CheckAfter, wantAfter)
					}
				} else if res.CheckAfter != 0 || res.AuthRequired {
					t.Errorf("%s: settled result with CheckAfter %s AuthRequired %v", name, res.CheckAfter, res.AuthRequired)
				}
			}
		}
	}
	entries, err := ReadLedger(ledger)
	if err != nil {
		t.Fatal(err)
	}
	if len(entries) != len(executed) {
		t.Errorf("ledger has %d lines, want %d", len(entries), len(executed))
	}
	for _, e := range entries {
		if !executed[e.Key] {
			t.Errorf("ledger line for an operation not executed: %+v", e)
		}
		delete(executed, e.Key) // a second line with the key fails above
	}
	for k := range executed {
		t.Errorf("executed operation %s missing from the ledger", k)
	}
}

func TestBehaviour(t *testing.T) {
	for token, want := range map[string]string{
		"tok_async":                   "tok_async",
		"tok_async_1":                 "tok_async",
		"tok_async_decline":           "tok_async_decline",
		"tok_async_decline_7f3a":      "tok_async_decline",
		"tok_asyncdecline":            "tok_async",
		"tok_decline_x":               "tok_decline",
		"tok_insufficient_funds_1":    "tok_insufficient_funds",
		"tok_3ds":                     "tok_3ds",
		"tok_capture_fail_a":          "tok_capture_fail",
		"tok_refund_fail_a":           "tok_refund_fail",
		"tok_flaky_a":                 "tok_flaky",
		"tok_outage_a":                "tok_outage",
		"tok_unavailable_a":           "tok_unavailable",
		"tok_visa_91c2":               "",
		"tok_expired_7":               "tok_expired",
		"tok_asyn":                    "",
		"TOK_DECLINE":                 "",
		"x_tok_decline":               "",
		"":                            "",
		"tok_decline_saved_0123abcd":  "tok_decline",
		"tok_async_decline_saved_abc": "tok_async_decline",
	} {
		if got := Behaviour(token); got != want {
			t.Errorf("Behaviour(%q) = %q, want %q", token, got, want)
		}
	}
	if len(Tokens()) != 11 {
		t.Errorf("Tokens() = %v", Tokens())
	}
	for _, tok := range Tokens() {
		if Behaviour(tok) != tok {
			t.Errorf("Behaviour(%q) = %q", tok, Behaviour(tok))
		}
	}
}

func TestLast4(t *testing.T) {
	for token, want := range map[string]string{
		"tok_visa_91c2":          "91c2",
		"tok_async_decline_7f3a": "7f3a",
		"tok_async_decline":      "0000",
		"tok_async_ab":           "0000",
		"tok_3ds_12_34":          "1234",
		"4242":                   "0000",
		"x4242":                  "4242",
		"":                       "0000",
	} {
		if got := last4(token, Behaviour(token)); got != want {
			t.Errorf("last4(%q) = %q, want %q", token, got, want)
		}
	}
}

func TestFlakyAttempts(t *testing.T) {
	c := newClock()
	s := newSandbox(t, c, "")
	op := payment.Operation{Kind: payment.Capture, Key: "k", SourceToken: "tok_flaky_3", CreatedAt: c.Now(), Amount: 5, Currency: "USD"}
	for attempt, want := range []string{1: "fault", 2: "fault", 3: "ok", 4: "ok", 10: "ok"} {
		if want == "" {
			continue
		}
		op.Attempt = attempt
		res, err := s.Execute(context.Background(), op)
		if got := describe(t, res, err); got != want {
			t.Errorf("attempt %d: got %s, want %s", attempt, got, want)
		}
		// Status of a flaky operation: it succeeded, whatever the attempt.
		res, err = s.Status(context.Background(), op)
		if got := describe(t, res, err); got != "ok" {
			t.Errorf("status at attempt %d: got %s", attempt, got)
		}
	}
}

func TestOutageWindow(t *testing.T) {
	c := newClock()
	s := newSandbox(t, c, "")
	created := c.Now()
	op := payment.Operation{Kind: payment.Authorize, Key: "k", SourceToken: "tok_outage_w", CreatedAt: created, Attempt: 1}
	for at, want := range map[time.Duration]string{
		0:                                "fault",
		testOutage - time.Nanosecond:     "fault",
		testOutage:                       "ok",
		testOutage + time.Hour:           "ok",
		-time.Second:                     "fault",
		testOutage / 2:                   "fault",
		testOutage + time.Nanosecond*100: "ok",
	} {
		c.Set(created.Add(at))
		res, err := s.Execute(context.Background(), op)
		if got := describe(t, res, err); got != want {
			t.Errorf("execute at +%s: got %s, want %s", at, got, want)
		}
		res, err = s.Status(context.Background(), op)
		if got := describe(t, res, err); got != want {
			t.Errorf("status at +%s: got %s, want %s", at, got, want)
		}
	}
}

func TestAsyncBoundary(t *testing.T) {
	c := newClock()
	s := newSandbox(t, c, "")
	created := c.Now()
	op := payment.Operation{Kind: payment.Void, Key: "k", SourceToken: "tok_async", CreatedAt: created, Attempt: 1}
	c.Set(created.Add(testDelay - time.Nanosecond))
	res, err := s.Status(context.Background(), op)
	if got := describe(t, res, err); got != "pending" || res.CheckAfter != time.Nanosecond {
		t.Errorf("just before the delay: %s, CheckAfter %s", got, res.CheckAfter)
	}
	c.Set(created.Add(testDelay))
	res, err = s.Status(context.Background(), op)
	if got := describe(t, res, err); got != "ok" {
		t.Errorf("at the delay: %s", got)
	}
}

func TestDefaults(t *testing.T) {
	c := newClock()
	s, err := New(Config{Now: c.Now})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	created := c.Now()
	res, err := s.Execute(context.Background(), payment.Operation{Kind: payment.Authorize, Key: "k", SourceToken: "tok_async", CreatedAt: created, Attempt: 1})
	if err != nil || res.CheckAfter != 2*time.Second {
		t.Errorf("default async delay: %+v, %v", res, err)
	}
	op := payment.Operation{Kind: payment.Authorize, Key: "k", SourceToken: "tok_outage", CreatedAt: created, Attempt: 1}
	c.Set(created.Add(10*time.Second - time.Millisecond))
	if _, err := s.Execute(context.Background(), op); err == nil {
		t.Error("default outage over before 10s")
	}
	c.Set(created.Add(10 * time.Second))
	if _, err := s.Execute(context.Background(), op); err != nil {
		t.Errorf("default outage lasts past 10s: %v", err)
	}

	// The real clock by default.
	s2, err := New(Config{})
	if err != nil {
		t.Fatal(err)
	}
	defer s2.Close()
	res, err = s2.Execute(context.Background(), payment.Operation{Kind: payment.Authorize, Key: "k", SourceToken: "tok_async", CreatedAt: time.Now(), Attempt: 1})
	if err != nil || res.Outcome != payment.OutcomePending || res.CheckAfter <= 0 || res.CheckAfter > 2*time.Second {
		t.Errorf("real clock: %+v, %v", res, err)
	}
}

func TestNewErrors(t *testing.T) {
	for _, cfg := range []Config{
		{AsyncDelay: -1},
		{Outage: -time.Second},
		{Ledger: filepath.Join(t.TempDir(), "missing", "dir", "ledger")},
	} {
		if s, err := New(cfg); err == nil {
			s.Close()
			t.Errorf("New(%+v) succeeded", cfg)
		}
	}
}

func TestRefAndDetails(t *testing.T) {
	c := newClock()
	s := newSandbox(t, c, "")
	op := payment.Operation{Kind: payment.Authorize, Key: "pay_1:authorize", SourceToken: "tok_visa_91c2", CreatedAt: c.Now(), Attempt: 1}
	r1, _ := s.Execute(context.Background(), op)
	op.Attempt = 2
	r2, _ := s.Execute(context.Background(), op)
	r3, _ := s.Status(context.Background(), op)
	// Known value: sha256("pay_1:authorize").
	if r1.Ref != r2.Ref || r1.Ref != r3.Ref || r1.Ref != "sbx_"+hashHex("pay_1:authorize", 24) {
		t.Errorf("refs differ for one key: %s %s %s", r1.Ref, r2.Ref, r3.Ref)
	}
	op.Key = "pay_1:capture"
	if r4, _ := s.Execute(context.Background(), op); r4.Ref == r1.Ref {
		t.Error("different keys share a reference")
	}
	for _, v := range r1.Details {
		if strings.Contains(v, op.SourceToken) {
			t.Errorf("details reveal the token: %v", r1.Details)
		}
	}
	// Details maps are not shared between results.
	r1.Details["last4"] = "xxxx"
	if r2.Details["last4"] != "91c2" {
		t.Error("results share their Details map")
	}
}

func TestUnsupportedKind(t *testing.T) {
	c := newClock()
	ledger := filepath.Join(t.TempDir(), "ledger")
	s := newSandbox(t, c, ledger)
	res, err := s.Execute(context.Background(), payment.Operation{Kind: "chargeback", Key: "k", SourceToken: "tok_visa", CreatedAt: c.Now(), Attempt: 1})
	if err != nil || res.Outcome != payment.OutcomeDeclined || res.Code != CodeUnsupported {
		t.Errorf("unknown kind: %+v, %v", res, err)
	}
	if entries, _ := ReadLedger(ledger); len(entries) != 0 {
		t.Errorf("ledger: %v", entries)
	}
}

func TestContextDone(t *testing.T) {
	c := newClock()
	ledger := filepath.Join(t.TempDir(), "ledger")
	s := newSandbox(t, c, ledger)
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	op := payment.Operation{Kind: payment.Authorize, Key: "k", SourceToken: "tok_visa", CreatedAt: c.Now(), Attempt: 1}
	check := func(what string, err error) {
		t.Helper()
		var f *payment.Fault
		if !errors.As(err, &f) || !f.Sent || !errors.Is(err, context.Canceled) {
			t.Errorf("%s with a done context: %v", what, err)
		}
	}
	_, err := s.Execute(ctx, op)
	check("Execute", err)
	_, err = s.Status(ctx, op)
	check("Status", err)
	_, err = s.Vault(ctx, payment.VaultRequest{Key: "v", SourceToken: "tok_visa", CreatedAt: c.Now(), Attempt: 1})
	check("Vault", err)
	if entries, _ := ReadLedger(ledger); len(entries) != 0 {
		t.Errorf("ledger after done contexts: %v", entries)
	}
}

func TestClosed(t *testing.T) {
	c := newClock()
	ledger := filepath.Join(t.TempDir(), "ledger")
	for _, path := range []string{"", ledger} {
		s := newSandbox(t, c, path)
		op := payment.Operation{Kind: payment.Authorize, Key: "k", SourceToken: "tok_visa", CreatedAt: c.Now(), Attempt: 1}
		if _, err := s.Execute(context.Background(), op); err != nil {
			t.Fatal(err)
		}
		if err := s.Close(); err != nil {
			t.Fatal(err)
		}
		if err := s.Close(); err != nil {
			t.Errorf("second Close: %v", err)
		}
		var f *payment.Fault
		if _, err := s.Execute(context.Background(), op); !errors.As(err, &f) || f.Sent || !errors.Is(err, ErrClosed) {
			t.Errorf("Execute after Close: %v", err)
		}
		if _, err := s.Vault(context.Background(), payment.VaultRequest{Key: "v", SourceToken: "tok_visa", Attempt: 1}); !errors.As(err, &f) || f.Sent {
			t.Errorf("Vault after Close: %v", err)
		}
		if res, err := s.Status(context.Background(), op); err != nil || res.Outcome != payment.OutcomeSucceeded {
			t.Errorf("Status after Close: %+v, %v", res, err)
		}
	}
}

// TestStatusAfterRestart: a new Sandbox, with the same clock and no state
// carried over, answers status queries as the old one would have.
func TestStatusAfterRestart(t *testing.T) {
	c := newClock()
	ledger := filepath.Join(t.TempDir(), "ledger")
	created := c.Now()
	var ops []payment.Operation
	for token := range behaviourTable {
		for _, kind := range kinds {
			ops = append(ops, payment.Operation{
				Kind: kind, Key: token + ":" + string(kind), SourceToken: token,
				Amount: 100, Currency: "EUR", CreatedAt: created, Attempt: 3,
			})
		}
	}
	type answer struct {
		res payment.Result
		err string
	}
	ask := func(s *Sandbox) []answer {
		var out []answer
		for _, op := range ops {
			res, err := s.Status(context.Background(), op)
			a := answer{res: res}
			if err != nil {
				a.err = err.Error()
			}
			out = append(out, a)
		}
		return out
	}
	first := newSandbox(t, c, ledger)
	for _, op := range ops {
		first.Execute(context.Background(), op)
	}
	before, _ := ReadLedger(ledger)
	var early1, late1 [][]answer
	for _, at := range []time.Duration{time.Second, 5 * time.Second, 11 * time.Second} {
		c.Set(created.Add(at))
		early1 = append(early1, ask(first))
	}
	first.Close()

	second := newSandbox(t, c, ledger)
	for _, at := range []time.Duration{time.Second, 5 * time.Second, 11 * time.Second} {
		c.Set(created.Add(at))
		late1 = append(late1, ask(second))
	}
	for i := range early1 {
		for j := range ops {
			a, b := early1[i][j], late1[i][j]
			if fmt.Sprint(a) != fmt.Sprint(b) {
				t.Errorf("%s at phase %d: before restart %+v, after %+v", ops[j].Key, i, a, b)
			}
		}
	}
	if after, _ := ReadLedger(ledger); len(after) != len(before) {
		t.Errorf("Status wrote the ledger: %d lines before, %d after", len(before), len(after))
	}
}

func TestVault(t *testing.T) {
	c := newClock()
	ledger := filepath.Join(t.TempDir(), "ledger")
	s := newSandbox(t, c, ledger)
	ctx := context.Background()
	req := payment.VaultRequest{Key: "vault_1", SourceToken: "tok_3ds_ab12", CustomerEmail: "Ada@Example.com", CreatedAt: c.Now(), Attempt: 1}
	r1, err := s.Vault(ctx, req)
	if err != nil || r1.Declined {
		t.Fatalf("vault: %+v, %v", r1, err)
	}
	if want := "cus_" + hashHex("ada@example.com", 20); r1.CustomerToken != want || len(r1.CustomerToken) != 24 {
		t.Errorf("customer token %q, want %q", r1.CustomerToken, want)
	}
	if want := "tok_3ds_ab12_saved_" + hashHex("vault_1", 16); r1.SourceToken != want {
		t.Errorf("source token %q, want %q", r1.SourceToken, want)
	}
	if Behaviour(r1.SourceToken) != Tok3DS {
		t.Errorf("saved token lost its behaviour: %q", r1.SourceToken)
	}
	// Deterministic per key; the customer follows the e-mail address.
	r2, _ := s.Vault(ctx, req)
	req2 := req
	req2.Key, req2.CustomerEmail = "vault_2", "ada@example.com"
	r3, _ := s.Vault(ctx, req2)
	if r1 != r2 {
		t.Errorf("same key, different answers: %+v %+v", r1, r2)
	}
	if r3.CustomerToken != r1.CustomerToken || r3.SourceToken == r1.SourceToken {
		t.Errorf("other key: %+v", r3)
	}
	// Without an e-mail address the customer is named after the key.
	req3 := req
	req3.CustomerEmail = ""
	r4, _ := s.Vault(ctx, req3)
	if r4.CustomerToken != "cus_"+hashHex("vault_1", 20) {
		t.Errorf("customer without e-mail: %q", r4.CustomerToken)
	}

	// Declines and faults write nothing.
	if r, err := s.Vault(ctx, payment.VaultRequest{Key: "d", SourceToken: "tok_decline_1", Attempt: 1}); err != nil || !r.Declined || r.Code != CodeCardDeclined || r.Message == "" {
		t.Errorf("tok_decline vault: %+v, %v", r, err)
	}
	for _, tc := range []struct {
		req  payment.VaultRequest
		want string
	}{
		{payment.VaultRequest{Key: "u", SourceToken: "tok_unavailable", Attempt: 5}, "fault"},
		{payment.VaultRequest{Key: "f", SourceToken: "tok_flaky_v", Attempt: 2}, "fault"},
		{payment.VaultRequest{Key: "f", SourceToken: "tok_flaky_v", Attempt: 3}, "ok"},
		{payment.VaultRequest{Key: "o", SourceToken: "tok_outage_v", CreatedAt: c.Now().Add(-time.Second), Attempt: 1}, "fault"},
		{payment.VaultRequest{Key: "o", SourceToken: "tok_outage_v", CreatedAt: c.Now().Add(-testOutage), Attempt: 1}, "ok"},
		{payment.VaultRequest{Key: "i", SourceToken: "tok_insufficient_funds", Attempt: 1}, "ok"},
		{payment.VaultRequest{Key: "a", SourceToken: "tok_async_decline", Attempt: 1}, "ok"},
	} {
		r, err := s.Vault(ctx, tc.req)
		got := "ok"
		if err != nil {
			var f *payment.Fault
			if !errors.As(err, &f) || f.Sent || !errors.Is(err, ErrUnreachable) {
				t.Errorf("%+v: %v", tc.req, err)
			}
			got = "fault"
		} else if r.Declined {
			got = r.Code
		}
		if got != tc.want {
			t.Errorf("vault %+v: got %s, want %s", tc.req, got, tc.want)
		}
	}

	entries, err := ReadLedger(ledger)
	if err != nil {
		t.Fatal(err)
	}
	var keys []string
	for _, e := range entries {
		if e.Op != "vault" || e.Amount != 0 || e.Currency != "" {
			t.Errorf("vault entry %+v", e)
		}
		keys = append(keys, e.Key)
	}
	// A key executed once is answered again without a second ledger line,
	// as a PSP honours an idempotency key.
	if got, want := strings.Join(keys, ","), "vault_1,vault_2,f,o,i,a"; got != want {
		t.Errorf("vault ledger keys %s, want %s", got, want)
	}
}

func TestConcurrentExecute(t *testing.T) {
	c := newClock()
	ledger := filepath.Join(t.TempDir(), "ledger")
	s := newSandbox(t, c, ledger)
	const workers, each = 8, 25
	var wg sync.WaitGroup
	for w := range workers {
		wg.Go(func() {
			for i := range each {
				token := "tok_visa"
				if i%5 == 0 {
					token = "tok_decline"
				}
				op := payment.Operation{Kind: payment.Capture, Key: fmt.Sprintf("w%d_%d", w, i), SourceToken: token, Amount: int64(i), Currency: "EUR", CreatedAt: c.Now(), Attempt: 1}
				if _, err := s.Execute(context.Background(), op); err != nil {
					t.Error(err)
				}
				s.Status(context.Background(), op)
			}
		})
	}
	wg.Wait()
	entries, err := ReadLedger(ledger)
	if err != nil {
		t.Fatal(err)
	}
	if want := workers * each * 4 / 5; len(entries) != want {
		t.Errorf("%d ledger lines, want %d", len(entries), want)
	}
	seen := map[string]bool{}
	for _, e := range entries {
		if seen[e.Key] {
			t.Errorf("duplicate key %s", e.Key)
		}
		seen[e.Key] = true
	}
}

func BenchmarkExecute(b *testing.B) {
	s, err := New(Config{})
	if err != nil {
		b.Fatal(err)
	}
	defer s.Close()
	ctx := context.Background()
	op := payment.Operation{Kind: payment.Authorize, PaymentID: "pay_1", Key: "pay_1:authorize:0123456789abcdef", SourceToken: "tok_visa_91c2", Amount: 1999, Currency: "EUR", CreatedAt: time.Now(), Attempt: 1}
	b.ReportAllocs()
	for b.Loop() {
		if _, err := s.Execute(ctx, op); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkExecuteLedger(b *testing.B) {
	s, err := New(Config{Ledger: filepath.Join(b.TempDir(), "ledger")})
	if err != nil {
		b.Fatal(err)
	}
	defer s.Close()
	ctx := context.Background()
	op := payment.Operation{Kind: payment.Authorize, PaymentID: "pay_1", Key: "pay_1:authorize:0123456789abcdef", SourceToken: "tok_visa_91c2", Amount: 1999, Currency: "EUR", CreatedAt: time.Now(), Attempt: 1}
	b.ReportAllocs()
	for b.Loop() {
		if _, err := s.Execute(ctx, op); err != nil {
			b.Fatal(err)
		}
	}
}

func TestValidationAndRevalidation(t *testing.T) {
	s, err := New(Config{})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	op := func(kind payment.Kind, token string) payment.Result {
		t.Helper()
		res, err := s.Execute(context.Background(), payment.Operation{Kind: kind, Key: "k-" + string(kind) + token, SourceToken: token, Ref: token, CreatedAt: time.Now(), Attempt: 1})
		if err != nil {
			t.Fatal(err)
		}
		return res
	}
	if r := op(payment.Validate, "tok_visa_1"); r.Outcome != payment.OutcomeSucceeded {
		t.Errorf("validate of a good authorization: %+v", r)
	}
	if r := op(payment.Validate, "tok_expired_1"); r.Outcome != payment.OutcomeDeclined || r.Code != CodeExpired {
		t.Errorf("validate of an expired authorization: %+v", r)
	}
	if r := op(payment.Revalidate, "tok_visa_2"); r.Outcome != payment.OutcomeSucceeded || r.Ref != "tok_visa_2" {
		t.Errorf("revalidate of a good authorization keeps its reference: %+v", r)
	}
	if r := op(payment.Revalidate, "tok_expired_2"); r.Outcome != payment.OutcomeSucceeded || r.Ref == "tok_expired_2" || r.Ref == "" {
		t.Errorf("revalidate of an expired authorization gives a new reference: %+v", r)
	}
	if r := op(payment.Capture, "tok_expired_3"); r.Outcome != payment.OutcomeSucceeded {
		t.Errorf("capture with tok_expired: %+v", r)
	}
}

// With a ledger, the sandbox knows what it executed, as a PSP does: a
// status query for an operation it never ran under that key says so (a
// caller verifying a lost answer must not take it for done), and one it
// ran is answered as the table says, also by a new sandbox on the same
// ledger after a restart.
func TestStatusWithLedgerKnowsWhatRan(t *testing.T) {
	c := newClock()
	ledger := filepath.Join(t.TempDir(), "ledger")
	s := newSandbox(t, c, ledger)
	op := payment.Operation{Kind: payment.Capture, PaymentID: "pay_1", Key: "key_ran", SourceToken: "tok_visa_1",
		Amount: 1000, Currency: "EUR", CreatedAt: c.Now(), Attempt: 1}
	never := op
	never.Key = "key_never_ran"
	if got := describeStatus(t, s, never); got != CodeNotExecuted {
		t.Errorf("status of an operation never executed: %s, want %s", got, CodeNotExecuted)
	}
	if got := describeExecute(t, s, op); got != "ok" {
		t.Fatalf("execute: %s", got)
	}
	if got := describeStatus(t, s, op); got != "ok" {
		t.Errorf("status of the executed operation: %s", got)
	}
	s.Close()
	keySetsMu.Lock()
	keySets = map[string]*keySet{} // a new process reads the ledger again
	keySetsMu.Unlock()
	restarted := newSandbox(t, c, ledger)
	if got := describeStatus(t, restarted, op); got != "ok" {
		t.Errorf("status of the executed operation after a restart: %s", got)
	}
	if got := describeStatus(t, restarted, never); got != CodeNotExecuted {
		t.Errorf("status of an operation never executed, after a restart: %s", got)
	}
}

func describeStatus(t *testing.T, s *Sandbox, op payment.Operation) string {
	t.Helper()
	res, err := s.Status(context.Background(), op)
	return describe(t, res, err)
}

func describeExecute(t *testing.T, s *Sandbox, op payment.Operation) string {
	t.Helper()
	res, err := s.Execute(context.Background(), op)
	return describe(t, res, err)
}
