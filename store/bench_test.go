package store

import (
	"context"
	"fmt"
	"testing"

	"github.com/paybridge/caddy-paybridge/payment"
)

// BenchmarkPutNewPayment measures what an authorize request costs the
// store: one durable Update writing a payment, its indexes and its
// idempotency record.
func BenchmarkPutNewPayment(b *testing.B) {
	s, _ := openTemp(b)
	ctx := context.Background()
	b.ReportAllocs()
	i := 0
	for b.Loop() {
		i++
		id := fmt.Sprint("pay", i)
		p := newPayment(id)
		r := &payment.IdempotencyRecord{
			Key: "commercelayer/authorize/" + id, PaymentID: id, TxID: p.Txs[0].ID,
			Done: true, Answer: payment.Answer{Status: 200, Body: []byte(`{"success":true}`)}, CreatedAt: t0,
		}
		err := s.Update(ctx, func(tx payment.Tx) error {
			if _, err := tx.Idempotency(r.Key); err != payment.ErrNotFound {
				return fmt.Errorf("idempotency lookup: %v", err)
			}
			if err := tx.PutPayment(p); err != nil {
				return err
			}
			return tx.PutIdempotency(r)
		})
		if err != nil {
			b.Fatal(err)
		}
	}
}
