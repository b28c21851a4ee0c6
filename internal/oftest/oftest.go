// Package oftest builds the bodies Openfront sends to a custom HTTP payment
// provider, for tests: both the shapes its code really sends (read from
// openshiporg/openfront's paymentProviderAdapter.ts and the mutations that
// call it, see ../shared/contracts/openfront.md) and the documented ones.
// Bodies are made the way Openfront makes them, JSON.stringify({provider,
// ...args}): compact, provider first.
//
// It is shared by the handler unit tests and the Caddy integration tests;
// nothing outside tests imports it.
package oftest

import (
	"encoding/json"
	"fmt"
)

// Provider is the PaymentProvider record Openfront puts in every body: its
// code's fields (no `name`, despite the docs), credentials included.
func Provider(apiKey string) map[string]any {
	base := "https://pay.example.com/openfront/"
	return map[string]any{
		"id":                          "prov_cm9x1",
		"code":                        "pp_paybridge",
		"isInstalled":                 true,
		"createPaymentFunction":       base + "create-payment",
		"capturePaymentFunction":      base + "capture-payment",
		"refundPaymentFunction":       base + "refund-payment",
		"getPaymentStatusFunction":    base + "get-payment-status",
		"generatePaymentLinkFunction": base + "generate-payment-link",
		"handleWebhookFunction":       base + "handle-webhook",
		"credentials": map[string]any{
			"apiKey": apiKey, "publishableKey": "pk_test", "webhookSecret": "unused", "environment": "sandbox",
		},
	}
}

// DocumentedProvider is the provider as the docs describe it: name and
// credentials.
func DocumentedProvider(apiKey string) map[string]any {
	return map[string]any{"name": "paybridge", "credentials": map[string]any{"apiKey": apiKey, "environment": "sandbox"}}
}

// CheckoutCreate is what initiatePaymentSession sends: the cart with
// rawTotal and region.currency, amount and currency (in the region's case).
func CheckoutCreate(apiKey, cartID string, amount int64, currency string) []byte {
	return body(map[string]any{
		"provider": Provider(apiKey),
		"cart": map[string]any{
			"id": cartID, "rawTotal": amount,
			"region": map[string]any{"id": "reg_eu", "taxRate": 0.2, "currency": map[string]any{"code": currency, "noDivisionCurrency": false}},
			"paymentCollection": map[string]any{"id": "pcol_" + cartID, "amount": amount, "paymentSessions": []any{
				map[string]any{"id": "ps_1", "isSelected": false, "isInitiated": false, "paymentProvider": map[string]any{"id": "prov_cm9x1", "code": "pp_paybridge"}, "data": map[string]any{}},
			}},
		},
		"amount":   amount,
		"currency": currency,
	})
}

// InvoiceCreate is what initiateInvoicePaymentSession sends: the invoice as
// `cart`, with totalAmount and currency{code}.
func InvoiceCreate(apiKey, invoiceID string, amount int64, currency string) []byte {
	return body(map[string]any{
		"provider": Provider(apiKey),
		"cart": map[string]any{
			"id": invoiceID, "totalAmount": amount,
			"currency":          map[string]any{"code": currency, "noDivisionCurrency": false},
			"account":           map[string]any{"id": "acc_1", "user": map[string]any{"id": "usr_1"}},
			"paymentCollection": map[string]any{"id": "pcol_" + invoiceID},
		},
		"amount":   amount,
		"currency": currency,
	})
}

// DocumentedCreate is the docs' shape: cart{id,total,currency,customer}.
func DocumentedCreate(apiKey, cartID string, amount int64, currency string) []byte {
	return body(map[string]any{
		"provider": DocumentedProvider(apiKey),
		"cart":     map[string]any{"id": cartID, "total": amount, "currency": currency, "customer": map[string]any{"email": "ada@example.com"}},
		"amount":   amount,
		"currency": currency,
	})
}

// Capture, Refund, Status and Link are the other functions' real bodies.
func Capture(apiKey, paymentID string, amount int64) []byte {
	return body(map[string]any{"provider": Provider(apiKey), "paymentId": paymentID, "amount": amount})
}

func Refund(apiKey, paymentID string, amount int64) []byte {
	return body(map[string]any{"provider": Provider(apiKey), "paymentId": paymentID, "amount": amount})
}

// DocumentedRefund adds the documented reason.
func DocumentedRefund(apiKey, paymentID string, amount int64, reason string) []byte {
	return body(map[string]any{"provider": DocumentedProvider(apiKey), "paymentId": paymentID, "amount": amount, "reason": reason})
}

func Status(apiKey, paymentID string) []byte {
	return body(map[string]any{"provider": Provider(apiKey), "paymentId": paymentID})
}

func Link(apiKey, paymentID string) []byte {
	return body(map[string]any{"provider": Provider(apiKey), "paymentId": paymentID})
}

// Webhook is what handlePaymentProviderWebhook sends: the event it parsed
// from the GraphQL variables, re-serialised compactly (event is inserted as
// raw bytes, as JSON.stringify would write a compact event), and headers.
func Webhook(apiKey string, event json.RawMessage, headers map[string]any) []byte {
	p, _ := json.Marshal(Provider(apiKey))
	h, _ := json.Marshal(headers)
	return fmt.Appendf(nil, `{"provider":%s,"event":%s,"headers":%s}`, p, event, h)
}

func body(v map[string]any) []byte {
	// Provider first, like JSON.stringify({provider, ...args}); the rest in
	// any order (map order is sorted, which is one of JSON's orders).
	p, err := json.Marshal(v["provider"])
	if err != nil {
		panic(err)
	}
	rest := map[string]any{}
	for k, x := range v {
		if k != "provider" {
			rest[k] = x
		}
	}
	r, err := json.Marshal(rest)
	if err != nil {
		panic(err)
	}
	if len(r) == 2 {
		return fmt.Appendf(nil, `{"provider":%s}`, p)
	}
	return fmt.Appendf(nil, `{"provider":%s,%s`, p, r[1:])
}
