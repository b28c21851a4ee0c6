package sandbox

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/paybridge/caddy-paybridge/payment"
)

func TestLedger(t *testing.T) {
	c := newClock()
	ledger := filepath.Join(t.TempDir(), "ledger")
	s := newSandbox(t, c, ledger)
	ctx := context.Background()
	created := c.Now()
	exec := func(kind payment.Kind, key, token string, amount int64, attempt int) {
		t.Helper()
		s.Execute(ctx, payment.Operation{Kind: kind, Key: key, SourceToken: token, Amount: amount, Currency: "EUR", CreatedAt: created, Attempt: attempt})
	}
	exec(payment.Authorize, "pay_1:auth", "tok_visa_1", 1999, 1)                                                       // executed
	exec(payment.Authorize, "pay_2:auth", "tok_decline", 1999, 1)                                                      // declined: no line
	exec(payment.Authorize, "pay_3:auth", "tok_flaky", 500, 1)                                                         // fault: no line
	exec(payment.Authorize, "pay_3:auth", "tok_flaky", 500, 3)                                                         // executed
	exec(payment.Capture, "pay_4:capture", "tok_async", 700, 1)                                                        // pending: executed
	exec(payment.Capture, "pay_5:capture", "tok_capture_fail", 700, 1)                                                 // declined: no line
	exec(payment.Refund, "pay 6 %refund\n", "tok_visa", 1, 1)                                                          // odd key, escaped
	exec(payment.Void, "", "tok_visa", 0, 1)                                                                           // empty key
	exec(payment.Void, "-", "tok_visa", 0, 1)                                                                          // key "-"
	exec(payment.Authorize, "pay_7:auth", "tok_unavailable", 1, 1)                                                     // fault: no line
	s.Status(ctx, payment.Operation{Kind: payment.Capture, Key: "pay_8", SourceToken: "tok_visa", CreatedAt: created}) // never a line

	raw, err := os.ReadFile(ledger)
	if err != nil {
		t.Fatal(err)
	}
	lines := strings.Split(strings.TrimSuffix(string(raw), "\n"), "\n")
	if len(lines) != 6 {
		t.Fatalf("ledger:\n%s", raw)
	}
	stamp := created.Format(time.RFC3339Nano)
	if want := stamp + " authorize pay_1:auth 1999 EUR"; lines[0] != want {
		t.Errorf("line 1 %q, want %q", lines[0], want)
	}
	if want := stamp + " refund pay%206%20%25refund%0A 1 EUR"; lines[3] != want {
		t.Errorf("line 4 %q, want %q", lines[3], want)
	}

	entries, err := ReadLedger(ledger)
	if err != nil {
		t.Fatal(err)
	}
	want := []Entry{
		{created, "authorize", "pay_1:auth", 1999, "EUR"},
		{created, "authorize", "pay_3:auth", 500, "EUR"},
		{created, "capture", "pay_4:capture", 700, "EUR"},
		{created, "refund", "pay 6 %refund\n", 1, "EUR"},
		{created, "void", "", 0, "EUR"},
		{created, "void", "-", 0, "EUR"},
	}
	if len(entries) != len(want) {
		t.Fatalf("entries %+v", entries)
	}
	for i := range want {
		if !entries[i].Time.Equal(want[i].Time) || entries[i].Op != want[i].Op || entries[i].Key != want[i].Key ||
			entries[i].Amount != want[i].Amount || entries[i].Currency != want[i].Currency {
			t.Errorf("entry %d: %+v, want %+v", i, entries[i], want[i])
		}
	}

	// A new sandbox (a restart) appends to the same ledger.
	s.Close()
	c.Set(created.Add(time.Minute))
	s2 := newSandbox(t, c, ledger)
	s2.Execute(ctx, payment.Operation{Kind: payment.Capture, Key: "pay_1:capture", SourceToken: "tok_visa_1", Amount: 1999, Currency: "EUR", CreatedAt: created, Attempt: 1})
	entries, err = ReadLedger(ledger)
	if err != nil {
		t.Fatal(err)
	}
	if len(entries) != 7 || entries[6].Key != "pay_1:capture" || !entries[6].Time.Equal(created.Add(time.Minute)) {
		t.Errorf("after restart: %+v", entries)
	}
}

func TestReadLedgerDamage(t *testing.T) {
	dir := t.TempDir()
	good := "2026-03-01T12:00:00Z authorize k1 100 EUR\n2026-03-01T12:00:01.5Z vault k2 0 -\n"
	write := func(name, content string) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, []byte(content), 0o600); err != nil {
			t.Fatal(err)
		}
		return p
	}
	for name, tc := range map[string]struct {
		content string
		n       int
		fail    bool
	}{
		"good":              {good, 2, false},
		"empty":             {"", 0, false},
		"torn last line":    {good + "2026-03-01T12:00:02Z capt", 2, false},
		"unterminated good": {good + "2026-03-01T12:00:02Z capture k3 5 EUR", 3, false},
		"bad middle line":   {"garbage\n" + good, 0, true},
		"bad amount":        {"2026-03-01T12:00:00Z authorize k1 1x0 EUR\n", 0, true},
		"bad time":          {"yesterday authorize k1 100 EUR\n", 0, true},
		"bad escape":        {"2026-03-01T12:00:00Z authorize k%zz 100 EUR\n", 0, true},
		"truncated escape":  {"2026-03-01T12:00:00Z authorize k%2 100 EUR\n", 0, true},
		"too many fields":   {"2026-03-01T12:00:00Z authorize k 1 100 EUR\n", 0, true},
	} {
		entries, err := ReadLedger(write(strings.ReplaceAll(name, " ", "_"), tc.content))
		if (err != nil) != tc.fail || (!tc.fail && len(entries) != tc.n) {
			t.Errorf("%s: %d entries, error %v", name, len(entries), err)
		}
	}
	if _, err := ReadLedger(filepath.Join(dir, "missing")); err == nil {
		t.Error("missing ledger read")
	}
}

func TestFieldEscaping(t *testing.T) {
	for _, s := range []string{"", "-", "--", "a b", "%", "%25", "k\x00\x7f\xff", "ünïcode", "a-b"} {
		enc := string(appendField(nil, s))
		if strings.ContainsAny(enc, " \n") || enc == "" {
			t.Errorf("%q encodes to %q", s, enc)
		}
		dec, err := parseField(enc)
		if err != nil || dec != s {
			t.Errorf("%q -> %q -> %q, %v", s, enc, dec, err)
		}
	}
}
