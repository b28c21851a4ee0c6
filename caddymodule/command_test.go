package caddymodule

import (
	"fmt"
	"testing"
	"time"

	"github.com/paybridge/caddy-paybridge/signature"
)

// TestListenChecksRelayedEvents: `caddy paybridge listen` recognises a relay
// to Openfront's GraphQL and checks the event's signature over its bytes.
func TestListenChecksRelayedEvents(t *testing.T) {
	event := `{"id":"evt_1","type":"payment_intent.succeeded","created":1,"data":{"payment_id":"pay_1","amount":100,"currency":"EUR","status":"authorized"}}`
	secret := [][]byte{[]byte("whsec")}
	sig := signature.Sign(secret, time.Now(), []byte(event))
	body := fmt.Sprintf(`{"query":"mutation PaybridgeRelay($providerId: ID!, $event: JSON!, $headers: JSON!) { handlePaymentProviderWebhook(providerId: $providerId, event: $event, headers: $headers) { success } }","variables":{"event":%s,"headers":{"paybridge-signature":%q},"providerId":"p"}}`, event, sig)
	r, ok := parseRelay([]byte(body))
	if !ok {
		t.Fatal("relay not recognised")
	}
	if v := r.verdict(secret); v != "event signature ok" {
		t.Fatalf("verdict %q", v)
	}
	if v := r.verdict([][]byte{[]byte("other")}); v != "event signature INVALID" {
		t.Fatalf("verdict with another secret %q", v)
	}
	if _, ok := parseRelay([]byte(`{"success":true,"data":{"action_id":"pba_1"}}`)); ok {
		t.Fatal("a Commerce Layer callback taken for a relay")
	}
}
