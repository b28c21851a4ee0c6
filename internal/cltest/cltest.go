// Package cltest builds Commerce Layer external gateway requests for tests:
// JSON:API documents shaped as Commerce Layer sends them, and their
// X-CommerceLayer-Signature computed with crypto/hmac, independently of
// package signature, so tests check the scheme rather than echo it.
//
// It is shared by the Caddy integration tests and the fault suite; nothing
// outside tests imports it.
package cltest

import (
	"crypto/hmac"
	"crypto/sha256"
	"encoding/base64"
)

// Stamp is the created_at/updated_at of every document: fixed, since the
// natural idempotency key leaves timestamps out anyway.
const Stamp = "2026-01-02T03:04:05.000Z"

// Sign is Commerce Layer's signature: standard base64 of
// HMAC-SHA256(secret, body).
func Sign(secret string, body []byte) string {
	m := hmac.New(sha256.New, []byte(secret))
	m.Write(body)
	return base64.StdEncoding.EncodeToString(m.Sum(nil))
}

// AuthorizeDoc is an authorize call: an external_payments resource whose
// order (relationships.order, in included) carries the currency and amount.
func AuthorizeDoc(id, sourceToken string, amount int64) map[string]any {
	orderID := "ord_" + id
	return map[string]any{
		"data": map[string]any{
			"id":   id,
			"type": "external_payments",
			"attributes": map[string]any{
				"payment_source_token": sourceToken,
				"metadata":             map[string]any{},
				"created_at":           Stamp,
				"updated_at":           Stamp,
			},
			"relationships": map[string]any{
				"order": map[string]any{"data": map[string]any{"type": "orders", "id": orderID}},
			},
		},
		"included": []any{
			map[string]any{
				"id":   orderID,
				"type": "orders",
				"attributes": map[string]any{
					"number":                        "NR-" + id,
					"currency_code":                 "EUR",
					"customer_email":                "buyer@example.com",
					"total_amount_cents":            amount,
					"total_amount_with_taxes_cents": amount,
				},
			},
		},
	}
}

// CaptureDoc captures capture cents of the authorization authToken (of
// authAmount). Commerce Layer sends the authorization resource, whose id
// stays the same across partial captures: balance is what tells two of them
// apart, as capture_balance_cents does.
func CaptureDoc(id, authToken string, authAmount, capture, balance int64) map[string]any {
	return TxDoc(id, "authorizations", "NR-"+id+"/T/001", map[string]any{
		"token":                 authToken,
		"currency_code":         "EUR",
		"amount_cents":          authAmount,
		"capture_amount_cents":  capture,
		"capture_balance_cents": balance,
		"void_balance_cents":    balance,
	})
}

// VoidDoc voids the authorization authToken (of authAmount).
func VoidDoc(id, authToken string, authAmount int64) map[string]any {
	return TxDoc(id, "authorizations", "NR-"+id+"/T/001", map[string]any{
		"token":              authToken,
		"currency_code":      "EUR",
		"amount_cents":       authAmount,
		"void_balance_cents": authAmount,
	})
}

// RefundDoc refunds refund cents of the capture captureToken (of
// captureAmount); number tells refunds of one capture apart.
func RefundDoc(id, number, captureToken string, captureAmount, refund, balance int64) map[string]any {
	return TxDoc(id, "captures", number, map[string]any{
		"token":                captureToken,
		"currency_code":        "EUR",
		"amount_cents":         captureAmount,
		"refund_amount_cents":  refund,
		"refund_balance_cents": balance,
	})
}

// TxDoc is a transaction resource (authorizations, captures) with attrs.
func TxDoc(id, typ, number string, attrs map[string]any) map[string]any {
	attrs["number"] = number
	attrs["created_at"] = Stamp
	attrs["updated_at"] = Stamp
	return map[string]any{"data": map[string]any{"id": id, "type": typ, "attributes": attrs}}
}
