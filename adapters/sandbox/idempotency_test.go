package sandbox

import (
	"context"
	"path/filepath"
	"testing"
	"time"

	"github.com/paybridge/caddy-paybridge/payment"
)

// An operation executed again under the same idempotency key, by the same
// sandbox or by a new one on the same ledger (a restart), is answered as
// before and not executed again; another key is another operation.
func TestExecuteHonoursIdempotencyKeys(t *testing.T) {
	ledger := filepath.Join(t.TempDir(), "ledger")
	now := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	clock := func() time.Time { return now }
	op := payment.Operation{Kind: payment.Authorize, Key: "k1", SourceToken: "tok_visa_1", Amount: 500, Currency: "EUR", CreatedAt: now, Attempt: 1}

	s1, err := New(Config{Ledger: ledger, Now: clock})
	if err != nil {
		t.Fatal(err)
	}
	first, err := s1.Execute(context.Background(), op)
	if err != nil {
		t.Fatal(err)
	}
	again, err := s1.Execute(context.Background(), op)
	if err != nil || again.Ref != first.Ref || again.Outcome != first.Outcome {
		t.Fatalf("repeat: %+v, %v; want %+v", again, err, first)
	}
	s1.Close()

	keySetsMu.Lock()
	delete(keySets, ledger) // as a new process would start: from the file
	keySetsMu.Unlock()
	s2, err := New(Config{Ledger: ledger, Now: clock})
	if err != nil {
		t.Fatal(err)
	}
	defer s2.Close()
	if _, err := s2.Execute(context.Background(), op); err != nil {
		t.Fatal(err)
	}
	other := op
	other.Key = "k2"
	if _, err := s2.Execute(context.Background(), other); err != nil {
		t.Fatal(err)
	}
	capture := op
	capture.Kind = payment.Capture
	if _, err := s2.Execute(context.Background(), capture); err != nil {
		t.Fatal(err)
	}

	entries, err := ReadLedger(ledger)
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, e := range entries {
		got = append(got, e.Op+" "+e.Key)
	}
	want := []string{"authorize k1", "authorize k2", "capture k1"}
	if len(got) != len(want) {
		t.Fatalf("ledger %v, want %v", got, want)
	}
	for i := range want {
		if got[i] != want[i] {
			t.Fatalf("ledger %v, want %v", got, want)
		}
	}
}
