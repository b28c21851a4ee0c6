package handlers

import (
	"net/http"
	"strings"
	"testing"

	"github.com/paybridge/caddy-paybridge/internal/oftest"
	"github.com/paybridge/caddy-paybridge/payment"
)

// FuzzOpenfront sends each input to every function: the handler never
// panics, answers every refusal as {"error":…} with a 4xx (503 means it got
// past decoding and authentication to the missing engine), and whatever
// create-payment's decoder accepts is an amount and currency the engine
// takes.
func FuzzOpenfront(f *testing.F) {
	for _, b := range [][]byte{
		oftest.CheckoutCreate(ofKey, "cart_1", 12900, "eur"),
		oftest.InvoiceCreate(ofKey, "inv_1", 500, "jpy"),
		oftest.DocumentedCreate(ofKey, "cart_2", 1999, "USD"),
		oftest.Capture(ofKey, "pay_1", 100),
		oftest.DocumentedRefund(ofKey, "pay_1", 100, "damaged"),
		oftest.Webhook(ofKey, []byte(`{"id":"evt_1","type":"payment_intent.succeeded","data":{"payment_id":"p"}}`), map[string]any{"paybridge-signature": "t=1,v1=00"}),
		[]byte(`{"provider":{"credentials":"{\"apiKey\":\"` + ofKey + `\"}"},"cart":{"id":"c","rawTotal":1e2,"region":{"currency":{"code":null}}}}`),
		[]byte(`{"provider":{"credentials":{"apiKey":"` + ofKey + `"}},"cart":{"id":"c","currency":{"code":"eur"},"totalAmount":"12"},"amount":null}`),
		[]byte(`null`), []byte(`[]`), []byte(``),
	} {
		f.Add(b)
	}
	h := testOpenfront()
	fns := []string{ofCreate, ofCapture, ofRefund, ofStatus, ofLink, ofWebhook}
	f.Fuzz(func(t *testing.T, body []byte) {
		for _, fn := range fns {
			status, out := ofCall(h, http.MethodPost, fn, body, nil)
			switch {
			case status == http.StatusOK && fn == ofWebhook:
			case status == http.StatusServiceUnavailable:
			case status >= 400 && status < 500:
				if msg, _ := out["error"].(string); msg == "" || strings.Contains(msg, ofKey) {
					t.Fatalf("%s: HTTP %d without a clean {error}: %v", fn, status, out)
				}
			default:
				t.Fatalf("%s: HTTP %d for %q", fn, status, body)
			}
		}
		req, p := decodeOpenfront(body)
		if p != nil {
			return
		}
		amount, currency, p := req.money()
		if p != nil {
			return
		}
		if amount <= 0 || currency != strings.ToUpper(currency) {
			t.Fatalf("accepted %d %q", amount, currency)
		}
		if _, known := payment.CurrencyExponent(currency); !known {
			return // the engine refuses unknown codes with its own 400
		}
	})
}
