package signature_test

import (
	"strings"
	"testing"

	"github.com/paybridge/caddy-paybridge/signature"
)

func TestMIBKnownAnswer(t *testing.T) {
	if got := signature.MIB([]byte(mibSecret), []byte(mibBody)); got != mibSig {
		t.Errorf("MIB = %q, want %q", got, mibSig)
	}
	if got := signature.MIB([]byte(rfcKey), []byte(rfcData)); got != "sha1="+rfc2202 {
		t.Errorf("MIB(RFC 2202) = %q, want sha1=%s", got, rfc2202)
	}
}

func TestVerifyMIB(t *testing.T) {
	body := []byte(mibBody)
	for _, tc := range []struct {
		name    string
		header  string
		body    []byte
		secrets [][]byte
		want    bool
	}{
		{"valid", mibSig, body, secrets(mibSecret), true},
		{"upper-case hex", "sha1=" + strings.ToUpper(strings.TrimPrefix(mibSig, "sha1=")), body, secrets(mibSecret), true},
		{"rotation", mibSig, body, secrets("next", mibSecret), true},
		{"wrong secret", mibSig, body, secrets("next"), false},
		{"tampered body", mibSig, []byte(`{"order_id":43}`), secrets(mibSecret), false},
		{"empty header", "", body, secrets(mibSecret), false},
		{"no secrets", mibSig, body, nil, false},
		{"only empty secret", mibSig, body, secrets(""), false},
		{"missing prefix", strings.TrimPrefix(mibSig, "sha1="), body, secrets(mibSecret), false},
		{"wrong prefix", "sha256=" + strings.TrimPrefix(mibSig, "sha1="), body, secrets(mibSecret), false},
		{"upper-case prefix", "SHA1=" + strings.TrimPrefix(mibSig, "sha1="), body, secrets(mibSecret), false},
		{"truncated", mibSig[:len(mibSig)-2], body, secrets(mibSecret), false},
		{"bad hex", mibSig[:len(mibSig)-1] + "g", body, secrets(mibSecret), false},
		{"prefix only", "sha1=", body, secrets(mibSecret), false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got := signature.VerifyMIB(tc.header, tc.body, tc.secrets); got != tc.want {
				t.Errorf("VerifyMIB(%q) = %v, want %v", tc.header, got, tc.want)
			}
		})
	}
}
