package handlers

import (
	"bytes"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"path"
	"reflect"
	"strings"
	"testing"

	"github.com/paybridge/caddy-paybridge/payment"
	"github.com/paybridge/caddy-paybridge/signature"
)

// fuzzSeedBodies are realistic requests and near misses; the corpus in
// testdata/fuzz/FuzzDecodeCommerceLayer holds more.
func fuzzSeedBodies(f *testing.F) [][]byte {
	var out [][]byte
	for _, action := range clActionNames {
		out = append(out, mustJSON(f, clDocFor(action)))
	}
	partial := clAuthorizationDoc()
	attrs(partial)["capture_amount_cents"] = 5000
	out = append(out, mustJSON(f, partial),
		[]byte(`{"data":{"id":"1","type":"captures","attributes":{"token":"t","amount_cents":"12.5","refund_amount_cents":-3}}}`),
		[]byte(`{"data":{"id":"1","type":"external_payments","attributes":{"payment_source_token":"tok"}},"included":[{"id":"o","type":"orders","attributes":{"currency_code":"usd","total_amount_with_taxes_cents":1e3}}]}`),
		[]byte(`{"data":{"id":"1","type":"authorizations","attributes":{"token":"t","amount_cents":9223372036854775808}}}`),
		[]byte(`{"data":null}`), []byte(`[]`), []byte(``), []byte(`{"data":{"attributes":null}}`),
	)
	return out
}

// FuzzDecodeCommerceLayer decodes each input as every action: it never
// panics, refuses only with the decoder's own codes, and whatever it
// accepts is usable by the engine.
func FuzzDecodeCommerceLayer(f *testing.F) {
	for _, b := range fuzzSeedBodies(f) {
		f.Add(b)
	}
	f.Fuzz(func(t *testing.T, body []byte) {
		for _, action := range clActionNames {
			call, perr := decodeCommerceLayer(action, body)
			if (call == nil) == (perr == nil) {
				t.Fatalf("%s: call %+v and error %v", action, call, perr)
			}
			again, perr2 := decodeCommerceLayer(action, body)
			if !reflect.DeepEqual(call, again) || !reflect.DeepEqual(perr, perr2) {
				t.Fatalf("%s: decoding is not deterministic", action)
			}
			if perr != nil {
				switch {
				case perr.Kind == payment.KindInvalidRequest && perr.Code == payment.CodeInvalidRequest:
				case perr.Kind == payment.KindInvalidAmount && perr.Code == payment.CodeInvalidAmount:
				default:
					t.Fatalf("%s: refusal %+v", action, perr)
				}
				if perr.Message == "" {
					t.Fatalf("%s: refusal without a message", action)
				}
				continue
			}
			if !strings.HasPrefix(call.key, action+"|"+clDataTypes[action]+"|") {
				t.Fatalf("%s: key %q", action, call.key)
			}
			if call.currency != "" {
				if _, ok := payment.CurrencyExponent(call.currency); !ok {
					t.Fatalf("%s: currency %q is not a known ISO 4217 code", action, call.currency)
				}
			}
			switch action {
			case "authorize":
				if call.amount <= 0 || call.currency == "" || call.sourceToken == "" {
					t.Fatalf("authorize: %+v", call)
				}
			case "capture", "refund":
				if call.amount <= 0 || call.token == "" {
					t.Fatalf("%s: %+v", action, call)
				}
			case "void":
				if call.token == "" || call.amount != 0 {
					t.Fatalf("void: %+v", call)
				}
			case "token":
				if call.sourceToken == "" {
					t.Fatalf("token: %+v", call)
				}
			}
		}
	})
}

// FuzzCommerceLayerHandler sends any body, correctly signed, to any action:
// the handler never panics and never answers 5xx except the 503 of an
// engine that is not started, which only a request that decodes reaches.
func FuzzCommerceLayerHandler(f *testing.F) {
	for _, b := range fuzzSeedBodies(f) {
		for _, action := range append(clActionNames, "nope", "authorize/", "../token", "") {
			f.Add(action, b)
		}
	}
	h := testCommerceLayer()
	f.Fuzz(func(t *testing.T, action string, body []byte) {
		r := &http.Request{
			Method:        http.MethodPost,
			URL:           &url.URL{Path: "/commercelayer/" + action},
			Header:        http.Header{},
			Body:          io.NopCloser(bytes.NewReader(body)),
			ContentLength: int64(len(body)),
		}
		r.Header.Set(signature.CommerceLayerHeader, signature.CommerceLayer(testSecret, body))
		w := httptest.NewRecorder()
		h.ServeHTTP(w, r)

		if w.Code >= 500 && w.Code != http.StatusServiceUnavailable {
			t.Fatalf("status %d: %s", w.Code, w.Body)
		}
		var reply clReply
		if err := json.Unmarshal(w.Body.Bytes(), &reply); err != nil {
			t.Fatalf("answer is not JSON: %v: %q", err, w.Body)
		}
		if reply.Success || reply.Error == nil || reply.Error.Code == "" {
			t.Fatalf("answer %s", w.Body)
		}
		name := path.Base(r.URL.Path)
		_, known := clActions[name]
		switch w.Code {
		case http.StatusServiceUnavailable:
			if !known {
				t.Fatalf("action %q reached the engine", action)
			}
			if _, perr := decodeCommerceLayer(name, body); perr != nil {
				t.Fatalf("a body the decoder refuses (%v) reached the engine", perr)
			}
		case http.StatusBadRequest:
			if _, perr := decodeCommerceLayer(name, body); perr == nil {
				t.Fatalf("a body the decoder accepts was refused: %s", w.Body)
			}
		case http.StatusNotFound:
			if known {
				t.Fatalf("known action %q answered 404", name)
			}
		case http.StatusRequestEntityTooLarge:
			if int64(len(body)) <= h.maxBody() {
				t.Fatalf("413 for %d bytes", len(body))
			}
		default:
			t.Fatalf("status %d: %s", w.Code, w.Body)
		}
	})
}
