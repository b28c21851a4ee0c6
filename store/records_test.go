package store

import (
	"context"
	"errors"
	"reflect"
	"slices"
	"strings"
	"sync"
	"testing"

	"github.com/paybridge/caddy-paybridge/payment"
)

func TestPaymentRoundTrip(t *testing.T) {
	s, _ := openTemp(t)
	p := newPayment("pay1")
	p.Txs = append(p.Txs, &payment.Transaction{
		ID: "pay1-t2", Kind: payment.Capture, Token: "cap-tok", Parent: "tok-pay1",
		Amount: 400, State: payment.Succeeded, PSPKey: "psp-cap", PSPRef: "ch_1",
		CreatedAt: t0, UpdatedAt: t0,
	})
	p.Captured = 400
	put(t, s, p)
	if got := get(t, s, "pay1"); !reflect.DeepEqual(got, p) {
		t.Errorf("round trip:\n got %+v\nwant %+v", got, p)
	}

	err := s.View(context.Background(), func(tx payment.Tx) error {
		_, err := tx.Payment("nope")
		return err
	})
	if !errors.Is(err, payment.ErrNotFound) {
		t.Errorf("missing payment: got %v, want ErrNotFound", err)
	}
}

func TestTokenIndex(t *testing.T) {
	s, _ := openTemp(t)
	p := newPayment("pay1")
	p.Txs = append(p.Txs, &payment.Transaction{ID: "pay1-t2", Kind: payment.Capture, Token: "cap-tok", State: payment.Processing})
	put(t, s, p)
	put(t, s, newPayment("pay2"))

	tokens := []string{"tok-pay1", "psp-pay1", "act-pay1", "cap-tok"}
	// The capture has no PSP key: its empty token must be skipped.
	got := slices.DeleteFunc(p.Tokens(), func(tok string) bool { return tok == "" })
	slices.Sort(got)
	if want := slices.Sorted(slices.Values(tokens)); !slices.Equal(got, want) {
		t.Fatalf("test assumes tokens %v, payment has %v", want, got)
	}
	err := s.View(context.Background(), func(tx payment.Tx) error {
		for _, tok := range tokens {
			id, err := tx.PaymentIDByToken(tok)
			if err != nil || id != "pay1" {
				t.Errorf("token %q: got %q, %v; want pay1", tok, id, err)
			}
		}
		if id, err := tx.PaymentIDByToken("tok-pay2"); id != "pay2" || err != nil {
			t.Errorf("tok-pay2: got %q, %v", id, err)
		}
		for _, tok := range []string{"", "unknown"} {
			if _, err := tx.PaymentIDByToken(tok); !errors.Is(err, payment.ErrNotFound) {
				t.Errorf("token %q: got %v, want ErrNotFound", tok, err)
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
}

// A repeated platform call (say an authorization declined, then tried
// again) makes a new payment with the same PSP idempotency key: the key
// must lead to the newest payment, and the write must not fail.
func TestSharedTokenResolvesToNewestPayment(t *testing.T) {
	s, _ := openTemp(t)
	put(t, s, newPayment("pay1"))
	p := newPayment("pay2")
	p.Txs[0].PSPKey = "psp-pay1"
	put(t, s, p)
	// The older payment changing later (a reconcile, a late PSP answer)
	// does not take the key back.
	if err := s.Update(context.Background(), func(tx payment.Tx) error {
		old, err := tx.Payment("pay1")
		if err != nil {
			return err
		}
		old.Status = payment.StatusRefused
		return tx.PutPayment(old)
	}); err != nil {
		t.Fatal(err)
	}
	err := s.View(context.Background(), func(tx payment.Tx) error {
		id, err := tx.PaymentIDByToken("psp-pay1")
		if err != nil || id != "pay2" {
			t.Errorf("psp-pay1: got %q, %v; want pay2", id, err)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
}

func TestOpenPaymentsIndex(t *testing.T) {
	s, _ := openTemp(t)
	ctx := context.Background()
	a, b := newPayment("a"), newPayment("b")
	put(t, s, a)
	put(t, s, b)
	if ids, err := s.OpenPayments(ctx); err != nil || !slices.Equal(ids, []string{"a", "b"}) {
		t.Fatalf("both open: got %v, %v", ids, err)
	}

	a.Txs[0].State = payment.Succeeded
	put(t, s, a)
	if ids, err := s.OpenPayments(ctx); err != nil || !slices.Equal(ids, []string{"b"}) {
		t.Fatalf("a closed: got %v, %v", ids, err)
	}

	// Verify reopens a final transaction: the reconciler must find it.
	a.Txs[0].Verify = true
	put(t, s, a)
	if ids, err := s.OpenPayments(ctx); err != nil || !slices.Equal(ids, []string{"a", "b"}) {
		t.Fatalf("a to verify: got %v, %v", ids, err)
	}
}

func TestIdempotency(t *testing.T) {
	s, _ := openTemp(t)
	ctx := context.Background()
	key := "commercelayer/capture/" + strings.Repeat("x", 5000)
	r := &payment.IdempotencyRecord{
		Key: key, Done: true, PaymentID: "pay1", TxID: "pay1-t1",
		Answer:    payment.Answer{Status: 200, Body: []byte(`{"success":true}`)},
		CreatedAt: t0,
	}
	if err := s.Update(ctx, func(tx payment.Tx) error { return tx.PutIdempotency(r) }); err != nil {
		t.Fatal(err)
	}
	read := func(key string) (*payment.IdempotencyRecord, error) {
		var got *payment.IdempotencyRecord
		err := s.View(ctx, func(tx payment.Tx) (err error) {
			got, err = tx.Idempotency(key)
			return err
		})
		return got, err
	}
	if got, err := read(key); err != nil || !reflect.DeepEqual(got, r) {
		t.Fatalf("got %+v, %v; want %+v", got, err, r)
	}
	if _, err := read(key[:len(key)-1]); !errors.Is(err, payment.ErrNotFound) {
		t.Fatalf("other key: got %v, want ErrNotFound", err)
	}
	if err := s.Update(ctx, func(tx payment.Tx) error { return tx.DeleteIdempotency(key) }); err != nil {
		t.Fatal(err)
	}
	if _, err := read(key); !errors.Is(err, payment.ErrNotFound) {
		t.Fatalf("after delete: got %v, want ErrNotFound", err)
	}
}

func TestViewRefusesWrites(t *testing.T) {
	s, _ := openTemp(t)
	err := s.View(context.Background(), func(tx payment.Tx) error { return tx.PutPayment(newPayment("x")) })
	if !errors.Is(err, errReadOnly) {
		t.Fatalf("got %v, want errReadOnly", err)
	}
}

// TestConcurrentCheckAndWrite is the store's main promise: a balance check
// and the write it allows are atomic, so concurrent captures cannot
// together exceed the balance.
func TestConcurrentCheckAndWrite(t *testing.T) {
	s, _ := openTemp(t)
	put(t, s, newPayment("pay1"))
	errExceeds := errors.New("exceeds balance")

	const workers = 20
	var (
		wg    sync.WaitGroup
		start = make(chan struct{})
		errs  = make(chan error, workers)
	)
	for range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			<-start
			errs <- s.Update(context.Background(), func(tx payment.Tx) error {
				p, err := tx.Payment("pay1")
				if err != nil {
					return err
				}
				if p.Captured+100 > 1000 {
					return errExceeds
				}
				p.Captured += 100
				return tx.PutPayment(p)
			})
		}()
	}
	close(start)
	wg.Wait()
	close(errs)

	var ok, refused int
	for err := range errs {
		switch {
		case err == nil:
			ok++
		case err == errExceeds: // unchanged, not wrapped
			refused++
		default:
			t.Errorf("unexpected error: %v", err)
		}
	}
	if ok != 10 || refused != 10 {
		t.Errorf("%d succeeded and %d refused, want 10 and 10", ok, refused)
	}
	if got := get(t, s, "pay1").Captured; got != 1000 {
		t.Errorf("captured %d, want 1000", got)
	}
}

func TestUpdateHonoursContext(t *testing.T) {
	s, _ := openTemp(t)
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	called := false
	err := s.Update(ctx, func(payment.Tx) error { called = true; return nil })
	if !errors.Is(err, context.Canceled) || called {
		t.Fatalf("got %v (fn called: %v), want context.Canceled", err, called)
	}
}
