package signature_test

import (
	"testing"
	"time"

	"github.com/paybridge/caddy-paybridge/signature"
)

func TestSignKnownAnswer(t *testing.T) {
	at := time.Unix(pbT, 999_999_999) // sub-second part must not leak into t
	for _, tc := range []struct {
		name    string
		secrets [][]byte
		want    string
	}{
		{"one secret", secrets(pbOld), "t=1700000000,v1=" + pbV1},
		{"rotation keeps order", secrets(pbOld, pbNew), "t=1700000000,v1=" + pbV1 + ",v1=" + pbV1b},
		{"reversed", secrets(pbNew, pbOld), "t=1700000000,v1=" + pbV1b + ",v1=" + pbV1},
		{"empty secrets skipped", secrets("", pbOld, ""), "t=1700000000,v1=" + pbV1},
		{"no secrets", nil, "t=1700000000"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got := signature.Sign(tc.secrets, at, []byte(pbBody)); got != tc.want {
				t.Errorf("Sign = %q, want %q", got, tc.want)
			}
		})
	}
}
