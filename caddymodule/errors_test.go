package caddymodule

import (
	"bytes"
	"encoding/json"
	"io"
	"net/http"
	"strings"
	"testing"
)

// The error table: every refusal has its status and a stable error.code, in
// Commerce Layer's error shape.

func TestErrorsSignature(t *testing.T) {
	e := newEnv(t, "secret-one", "secret-two")
	body := mustJSON(t, authorizeDoc("ep_"+uid(), "tok_visa_"+uid(), 1000))

	t.Run("missing", func(t *testing.T) {
		assertError(t, do(t, http.MethodPost, clPath+"authorize", body, nil), http.StatusUnauthorized, "invalid_signature")
	})
	t.Run("wrong", func(t *testing.T) {
		// the right secret over other bytes
		sig := clSign("secret-one", append(append([]byte(nil), body...), ' '))
		r := do(t, http.MethodPost, clPath+"authorize", body, map[string]string{"X-CommerceLayer-Signature": sig})
		assertError(t, r, http.StatusUnauthorized, "invalid_signature")
	})
	t.Run("garbage", func(t *testing.T) {
		r := do(t, http.MethodPost, clPath+"authorize", body, map[string]string{"X-CommerceLayer-Signature": "not-a-signature"})
		assertError(t, r, http.StatusUnauthorized, "invalid_signature")
	})
	t.Run("unknown secret", func(t *testing.T) {
		assertError(t, post(t, clPath+"authorize", body, "secret-three"), http.StatusUnauthorized, "invalid_signature")
	})
	t.Run("nothing happened", func(t *testing.T) {
		if n := len(readLedger(t, e.ledger)); n != 0 {
			t.Errorf("refused requests reached the PSP: %d ledger lines", n)
		}
	})
	t.Run("second secret accepted", func(t *testing.T) {
		data := assertOK(t, post(t, clPath+"authorize", body, "secret-two"), http.StatusOK)
		str(t, data, "transaction_token")
	})
	t.Run("first secret accepted", func(t *testing.T) {
		b := mustJSON(t, authorizeDoc("ep_"+uid(), "tok_visa_"+uid(), 1000))
		assertOK(t, post(t, clPath+"authorize", b, "secret-one"), http.StatusOK)
	})
}

func TestErrorsMethodActionSizeOrder(t *testing.T) {
	e := newEnv(t)
	body := mustJSON(t, authorizeDoc("ep_"+uid(), "tok_visa_"+uid(), 1000))

	t.Run("GET is 405", func(t *testing.T) {
		r := do(t, http.MethodGet, clPath+"authorize", nil, nil)
		assertError(t, r, http.StatusMethodNotAllowed, "method_not_allowed")
		if allow := r.Header.Get("Allow"); allow != http.MethodPost {
			t.Errorf("Allow %q, want POST", allow)
		}
	})
	t.Run("signed PUT is 405", func(t *testing.T) {
		r := do(t, http.MethodPut, clPath+"authorize", body, map[string]string{"X-CommerceLayer-Signature": clSign(e.secret, body)})
		assertError(t, r, http.StatusMethodNotAllowed, "method_not_allowed")
	})
	t.Run("unknown action is 404", func(t *testing.T) {
		assertError(t, post(t, clPath+"settle", body, e.secret), http.StatusNotFound, "not_found")
	})
	t.Run("GET to an unknown action is 405", func(t *testing.T) {
		assertError(t, do(t, http.MethodGet, clPath+"settle", nil, nil), http.StatusMethodNotAllowed, "method_not_allowed")
	})
	t.Run("unknown action with a bad body is 404", func(t *testing.T) {
		r := do(t, http.MethodPost, clPath+"settle", []byte("{not json"), map[string]string{"X-CommerceLayer-Signature": "bad"})
		assertError(t, r, http.StatusNotFound, "not_found")
	})

	big := authorizeDoc("ep_"+uid(), "tok_visa_"+uid(), 1000)
	attrs(big)["metadata"] = map[string]any{"padding": strings.Repeat("x", 1100)}
	bigBody := mustJSON(t, big)
	t.Run("body over max_body_size is 413", func(t *testing.T) {
		assertError(t, post(t, smallPath+"authorize", bigBody, e.secret), http.StatusRequestEntityTooLarge, "body_too_large")
	})
	t.Run("oversized body with a bad signature is 413", func(t *testing.T) {
		r := do(t, http.MethodPost, smallPath+"authorize", bigBody, map[string]string{"X-CommerceLayer-Signature": "bad"})
		assertError(t, r, http.StatusRequestEntityTooLarge, "body_too_large")
		r = do(t, http.MethodPost, smallPath+"authorize", bigBody, nil)
		assertError(t, r, http.StatusRequestEntityTooLarge, "body_too_large")
	})
	t.Run("oversized chunked body is 413", func(t *testing.T) {
		req, err := http.NewRequest(http.MethodPost, baseURL+smallPath+"authorize", io.MultiReader(bytes.NewReader(bigBody)))
		if err != nil {
			t.Fatal(err)
		}
		req.ContentLength = -1 // no Content-Length: the limit must hold while reading
		req.Header.Set("X-CommerceLayer-Signature", clSign(e.secret, bigBody))
		resp, err := httpClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		assertError(t, response{Status: resp.StatusCode, Header: resp.Header, Body: b}, http.StatusRequestEntityTooLarge, "body_too_large")
	})
	t.Run("unknown action with an oversized body is 404", func(t *testing.T) {
		assertError(t, post(t, smallPath+"settle", bigBody, e.secret), http.StatusNotFound, "not_found")
	})
	t.Run("GET with an oversized body is 405", func(t *testing.T) {
		assertError(t, do(t, http.MethodGet, smallPath+"authorize", bigBody, nil), http.StatusMethodNotAllowed, "method_not_allowed")
	})
	t.Run("bad signature before decoding", func(t *testing.T) {
		r := do(t, http.MethodPost, clPath+"authorize", []byte("{not json"), map[string]string{"X-CommerceLayer-Signature": clSign("other", []byte("{not json"))})
		assertError(t, r, http.StatusUnauthorized, "invalid_signature")
	})
	t.Run("a body under the limit is served", func(t *testing.T) {
		small := mustJSON(t, authorizeDoc("ep_"+uid(), "tok_visa_"+uid(), 1000))
		if len(small) > 1024 {
			t.Fatalf("test body is %d bytes", len(small))
		}
		assertOK(t, post(t, smallPath+"authorize", small, e.secret), http.StatusOK)
	})
	t.Run("exactly max_body_size is served, one byte more is 413", func(t *testing.T) {
		sized := func(n int) []byte {
			d := authorizeDoc("ep_"+uid(), "tok_visa_"+uid(), 1000)
			attrs(d)["metadata"] = map[string]any{"padding": ""}
			pad := n - len(mustJSON(t, d))
			if pad < 0 {
				t.Fatalf("base body over %d bytes", n)
			}
			attrs(d)["metadata"] = map[string]any{"padding": strings.Repeat("x", pad)}
			b := mustJSON(t, d)
			if len(b) != n {
				t.Fatalf("built %d bytes, want %d", len(b), n)
			}
			return b
		}
		assertOK(t, post(t, smallPath+"authorize", sized(1024), e.secret), http.StatusOK)
		assertError(t, post(t, smallPath+"authorize", sized(1025), e.secret), http.StatusRequestEntityTooLarge, "body_too_large")
	})
	t.Run("nothing reached the PSP but the accepted ones", func(t *testing.T) {
		if ops := countOps(readLedger(t, e.ledger)); ops["authorize"] != 2 || len(ops) != 1 {
			t.Errorf("ledger %v, want 2 authorize", ops)
		}
	})
}

func TestErrorsInvalidRequest(t *testing.T) {
	e := newEnv(t)
	auth := e.authorize("tok_visa_"+uid(), 1000)

	raw := func(action string, body []byte) response { return post(t, clPath+action, body, e.secret) }
	cases := []struct {
		name, action string
		body         []byte
	}{
		{"not JSON", "authorize", []byte("this is not json")},
		{"empty body", "authorize", []byte{}},
		{"JSON array", "authorize", []byte(`[{"data":{}}]`)},
		{"not JSON:API", "authorize", []byte(`{"payment_source_token":"tok_visa","amount_cents":100}`)},
		{"data null", "capture", []byte(`{"data":null}`)},
		{"trailing garbage", "authorize", append(mustJSON(t, authorizeDoc("ep_"+uid(), "tok_visa", 100)), []byte(" {}")...)},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) { assertError(t, raw(c.action, c.body), http.StatusBadRequest, "invalid_request") })
	}

	t.Run("wrong data.type for authorize", func(t *testing.T) {
		d := authorizeDoc("ep_"+uid(), "tok_visa", 100)
		d["data"].(map[string]any)["type"] = "authorizations"
		assertError(t, e.send("authorize", d), http.StatusBadRequest, "invalid_request")
	})
	t.Run("wrong data.type for capture", func(t *testing.T) {
		d := captureDoc("au_"+uid(), auth, 1000, 100, 1000)
		d["data"].(map[string]any)["type"] = "captures"
		assertError(t, e.send("capture", d), http.StatusBadRequest, "invalid_request")
	})
	t.Run("wrong data.type for void", func(t *testing.T) {
		d := voidDoc("au_"+uid(), auth, 1000)
		d["data"].(map[string]any)["type"] = "external_payments"
		assertError(t, e.send("void", d), http.StatusBadRequest, "invalid_request")
	})
	t.Run("wrong data.type for refund", func(t *testing.T) {
		assertError(t, e.send("refund", captureDoc("au_"+uid(), auth, 1000, 100, 1000)), http.StatusBadRequest, "invalid_request")
	})
	t.Run("wrong data.type for token", func(t *testing.T) {
		assertError(t, e.send("token", captureDoc("au_"+uid(), auth, 1000, 100, 1000)), http.StatusBadRequest, "invalid_request")
	})
	t.Run("missing payment_source_token", func(t *testing.T) {
		d := authorizeDoc("ep_"+uid(), "", 100)
		delete(attrs(d), "payment_source_token")
		assertError(t, e.send("authorize", d), http.StatusBadRequest, "invalid_request")
	})
	t.Run("empty payment_source_token on token", func(t *testing.T) {
		assertError(t, e.send("token", tokenDoc("ep_"+uid(), "")), http.StatusBadRequest, "invalid_request")
	})
	t.Run("missing token on capture", func(t *testing.T) {
		d := captureDoc("au_"+uid(), auth, 1000, 100, 1000)
		delete(attrs(d), "token")
		assertError(t, e.send("capture", d), http.StatusBadRequest, "invalid_request")
	})
	t.Run("missing token on void", func(t *testing.T) {
		d := voidDoc("au_"+uid(), "", 1000)
		assertError(t, e.send("void", d), http.StatusBadRequest, "invalid_request")
	})
	t.Run("missing token on refund", func(t *testing.T) {
		d := refundDoc("ca_"+uid(), "", 1000, 100, 1000)
		assertError(t, e.send("refund", d), http.StatusBadRequest, "invalid_request")
	})
	t.Run("missing order", func(t *testing.T) {
		d := authorizeDoc("ep_"+uid(), "tok_visa", 100)
		delete(d, "included")
		assertError(t, e.send("authorize", d), http.StatusBadRequest, "invalid_request")
	})
	t.Run("order not the one related", func(t *testing.T) {
		d := authorizeDoc("ep_"+uid(), "tok_visa", 100)
		d["included"].([]any)[0].(map[string]any)["id"] = "some_other_order"
		assertError(t, e.send("authorize", d), http.StatusBadRequest, "invalid_request")
	})
	t.Run("missing attributes", func(t *testing.T) {
		d := authorizeDoc("ep_"+uid(), "tok_visa", 100)
		delete(d["data"].(map[string]any), "attributes")
		assertError(t, e.send("authorize", d), http.StatusBadRequest, "invalid_request")
	})
	t.Run("nothing reached the PSP", func(t *testing.T) {
		if ops := countOps(readLedger(t, e.ledger)); ops["authorize"] != 1 || len(ops) != 1 {
			t.Errorf("ledger %v, want only the setup's authorize", ops)
		}
	})
}

func TestErrorsInvalidAmount(t *testing.T) {
	e := newEnv(t)
	auth := e.authorize("tok_visa_"+uid(), 1000)

	order := func(mut func(o map[string]any)) response {
		d := authorizeDoc("ep_"+uid(), "tok_visa_"+uid(), 1000)
		mut(orderAttrs(d))
		return e.send("authorize", d)
	}
	t.Run("missing currency", func(t *testing.T) {
		assertError(t, order(func(o map[string]any) { delete(o, "currency_code") }), http.StatusBadRequest, "invalid_amount")
	})
	t.Run("unknown currency", func(t *testing.T) {
		assertError(t, order(func(o map[string]any) { o["currency_code"] = "ZZZ" }), http.StatusBadRequest, "invalid_amount")
	})
	t.Run("missing amount", func(t *testing.T) {
		assertError(t, order(func(o map[string]any) { delete(o, "total_amount_with_taxes_cents") }), http.StatusBadRequest, "invalid_amount")
	})
	t.Run("zero amount", func(t *testing.T) {
		assertError(t, order(func(o map[string]any) { o["total_amount_with_taxes_cents"] = 0 }), http.StatusBadRequest, "invalid_amount")
	})
	t.Run("negative amount", func(t *testing.T) {
		assertError(t, order(func(o map[string]any) { o["total_amount_with_taxes_cents"] = -500 }), http.StatusBadRequest, "invalid_amount")
	})
	t.Run("non-integer amount", func(t *testing.T) {
		assertError(t, order(func(o map[string]any) { o["total_amount_with_taxes_cents"] = json.Number("10.50") }), http.StatusBadRequest, "invalid_amount")
	})
	t.Run("exponent amount", func(t *testing.T) {
		assertError(t, order(func(o map[string]any) { o["total_amount_with_taxes_cents"] = json.Number("1e3") }), http.StatusBadRequest, "invalid_amount")
	})
	t.Run("non-integer capture amount", func(t *testing.T) {
		d := captureDoc("au_"+uid(), auth, 1000, 0, 1000)
		attrs(d)["capture_amount_cents"] = json.Number("100.5")
		assertError(t, e.send("capture", d), http.StatusBadRequest, "invalid_amount")
	})
	t.Run("capture without any amount", func(t *testing.T) {
		d := captureDoc("au_"+uid(), auth, 1000, 0, 1000)
		delete(attrs(d), "capture_amount_cents")
		delete(attrs(d), "amount_cents")
		assertError(t, e.send("capture", d), http.StatusBadRequest, "invalid_amount")
	})
	t.Run("capture of a negative amount_cents", func(t *testing.T) {
		d := captureDoc("au_"+uid(), auth, -5, 0, 1000)
		assertError(t, e.send("capture", d), http.StatusBadRequest, "invalid_amount")
	})
	t.Run("capture in an unknown currency", func(t *testing.T) {
		d := captureDoc("au_"+uid(), auth, 1000, 100, 1000)
		attrs(d)["currency_code"] = "ZZZ"
		assertError(t, e.send("capture", d), http.StatusBadRequest, "invalid_amount")
	})
	t.Run("capture in another currency than the payment's", func(t *testing.T) {
		d := captureDoc("au_"+uid(), auth, 1000, 100, 1000)
		attrs(d)["currency_code"] = "USD"
		assertError(t, e.send("capture", d), http.StatusBadRequest, "invalid_amount")
	})
	t.Run("refund without any amount", func(t *testing.T) {
		d := refundDoc("ca_"+uid(), auth, 1000, 0, 1000)
		delete(attrs(d), "refund_amount_cents")
		delete(attrs(d), "amount_cents")
		assertError(t, e.send("refund", d), http.StatusBadRequest, "invalid_amount")
	})
	t.Run("nothing reached the PSP and the authorization is whole", func(t *testing.T) {
		if ops := countOps(readLedger(t, e.ledger)); ops["authorize"] != 1 || len(ops) != 1 {
			t.Errorf("ledger %v, want only the setup's authorize", ops)
		}
		e.capture(auth, 1000, 1000)
	})
}

func TestErrorsBusinessRules(t *testing.T) {
	e := newEnv(t)

	t.Run("capture with an unknown token is 404", func(t *testing.T) {
		assertError(t, e.send("capture", captureDoc("au_"+uid(), "pbt_doesnotexist", 1000, 100, 1000)), http.StatusNotFound, "payment_not_found")
	})
	t.Run("void with an unknown token is 404", func(t *testing.T) {
		assertError(t, e.send("void", voidDoc("au_"+uid(), "pbt_doesnotexist", 1000)), http.StatusNotFound, "payment_not_found")
	})
	t.Run("refund with an unknown token is 404", func(t *testing.T) {
		assertError(t, e.send("refund", refundDoc("ca_"+uid(), "pbt_doesnotexist", 1000, 100, 1000)), http.StatusNotFound, "payment_not_found")
	})

	t.Run("capture after void is 409", func(t *testing.T) {
		auth := e.authorize("tok_visa_"+uid(), 1000)
		assertOK(t, e.send("void", voidDoc("au_"+uid(), auth, 1000)), http.StatusOK)
		assertError(t, e.send("capture", captureDoc("au_"+uid(), auth, 1000, 100, 1000)), http.StatusConflict, "invalid_state")
	})
	t.Run("void after capture is 409", func(t *testing.T) {
		auth := e.authorize("tok_visa_"+uid(), 1000)
		e.capture(auth, 1000, 400)
		assertError(t, e.send("void", voidDoc("au_"+uid(), auth, 1000)), http.StatusConflict, "invalid_state")
	})
	t.Run("refund with an authorization token is 409", func(t *testing.T) {
		auth := e.authorize("tok_visa_"+uid(), 1000)
		assertError(t, e.send("refund", refundDoc("ca_"+uid(), auth, 1000, 100, 1000)), http.StatusConflict, "invalid_state")
		// and once captured, still the wrong token
		e.capture(auth, 1000, 1000)
		assertError(t, e.send("refund", refundDoc("ca_"+uid(), auth, 1000, 100, 1000)), http.StatusConflict, "invalid_state")
	})
	t.Run("capture with a capture token is 409", func(t *testing.T) {
		auth := e.authorize("tok_visa_"+uid(), 1000)
		capt := e.capture(auth, 1000, 100)
		assertError(t, e.send("capture", captureDoc("au_"+uid(), capt, 1000, 100, 900)), http.StatusConflict, "invalid_state")
	})

	t.Run("capture over authorized is 422 and changes nothing", func(t *testing.T) {
		auth := e.authorize("tok_visa_"+uid(), 1000)
		assertError(t, e.send("capture", captureDoc("au_"+uid(), auth, 1000, 1001, 1000)), http.StatusUnprocessableEntity, "amount_exceeds_balance")
		e.capture(auth, 1000, 400)
		assertError(t, e.send("capture", captureDoc("au_"+uid(), auth, 1000, 601, 600)), http.StatusUnprocessableEntity, "amount_exceeds_balance")
		// the refused capture held nothing back: the whole rest is capturable
		e.capture(auth, 1000, 600)
		assertError(t, e.send("capture", captureDoc("au_"+uid(), auth, 1000, 1, 0)), http.StatusUnprocessableEntity, "amount_exceeds_balance")
	})
	t.Run("refund over captured is 422 and changes nothing", func(t *testing.T) {
		auth := e.authorize("tok_visa_"+uid(), 1000)
		capt := e.capture(auth, 1000, 700)
		assertError(t, e.send("refund", refundDoc("ca_"+uid(), capt, 700, 701, 700)), http.StatusUnprocessableEntity, "amount_exceeds_balance")
		assertOK(t, e.send("refund", refundDoc("ca_"+uid(), capt, 700, 300, 700)), http.StatusOK)
		assertError(t, e.send("refund", refundDoc("ca_"+uid(), capt, 700, 401, 400)), http.StatusUnprocessableEntity, "amount_exceeds_balance")
		data := assertOK(t, e.send("refund", refundDoc("ca_"+uid(), capt, 700, 400, 400)), http.StatusOK)
		if got := num(t, data, "amount_cents"); got != 400 {
			t.Errorf("refunded %d, want 400", got)
		}
	})
	t.Run("a refused void changes nothing", func(t *testing.T) {
		auth := e.authorize("tok_visa_"+uid(), 1000)
		assertError(t, e.send("void", voidDoc("au_"+uid(), "pbt_doesnotexist", 1000)), http.StatusNotFound, "payment_not_found")
		e.capture(auth, 1000, 1000)
	})
}

func TestErrorsDeclines(t *testing.T) {
	e := newEnv(t)

	t.Run("card_declined", func(t *testing.T) {
		r := e.send("authorize", authorizeDoc("ep_"+uid(), "tok_decline_"+uid(), 1000))
		assertError(t, r, http.StatusUnprocessableEntity, "card_declined")
	})
	t.Run("insufficient_funds", func(t *testing.T) {
		r := e.send("authorize", authorizeDoc("ep_"+uid(), "tok_insufficient_funds_"+uid(), 1000))
		assertError(t, r, http.StatusUnprocessableEntity, "insufficient_funds")
	})
	t.Run("capture_declined", func(t *testing.T) {
		auth := e.authorize("tok_capture_fail_"+uid(), 1000)
		assertError(t, e.send("capture", captureDoc("au_"+uid(), auth, 1000, 500, 1000)), http.StatusUnprocessableEntity, "capture_declined")
		// a declined capture holds nothing: the authorization can still be voided
		assertOK(t, e.send("void", voidDoc("au_"+uid(), auth, 1000)), http.StatusOK)
	})
	t.Run("refund_declined", func(t *testing.T) {
		auth := e.authorize("tok_refund_fail_"+uid(), 1000)
		capt := e.capture(auth, 1000, 1000)
		assertError(t, e.send("refund", refundDoc("ca_"+uid(), capt, 1000, 1000, 1000)), http.StatusUnprocessableEntity, "refund_declined")
	})
	t.Run("declined capture of a declined authorization token is not 200", func(t *testing.T) {
		r := e.send("authorize", authorizeDoc("ep_"+uid(), "tok_decline_"+uid(), 1000))
		assertError(t, r, http.StatusUnprocessableEntity, "card_declined")
		m := decodeJSON(t, r.Body)
		data, _ := m["data"].(map[string]any)
		if tok, _ := data["transaction_token"].(string); tok != "" {
			r := e.send("capture", captureDoc("au_"+uid(), tok, 1000, 1000, 1000))
			assertError(t, r, http.StatusConflict, "invalid_state")
		}
	})
	t.Run("gateway_unavailable with unavailable fail", func(t *testing.T) {
		body := mustJSON(t, authorizeDoc("ep_"+uid(), "tok_unavailable_"+uid(), 1000))
		r := post(t, failPath+"authorize", body, e.secret)
		assertError(t, r, http.StatusBadGateway, "gateway_unavailable")
	})
	t.Run("ledger holds only what executed", func(t *testing.T) {
		entries := readLedger(t, e.ledger)
		ledgerKeysUnique(t, entries)
		// capture_fail, refund_fail authorizations; the refund_fail capture; the void
		ops := countOps(entries)
		if ops["authorize"] != 2 || ops["capture"] != 1 || ops["void"] != 1 || ops["refund"] != 0 {
			t.Errorf("ledger %v, want 2 authorize, 1 capture, 1 void, 0 refund", ops)
		}
	})
}
