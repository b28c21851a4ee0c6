package handlers

import (
	"net/http"
	"testing"

	"github.com/paybridge/caddy-paybridge/payment"
)

// Benchmarks of the Commerce Layer hot paths that run on every request:
// decoding the JSON:API body (with its natural idempotency key) and
// encoding the answer. Run with
//
//	go test ./handlers -run '^$' -bench CommerceLayer -benchmem

// readmeAuthorizeBody is the authorize body of the README's walkthrough: the
// smallest document Commerce Layer could send.
const readmeAuthorizeBody = `{"data":{"id":"ep_1","type":"external_payments","attributes":{"payment_source_token":"tok_visa_4242"},
 "relationships":{"order":{"data":{"type":"orders","id":"ord_42"}}}},
 "included":[{"id":"ord_42","type":"orders","attributes":{"number":"42","currency_code":"EUR",
 "total_amount_with_taxes_cents":12900,"customer_email":"ada@example.com"}}]}`

func BenchmarkDecodeCommerceLayer(b *testing.B) {
	cases := []struct {
		name, action string
		body         []byte
	}{
		// Documents as Commerce Layer's docs show them (timestamps,
		// metadata, a market and a line item among the included).
		{"authorize", "authorize", mustJSON(b, clAuthorizeDoc())},
		{"authorize-minimal", "authorize", []byte(readmeAuthorizeBody)},
		{"capture", "capture", mustJSON(b, clAuthorizationDoc())},
	}
	for _, c := range cases {
		b.Run(c.name, func(b *testing.B) {
			// Fail on a body that does not decode: a benchmark of the
			// error path would measure the wrong thing.
			if _, perr := decodeCommerceLayer(c.action, c.body); perr != nil {
				b.Fatalf("decode: %v", perr)
			}
			b.ReportAllocs()
			b.SetBytes(int64(len(c.body)))
			for b.Loop() {
				call, perr := decodeCommerceLayer(c.action, c.body)
				if perr != nil || call.key == "" {
					b.Fatalf("decode: %v", perr)
				}
			}
		})
	}
}

func BenchmarkRenderCommerceLayer(b *testing.B) {
	succeeded := func() payment.Verdict {
		tx := &payment.Transaction{ID: "tx_01J9ZK3Q8W", Kind: payment.Authorize, Token: "pbt_5f2c0e9a1b7d4c3e8f6a0b1c",
			Amount: 12900, State: payment.Succeeded, PSPRef: "sbx_9a8b7c6d5e4f3a2b"}
		return payment.Verdict{Payment: &payment.Payment{ID: "pay_7d1e2f3a4b5c6d7e8f9a0b1c", Currency: "EUR",
			Txs: []*payment.Transaction{tx}}, Tx: tx}
	}
	pending := succeeded()
	pending.Tx.State, pending.Tx.ActionID = payment.Pending, "pba_3c4d5e6f7a8b9c0d1e2f3a4b"
	declined := succeeded()
	declined.Tx.State = payment.Failed
	declined.Err = &payment.Error{Kind: payment.KindDeclined, Code: "card_declined", Message: "Card declined"}

	cases := []struct {
		name    string
		verdict payment.Verdict
		status  int
	}{
		{"authorized-200", succeeded(), http.StatusOK},
		{"pending-202", pending, http.StatusAccepted},
		{"declined-422", declined, http.StatusUnprocessableEntity},
	}
	call := &clCall{amount: 12900, currency: "EUR"}
	for _, c := range cases {
		b.Run(c.name, func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				ans := renderCommerceLayer(c.verdict, call)
				if ans.Status != c.status {
					b.Fatalf("status %d, want %d: %s", ans.Status, c.status, ans.Body)
				}
			}
		})
	}
}
