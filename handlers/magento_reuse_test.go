package handlers

import (
	"bytes"
	"fmt"
	"net/http"
	"net/http/httptest"
	"testing"

	"go.uber.org/zap"

	"github.com/paybridge/caddy-paybridge/signature"
)

// A command whose operation_reference was first used for another amount is
// refused in the call's own answer: it never becomes a transaction, so no
// notification would ever answer it, and the bus would wait for one.
func TestMagentoReferenceReusedForAnotherAmount(t *testing.T) {
	st, engine := sandboxEngine(t)
	secret := []byte("mib-secret")
	h := &Magento{Name: "magento", Gateway: "default", Secrets: [][]byte{secret}, Engine: engine, Logger: zap.NewNop()}
	send := func(id, amount string) string {
		body := fmt.Appendf(nil, `{"jsonrpc":"2.0","id":%q,"method":"magento.payments.payments_management.capture","params":{"payment":{"gateway":"g","gateway_account":"a","gateway_key":"tok_visa_mib","amount":%s,"currency":"EUR","operation_reference":"op-1"}}}`, id, amount)
		r := httptest.NewRequest(http.MethodPost, "/mib", bytes.NewReader(body))
		r.Header.Set(MIBSignatureHeader, signature.MIB(secret, body))
		w := httptest.NewRecorder()
		h.ServeHTTP(w, r)
		return w.Body.String()
	}
	if got := send("1", "5.00"); got != `{"jsonrpc":"2.0","id":"1","result":{}}` {
		t.Fatalf("first capture: %s", got)
	}
	before, err := st.PendingMessages(100)
	if err != nil {
		t.Fatal(err)
	}
	got := send("2", "6.00")
	after, err := st.PendingMessages(100)
	if err != nil {
		t.Fatal(err)
	}
	want := `{"jsonrpc":"2.0","id":"2","error":{"code":-32602,"message":"invalid params: this idempotency key was first used for an amount of 500; a call for another amount needs a key of its own (idempotency_key_reused)","data":"payment.operation_reference"}}`
	if got != want {
		t.Errorf("reused reference, another amount:\n got %s\nwant %s", got, want)
	}
	if len(after) != len(before) {
		t.Errorf("%d notifications queued for the refused command, want none", len(after)-len(before))
	}
	if got := send("3", "5.00"); got != `{"jsonrpc":"2.0","id":"3","result":{}}` {
		t.Errorf("repeat with the first amount: %s", got)
	}
}
