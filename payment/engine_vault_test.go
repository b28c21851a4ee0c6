package payment_test

import (
	"bytes"
	"context"
	"encoding/json"
	"strings"
	"testing"
	"time"

	"github.com/paybridge/caddy-paybridge/adapters/sandbox"
	"github.com/paybridge/caddy-paybridge/payment"
)

type vaultBody struct {
	Customer string `json:"customer,omitempty"`
	Source   string `json:"source,omitempty"`
	Code     string `json:"code,omitempty"`
	Kind     int    `json:"kind,omitempty"`
}

func testVaultRender(res payment.VaultResult, err *payment.Error) payment.Answer {
	b := vaultBody{Customer: res.CustomerToken, Source: res.SourceToken}
	status := 200
	if err != nil {
		b = vaultBody{Code: err.Code, Kind: int(err.Kind)}
		status = kindStatus[err.Kind]
	}
	body, _ := json.Marshal(b)
	return payment.Answer{Status: status, Body: body}
}

func (h *harness) vault(key, source, email string, deadline time.Duration) (payment.Answer, vaultBody) {
	h.t.Helper()
	ans, err := h.eng.Vault(context.Background(), payment.VaultCall{
		Platform: hPlatform, Handler: hHandler, Gateway: hGateway, Key: key,
		SourceToken: source, CustomerEmail: email, Deadline: deadline,
	}, testVaultRender)
	if err != nil {
		h.t.Fatalf("Vault: %v", err)
	}
	var b vaultBody
	if err := json.Unmarshal(ans.Body, &b); err != nil {
		h.t.Fatalf("vault answer %s: %v", ans.Body, err)
	}
	return ans, b
}

func TestVaultSuccessIsReplayed(t *testing.T) {
	h := newHarness(t)
	ans, b := h.vault("v", "tok_visa_1", "Ada@Example.com", hDeadline)
	if ans.Status != 200 || !strings.HasPrefix(b.Customer, "cus_") || !strings.HasPrefix(b.Source, "tok_visa_1_saved_") {
		t.Fatalf("answer %d %s", ans.Status, ans.Body)
	}
	again, _ := h.vault("v", "tok_visa_1", "Ada@Example.com", hDeadline)
	if again.Status != ans.Status || !bytes.Equal(again.Body, ans.Body) {
		t.Fatalf("replay %d %s, first %d %s", again.Status, again.Body, ans.Status, ans.Body)
	}
	h.restart()
	afterRestart, _ := h.vault("v", "tok_visa_1", "Ada@Example.com", hDeadline)
	if !bytes.Equal(afterRestart.Body, ans.Body) {
		t.Fatalf("replay after restart %s, first %s", afterRestart.Body, ans.Body)
	}
	l := h.ledgerOps("vault")
	if len(l) != 1 {
		t.Fatalf("vault ledger lines %+v", l)
	}
	if rec := h.record("v"); rec == nil || !rec.Done || !bytes.Equal(rec.Answer.Body, ans.Body) {
		t.Errorf("record %+v", rec)
	}
	// Another key is another call.
	other, _ := h.vault("v2", "tok_visa_1", "Ada@Example.com", hDeadline)
	if bytes.Equal(other.Body, ans.Body) {
		t.Error("a different key got the same saved source")
	}
}

func TestVaultDeclined(t *testing.T) {
	h := newHarness(t)
	ans, b := h.vault("v", "tok_decline_1", "", hDeadline)
	if ans.Status != kindStatus[payment.KindDeclined] || b.Kind != int(payment.KindDeclined) || b.Code != sandbox.CodeCardDeclined {
		t.Fatalf("answer %d %s", ans.Status, ans.Body)
	}
	if rec := h.record("v"); rec != nil {
		t.Errorf("a decline was remembered: %+v", rec)
	}
	h.vault("v", "tok_decline_1", "", hDeadline)
	if n := h.gw.count("vault"); n != 2 {
		t.Errorf("%d vault calls; a decline's repeat is a new attempt", n)
	}
}

func TestVaultUnavailable(t *testing.T) {
	h := newHarness(t)
	ans, b := h.vault("v", "tok_unavailable_1", "", 50*time.Millisecond)
	if ans.Status != kindStatus[payment.KindUnavailable] || b.Kind != int(payment.KindUnavailable) || b.Code != payment.CodeGatewayUnavailable {
		t.Fatalf("answer %d %s", ans.Status, ans.Body)
	}
	if h.gw.count("vault") < 2 {
		t.Error("transient faults were not retried within the deadline")
	}
	if rec := h.record("v"); rec != nil {
		t.Errorf("a failure was remembered: %+v", rec)
	}
	// An unknown gateway is unavailable too.
	ans, err := h.eng.Vault(context.Background(), payment.VaultCall{Gateway: "nope", Key: "v2", SourceToken: "tok_visa", Deadline: 30 * time.Millisecond}, testVaultRender)
	if err != nil || ans.Status != kindStatus[payment.KindUnavailable] {
		t.Errorf("unknown gateway: %d %s %v", ans.Status, ans.Body, err)
	}
}
