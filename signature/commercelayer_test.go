package signature_test

import (
	"encoding/base64"
	"encoding/hex"
	"strings"
	"testing"

	"github.com/paybridge/caddy-paybridge/signature"
)

func TestCommerceLayerKnownAnswer(t *testing.T) {
	for _, tc := range []struct{ secret, body, want string }{
		{clSecret, clBody, clSig},
		{clSecret, clBody2, clSig2},
		{rfcKey, rfcData, b64FromHex(t, rfc4231)},
	} {
		if got := signature.CommerceLayer([]byte(tc.secret), []byte(tc.body)); got != tc.want {
			t.Errorf("CommerceLayer(%q, %q) = %q, want %q", tc.secret, tc.body, got, tc.want)
		}
	}
}

func TestVerifyCommerceLayer(t *testing.T) {
	body := []byte(clBody)
	for _, tc := range []struct {
		name    string
		header  string
		body    []byte
		secrets [][]byte
		want    bool
	}{
		{"valid", clSig, body, secrets(clSecret), true},
		{"rotation second secret", clSig, body, secrets("new_secret", clSecret), true},
		{"rotation first secret", clSig, body, secrets(clSecret, "new_secret"), true},
		{"empty secrets ignored", clSig, body, secrets("", clSecret, ""), true},
		{"wrong secret", clSig, body, secrets("other"), false},
		{"tampered body", clSig, []byte(clBody + " "), secrets(clSecret), false},
		{"empty body", clSig, nil, secrets(clSecret), false},
		{"empty header", "", body, secrets(clSecret), false},
		{"nil secrets", clSig, body, nil, false},
		{"only empty secrets", clSig, body, secrets("", ""), false},
		{"not base64", strings.Repeat("!", len(clSig)), body, secrets(clSecret), false},
		{"truncated", clSig[:len(clSig)-1], body, secrets(clSecret), false},
		{"trailing newline", clSig + "\n", body, secrets(clSecret), false},
		{"embedded newline", clSig[:20] + "\n" + clSig[20:len(clSig)-1], body, secrets(clSecret), false},
		{"leading space", " " + clSig[:len(clSig)-1], body, secrets(clSecret), false},
		{"hex digest", hexFromB64(t, clSig), body, secrets(clSecret), false},
		{"raw std", strings.TrimRight(clSig, "="), body, secrets(clSecret), false},
		{"url safe padded", base64URL(t, clSig2, base64.URLEncoding), []byte(clBody2), secrets(clSecret), false},
		{"url safe raw", base64URL(t, clSig2, base64.RawURLEncoding), []byte(clBody2), secrets(clSecret), false},
		{"non-canonical padding bits", clSig[:len(clSig)-2] + "p=", body, secrets(clSecret), false},
		{"secret as header", clSecret, body, secrets(clSecret), false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got := signature.VerifyCommerceLayer(tc.header, tc.body, tc.secrets); got != tc.want {
				t.Errorf("VerifyCommerceLayer(%q) = %v, want %v", tc.header, got, tc.want)
			}
		})
	}
}

func TestCommerceLayerRoundTrip(t *testing.T) {
	body := []byte(strings.Repeat("x", 1000))
	h := signature.CommerceLayer([]byte("k"), body)
	if !signature.VerifyCommerceLayer(h, body, secrets("k")) {
		t.Fatal("own signature rejected")
	}
}

func b64FromHex(t *testing.T, h string) string {
	t.Helper()
	b, err := hex.DecodeString(h)
	if err != nil {
		t.Fatal(err)
	}
	return base64.StdEncoding.EncodeToString(b)
}

func hexFromB64(t *testing.T, s string) string {
	t.Helper()
	b, err := base64.StdEncoding.DecodeString(s)
	if err != nil {
		t.Fatal(err)
	}
	return hex.EncodeToString(b)
}

// base64URL re-encodes a standard signature and checks the variant really
// differs, otherwise the test would prove nothing.
func base64URL(t *testing.T, std string, enc *base64.Encoding) string {
	t.Helper()
	b, err := base64.StdEncoding.DecodeString(std)
	if err != nil {
		t.Fatal(err)
	}
	s := enc.EncodeToString(b)
	if s == std {
		t.Fatalf("%q has no URL-specific characters", std)
	}
	return s
}
