package payment_test

import (
	"context"
	"fmt"
	"runtime"
	"strconv"
	"sync/atomic"
	"testing"
	"time"

	"github.com/paybridge/caddy-paybridge/adapters/sandbox"
	"github.com/paybridge/caddy-paybridge/payment"
	"github.com/paybridge/caddy-paybridge/store"
)

// Benchmarks of a synchronous authorize through the real engine, the real
// sandbox PSP (no ledger, so the PSP adds no fsync of its own) and a real
// Badger store (SyncWrites on) in b.TempDir(), with the real clock. Every
// iteration is a new call (a unique natural key), so each one creates a
// payment: an idempotency lookup, the PSP call and the store transactions
// that record it. Run with
//
//	go test ./payment -run '^$' -bench EngineAuthorize -benchmem

// benchGateways resolves the one sandbox gateway.
type benchGateways struct{ gw payment.Gateway }

func (r benchGateways) Gateway(name string) (payment.Gateway, bool) {
	return r.gw, name == "sbx"
}

func newBenchEngine(b *testing.B) *payment.Engine {
	b.Helper()
	st, err := store.Open(store.Options{Dir: b.TempDir(), GCInterval: -1})
	if err != nil {
		b.Fatalf("store.Open: %v", err)
	}
	sbx, err := sandbox.New(sandbox.Config{})
	if err != nil {
		st.Close()
		b.Fatalf("sandbox.New: %v", err)
	}
	b.Cleanup(func() {
		sbx.Close()
		st.Close()
	})
	return payment.New(payment.Config{Store: st, Gateways: benchGateways{sbx}})
}

// benchRender answers like a platform handler would: a small JSON body with
// the transaction token (the engine stores it for replays).
func benchRender(v payment.Verdict) payment.Answer {
	if v.Err != nil || v.Tx == nil || v.Tx.State != payment.Succeeded {
		return payment.Answer{Status: 599, Body: []byte(`{"success":false}`)}
	}
	body := make([]byte, 0, 128)
	body = append(body, `{"success":true,"data":{"transaction_token":"`...)
	body = append(body, v.Tx.Token...)
	body = append(body, `","amount_cents":`...)
	body = strconv.AppendInt(body, v.Tx.Amount, 10)
	body = append(body, `,"metadata":{"payment_id":"`...)
	body = append(body, v.Payment.ID...)
	body = append(body, `"}}}`...)
	return payment.Answer{Status: 200, Body: body}
}

func benchAuthorize(ctx context.Context, eng *payment.Engine, run string, n uint64) error {
	id := run + strconv.FormatUint(n, 10)
	ans, err := eng.Do(ctx, payment.Request{
		Kind: payment.Authorize, Platform: "commercelayer", Handler: "cl", Gateway: "sbx",
		Key:         "cl|authorize|external_payments|ep_" + id + "|0123456789abcdef",
		SourceToken: "tok_visa_" + id, Amount: 12900, Currency: "EUR",
		Purchase: payment.Purchase{OrderID: "ord_" + id, OrderNumber: id},
		Policy:   payment.Policy{Deadline: 4 * time.Second, Async: true},
	}, benchRender)
	if err != nil {
		return err
	}
	if ans.Status != 200 {
		return fmt.Errorf("status %d: %s", ans.Status, ans.Body)
	}
	return nil
}

func BenchmarkEngineAuthorize(b *testing.B) {
	eng := newBenchEngine(b)
	ctx := context.Background()
	var n uint64
	b.ReportAllocs()
	for b.Loop() {
		n++
		if err := benchAuthorize(ctx, eng, "s", n); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkEngineAuthorizeParallel runs authorizes from p×GOMAXPROCS
// goroutines at once: with fsync-bound commits, throughput depends on how
// many requests are in flight, so several levels are measured (p=32 is 64
// goroutines on a 2-CPU machine, the load tool's default concurrency).
func BenchmarkEngineAuthorizeParallel(b *testing.B) {
	for _, p := range []int{1, 8, 32} {
		b.Run(fmt.Sprintf("goroutines=%d", p*runtime.GOMAXPROCS(0)), func(b *testing.B) {
			eng := newBenchEngine(b)
			ctx := context.Background()
			var n atomic.Uint64
			b.SetParallelism(p)
			b.ReportAllocs()
			b.RunParallel(func(pb *testing.PB) {
				for pb.Next() {
					if err := benchAuthorize(ctx, eng, "p", n.Add(1)); err != nil {
						b.Error(err)
						return
					}
				}
			})
		})
	}
}
