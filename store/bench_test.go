package store

import (
	"context"
	"fmt"
	"sync/atomic"
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

// BenchmarkPutNewPaymentParallel is BenchmarkPutNewPayment from many
// goroutines, as concurrent requests write: group commit makes their
// writes durable together, one fsync a batch.
func BenchmarkPutNewPaymentParallel(b *testing.B) {
	s, _ := openTemp(b)
	ctx := context.Background()
	b.ReportAllocs()
	b.SetParallelism(32) // 32 × GOMAXPROCS writers
	var n atomic.Int64
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			id := fmt.Sprint("pay", n.Add(1))
			p := newPayment(id)
			err := s.Update(ctx, func(tx payment.Tx) error { return tx.PutPayment(p) })
			if err != nil {
				b.Error(err)
				return
			}
		}
	})
	commits, updates := s.CommitStats()
	if commits > 0 {
		b.ReportMetric(float64(updates)/float64(commits), "updates/commit")
	}
}
