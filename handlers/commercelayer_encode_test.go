package handlers

import (
	"encoding/json"
	"net/http"
	"testing"

	"github.com/paybridge/caddy-paybridge/payment"
)

func testPayment() (*payment.Payment, *payment.Transaction) {
	tx := &payment.Transaction{ID: "tx_1", Kind: payment.Authorize, Token: "pbt_1", Amount: 12900, State: payment.Succeeded, PSPRef: "sbx_ref1"}
	return &payment.Payment{ID: "pay_1", Currency: "EUR", Txs: []*payment.Transaction{tx}}, tx
}

func TestRenderCommerceLayerSuccess(t *testing.T) {
	p, tx := testPayment()
	call := &clCall{amount: 99} // the transaction's amount wins
	ans := renderCommerceLayer(payment.Verdict{Payment: p, Tx: tx}, call)
	want := `{"success":true,"data":{"transaction_token":"pbt_1","amount_cents":12900,"metadata":{"gateway_reference":"sbx_ref1","payment_id":"pay_1"}}}`
	if ans.Status != http.StatusOK || string(ans.Body) != want {
		t.Errorf("got %d %s\nwant 200 %s", ans.Status, ans.Body, want)
	}
	// A successful transaction with an action id (settled before it was
	// answered) still answers 200 without it.
	tx.ActionID = "pba_1"
	if ans := renderCommerceLayer(payment.Verdict{Payment: p, Tx: tx}, call); ans.Status != 200 || string(ans.Body) != want {
		t.Errorf("succeeded with action id: %d %s", ans.Status, ans.Body)
	}
}

func TestRenderCommerceLayerPending(t *testing.T) {
	for _, state := range []payment.TxState{payment.Pending, payment.Retrying} {
		p, tx := testPayment()
		tx.State, tx.ActionID = state, "pba_1"
		if state == payment.Retrying {
			tx.PSPRef = ""
		}
		ans := renderCommerceLayer(payment.Verdict{Payment: p, Tx: tx}, &clCall{amount: 12900})
		want := `{"success":true,"data":{"transaction_token":"pbt_1","amount_cents":12900,"action_id":"pba_1","metadata":{"gateway_reference":"sbx_ref1","payment_id":"pay_1"}}}`
		if state == payment.Retrying {
			want = `{"success":true,"data":{"transaction_token":"pbt_1","amount_cents":12900,"action_id":"pba_1","metadata":{"payment_id":"pay_1"}}}`
		}
		if ans.Status != http.StatusAccepted || string(ans.Body) != want {
			t.Errorf("%s: got %d %s\nwant 202 %s", state, ans.Status, ans.Body, want)
		}
	}
}

func TestRenderCommerceLayerErrorStatuses(t *testing.T) {
	for kind, status := range map[payment.ErrorKind]int{
		payment.KindInvalidRequest: 400,
		payment.KindInvalidAmount:  400,
		payment.KindNotFound:       404,
		payment.KindInvalidState:   409,
		payment.KindExceedsBalance: 422,
		payment.KindDeclined:       422,
		payment.KindUnavailable:    502,
	} {
		perr := &payment.Error{Kind: kind, Code: "some_code", Message: "Some message"}
		// Without a transaction and without an amount: no data.
		ans := renderCommerceLayer(payment.Verdict{Err: perr}, &clCall{})
		want := `{"success":false,"error":{"code":"some_code","message":"Some message"}}`
		if ans.Status != status || string(ans.Body) != want {
			t.Errorf("kind %d: got %d %s\nwant %d %s", kind, ans.Status, ans.Body, status, want)
		}
		// With only the requested amount.
		ans = renderCommerceLayer(payment.Verdict{Err: perr}, &clCall{amount: 500})
		want = `{"success":false,"data":{"amount_cents":500},"error":{"code":"some_code","message":"Some message"}}`
		if ans.Status != status || string(ans.Body) != want {
			t.Errorf("kind %d with amount: got %d %s\nwant %d %s", kind, ans.Status, ans.Body, status, want)
		}
		// With the failed transaction.
		p, tx := testPayment()
		tx.State = payment.Failed
		ans = renderCommerceLayer(payment.Verdict{Payment: p, Tx: tx, Err: perr}, &clCall{amount: 500})
		want = `{"success":false,"data":{"transaction_token":"pbt_1","amount_cents":12900},"error":{"code":"some_code","message":"Some message"}}`
		if ans.Status != status || string(ans.Body) != want {
			t.Errorf("kind %d with tx: got %d %s\nwant %d %s", kind, ans.Status, ans.Body, status, want)
		}
	}
}

func TestRenderCommerceLayerVault(t *testing.T) {
	ans := renderCommerceLayerVault(payment.VaultResult{CustomerToken: "cus_1", SourceToken: "tok_saved"}, nil)
	want := `{"success":true,"data":{"customer_token":"cus_1","payment_source_token":"tok_saved"}}`
	if ans.Status != 200 || string(ans.Body) != want {
		t.Errorf("got %d %s\nwant 200 %s", ans.Status, ans.Body, want)
	}
	ans = renderCommerceLayerVault(payment.VaultResult{}, &payment.Error{Kind: payment.KindDeclined, Code: "card_declined", Message: "Card declined"})
	want = `{"success":false,"error":{"code":"card_declined","message":"Card declined"}}`
	if ans.Status != 422 || string(ans.Body) != want {
		t.Errorf("got %d %s\nwant 422 %s", ans.Status, ans.Body, want)
	}
	ans = renderCommerceLayerVault(payment.VaultResult{}, &payment.Error{Kind: payment.KindUnavailable, Code: "gateway_unavailable", Message: "x"})
	if ans.Status != 502 {
		t.Errorf("unavailable: %d", ans.Status)
	}
}

func TestCommerceLayerCallbackBytes(t *testing.T) {
	for _, tc := range []struct {
		kind     payment.Kind
		ok, fail string
	}{
		{payment.Authorize, "Payment authorized", "Payment refused"},
		{payment.Capture, "Payment captured", "Capture failed"},
		{payment.Void, "Authorization voided", "Void failed"},
		{payment.Refund, "Payment refunded", "Refund failed"},
	} {
		p := &payment.Payment{ID: "pay_1"}
		tx := &payment.Transaction{Kind: tc.kind, Token: "pbt_1", ActionID: "pba_42", State: payment.Succeeded, Amount: 100}
		got := string(CommerceLayerCallback(p, tx))
		want := `{"success":true,"data":{"action_id":"pba_42","message":"` + tc.ok + `"}}`
		if got != want {
			t.Errorf("%s succeeded:\n got %s\nwant %s", tc.kind, got, want)
		}
		tx.State, tx.Code, tx.Message = payment.Failed, "card_declined", "Card declined"
		got = string(CommerceLayerCallback(p, tx))
		want = `{"success":false,"data":{"action_id":"pba_42","error_code":"card_declined","error_detail":"Card declined","message":"` + tc.fail + `"}}`
		if got != want {
			t.Errorf("%s failed:\n got %s\nwant %s", tc.kind, got, want)
		}
		// Only what Commerce Layer lets a callback change: no token, no amount.
		var m struct{ Data map[string]any }
		if err := json.Unmarshal([]byte(got), &m); err != nil {
			t.Fatal(err)
		}
		for _, k := range []string{"transaction_token", "amount_cents"} {
			if _, ok := m.Data[k]; ok {
				t.Errorf("callback carries %s", k)
			}
		}
	}
	// A failure without a message still has the code.
	tx := &payment.Transaction{Kind: payment.Authorize, ActionID: "pba_1", State: payment.Failed, Code: "gateway_unavailable"}
	want := `{"success":false,"data":{"action_id":"pba_1","error_code":"gateway_unavailable","message":"Payment refused"}}`
	if got := string(CommerceLayerCallback(&payment.Payment{}, tx)); got != want {
		t.Errorf("got %s\nwant %s", got, want)
	}
}

func TestCallbackDestinationSignsWithFirstSecret(t *testing.T) {
	h := testCommerceLayer()
	body := []byte(`{"success":true,"data":{"action_id":"pba_1","message":"Payment authorized"}}`)
	url, header := h.CallbackDestination(body)
	if url != h.CallbackURL {
		t.Errorf("url %q", url)
	}
	// The exact value Commerce Layer's helper computes:
	// createHmac('sha256', secret).update(rawBody).digest('base64')
	// (here computed with openssl dgst -sha256 -hmac ... -binary | base64).
	const want = "PI6OaKxaqyTPE87Qq1xp1Y25zu0WnxKVZdcMSsSuAH4="
	if got := header.Get("X-CommerceLayer-Signature"); got != want {
		t.Errorf("signature %q, want %q", got, want)
	}
}
