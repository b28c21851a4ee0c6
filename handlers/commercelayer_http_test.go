package handlers

import (
	"bytes"
	"encoding/base64"
	"encoding/hex"
	"io"
	"net/http"
	"strings"
	"testing"

	"github.com/paybridge/caddy-paybridge/signature"
)

// wantError checks an error answer: status, code, the Commerce Layer error
// shape with no data, and a JSON content type.
func wantError(t *testing.T, name string, h *CommerceLayer, r *http.Request, status int, code string) {
	t.Helper()
	w, reply := serve(h, r)
	if w.Code != status {
		t.Errorf("%s: status %d, want %d; body %s", name, w.Code, status, w.Body)
		return
	}
	if reply.Success || reply.Error == nil || reply.Error.Code != code || reply.Error.Message == "" || reply.Data != nil {
		t.Errorf("%s: body %s, want error code %q and no data", name, w.Body, code)
	}
	if ct := w.Header().Get("Content-Type"); ct != "application/json" {
		t.Errorf("%s: Content-Type %q", name, ct)
	}
}

func TestServeHTTPCheckOrder(t *testing.T) {
	h := testCommerceLayer() // MaxBodySize 4096; Engine says "not started"
	valid := mustJSON(t, clAuthorizeDoc())
	tooBig := bytes.Repeat([]byte("x"), 5000)
	garbage := []byte(`{"data":`)

	// Method first, whatever else is wrong.
	for _, m := range []string{http.MethodGet, http.MethodPut, http.MethodDelete, http.MethodHead, http.MethodPatch} {
		r := signedRequest(m, "nope", tooBig, nil)
		w, _ := serve(h, r)
		if w.Code != http.StatusMethodNotAllowed || w.Header().Get("Allow") != http.MethodPost {
			t.Errorf("%s: %d, Allow %q", m, w.Code, w.Header().Get("Allow"))
		}
	}
	wantError(t, "GET", h, signedRequest(http.MethodGet, "authorize", valid, testSecret), 405, "method_not_allowed")

	// Then the action.
	for _, action := range []string{"nope", "authorise", "Authorize", "", "authorize.json"} {
		wantError(t, "action "+action, h, signedRequest(http.MethodPost, action, tooBig, nil), 404, "not_found")
	}
	// Then the size: before the signature (nothing over the limit is MACed).
	wantError(t, "too big", h, signedRequest(http.MethodPost, "authorize", tooBig, nil), 413, "body_too_large")
	wantError(t, "too big, signed", h, signedRequest(http.MethodPost, "authorize", tooBig, testSecret), 413, "body_too_large")
	chunked := signedRequest(http.MethodPost, "authorize", tooBig, testSecret)
	chunked.ContentLength = -1 // no Content-Length: the limit is found while reading
	wantError(t, "too big, chunked", h, chunked, 413, "body_too_large")

	// Then the signature.
	wantError(t, "unsigned", h, signedRequest(http.MethodPost, "authorize", garbage, nil), 401, "invalid_signature")
	wantError(t, "wrong secret", h, signedRequest(http.MethodPost, "authorize", garbage, []byte("other")), 401, "invalid_signature")
	r := signedRequest(http.MethodPost, "authorize", valid, nil)
	r.Header.Set(signature.CommerceLayerHeader, signature.CommerceLayer(testSecret, append(append([]byte{}, valid...), ' ')))
	wantError(t, "signature of other bytes", h, r, 401, "invalid_signature")
	mac, _ := base64.StdEncoding.DecodeString(signature.CommerceLayer(testSecret, valid))
	for name, header := range map[string]string{
		"hex":            hex.EncodeToString(mac),
		"url-safe":       base64.URLEncoding.EncodeToString(mac),
		"unpadded":       base64.RawStdEncoding.EncodeToString(mac),
		"with spaces":    " " + base64.StdEncoding.EncodeToString(mac),
		"sha256= prefix": "sha256=" + base64.StdEncoding.EncodeToString(mac),
	} {
		r := signedRequest(http.MethodPost, "authorize", valid, nil)
		r.Header.Set(signature.CommerceLayerHeader, header)
		wantError(t, "signature "+name, h, r, 401, "invalid_signature")
	}

	// Then decoding.
	wantError(t, "garbage", h, signedRequest(http.MethodPost, "authorize", garbage, testSecret), 400, "invalid_request")
	wantError(t, "wrong type for the action", h, signedRequest(http.MethodPost, "capture", valid, testSecret), 400, "invalid_request")
	badAmount := clAuthorizeDoc()
	orderAttrs(badAmount)["total_amount_with_taxes_cents"] = 0
	wantError(t, "zero amount", h, signedRequest(http.MethodPost, "authorize", mustJSON(t, badAmount), testSecret), 400, "invalid_amount")

	// Every check passed: the engine is reached (and here is not started).
	for _, action := range clActionNames {
		body := mustJSON(t, clDocFor(action))
		wantError(t, action, h, signedRequest(http.MethodPost, action, body, testSecret), 503, "unavailable")
		// Any configured secret verifies.
		wantError(t, action+" (previous secret)", h, signedRequest(http.MethodPost, action, body, testOldSecret), 503, "unavailable")
	}
	// A trailing slash names the same action.
	wantError(t, "trailing slash", h, signedRequest(http.MethodPost, "authorize/", valid, testSecret), 503, "unavailable")
}

func TestServeHTTPBodyLimit(t *testing.T) {
	h := testCommerceLayer()
	h.MaxBodySize = 64
	exact := bytes.Repeat([]byte(" "), 64)
	// Exactly at the limit: read, then refused for its content.
	wantError(t, "at the limit", h, signedRequest(http.MethodPost, "capture", exact, testSecret), 400, "invalid_request")
	over := bytes.Repeat([]byte(" "), 65)
	wantError(t, "over the limit", h, signedRequest(http.MethodPost, "capture", over, testSecret), 413, "body_too_large")

	// The default limit is 1 MiB.
	h.MaxBodySize = 0
	big := bytes.Repeat([]byte(" "), DefaultMaxBodySize)
	wantError(t, "1 MiB", h, signedRequest(http.MethodPost, "capture", big, testSecret), 400, "invalid_request")
	big = append(big, ' ')
	wantError(t, "1 MiB + 1", h, signedRequest(http.MethodPost, "capture", big, testSecret), 413, "body_too_large")
}

type failingReader struct{}

func (failingReader) Read([]byte) (int, error) { return 0, io.ErrUnexpectedEOF }

func TestServeHTTPUnreadableBody(t *testing.T) {
	h := testCommerceLayer()
	r := signedRequest(http.MethodPost, "authorize", nil, testSecret)
	r.Body = io.NopCloser(failingReader{})
	r.ContentLength = -1
	wantError(t, "unreadable", h, r, 400, "invalid_request")
}

func TestServeHTTPErrorsNeverEchoSecretsOrTokens(t *testing.T) {
	h := testCommerceLayer()
	doc := clAuthorizeDoc()
	orderAttrs(doc)["total_amount_with_taxes_cents"] = -1
	for _, r := range []*http.Request{
		signedRequest(http.MethodPost, "authorize", mustJSON(t, doc), testSecret),
		signedRequest(http.MethodPost, "authorize", mustJSON(t, doc), []byte("wrong")),
		signedRequest(http.MethodPost, "authorize", mustJSON(t, clAuthorizeDoc()), testSecret),
	} {
		w, _ := serve(h, r)
		for _, s := range []string{secretSource, string(testSecret), string(testOldSecret), errNotStarted.Error()} {
			if strings.Contains(w.Body.String(), s) {
				t.Errorf("answer %s contains %q", w.Body, s)
			}
		}
	}
}
