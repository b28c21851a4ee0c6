package store

import (
	"context"
	"testing"
	"time"

	"github.com/paybridge/caddy-paybridge/payment"
)

var t0 = time.Date(2025, 3, 1, 12, 0, 0, 0, time.UTC)

func openTemp(t testing.TB) (*Store, string) {
	t.Helper()
	dir := t.TempDir()
	s, err := Open(Options{Dir: dir, GCInterval: -1})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	return s, dir
}

// newPayment returns an authorized payment whose authorization is still
// open (pending at the PSP).
func newPayment(id string) *payment.Payment {
	return &payment.Payment{
		ID:          id,
		Platform:    "commercelayer",
		Handler:     "cl",
		Gateway:     "stripe",
		Purchase:    payment.Purchase{OrderID: "ord-" + id, OrderNumber: "42"},
		Currency:    "EUR",
		Amount:      1000,
		SourceToken: "src-" + id,
		Status:      payment.StatusPending,
		Txs: []*payment.Transaction{{
			ID:             id + "-t1",
			Kind:           payment.Authorize,
			Token:          "tok-" + id,
			Amount:         1000,
			State:          payment.Pending,
			PSPKey:         "psp-" + id,
			IdempotencyKey: "idem-" + id,
			ActionID:       "act-" + id,
			Notify:         true,
			Details:        map[string]string{"k": "v"},
			CreatedAt:      t0,
			UpdatedAt:      t0,
			NextCheck:      t0.Add(time.Minute),
		}},
		Events: []payment.Event{{
			ID: id + "-e1", Type: payment.PaymentReceived, Sequence: 1,
			TxID: id + "-t1", Amount: 1000, OccurredAt: t0,
		}},
		CreatedAt: t0,
		UpdatedAt: t0,
	}
}

func put(t testing.TB, s *Store, p *payment.Payment) {
	t.Helper()
	err := s.Update(context.Background(), func(tx payment.Tx) error { return tx.PutPayment(p) })
	if err != nil {
		t.Fatal(err)
	}
}

func get(t testing.TB, s *Store, id string) *payment.Payment {
	t.Helper()
	var p *payment.Payment
	err := s.View(context.Background(), func(tx payment.Tx) (err error) {
		p, err = tx.Payment(id)
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	return p
}

func enqueue(t testing.TB, s *Store, ms ...*payment.Message) {
	t.Helper()
	err := s.Update(context.Background(), func(tx payment.Tx) error {
		for _, m := range ms {
			if err := tx.Enqueue(m); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
}
