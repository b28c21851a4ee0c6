package signature_test

import (
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/paybridge/caddy-paybridge/signature"
)

func TestVerify(t *testing.T) {
	const (
		tol = 5 * time.Minute
		v1  = "t=1700000000,v1=" + pbV1
		// zero is well-formed hex that matches nothing.
		zero = "0000000000000000000000000000000000000000000000000000000000000000"
	)
	at := time.Unix(pbT, 0)
	body := []byte(pbBody)
	old := secrets(pbOld)

	for _, tc := range []struct {
		name    string
		header  string
		body    []byte
		secrets [][]byte
		now     time.Time
		tol     time.Duration
		want    error // nil, or the most specific sentinel expected
	}{
		{"valid", v1, body, old, at, tol, nil},
		{"rotation second secret", v1, body, secrets(pbNew, pbOld), at, tol, nil},
		{"rotation header carries both", "t=1700000000,v1=" + pbV1 + ",v1=" + pbV1b, body, secrets(pbNew), at, tol, nil},
		{"multiple v1 first matches nothing", "t=1700000000,v1=" + zero + ",v1=" + pbV1, body, old, at, tol, nil},
		{"empty secrets ignored", v1, body, secrets("", pbOld), at, tol, nil},
		{"v1 before t", "v1=" + pbV1 + ",t=1700000000", body, old, at, tol, nil},
		{"spaces around items", " t=1700000000 , v1=" + pbV1 + " ", body, old, at, tol, nil},
		{"upper-case hex", "t=1700000000,v1=" + strings.ToUpper(pbV1), body, old, at, tol, nil},
		{"unknown scheme ignored", "t=1700000000,v0=not-hex,v2=,v1=" + pbV1, body, old, at, tol, nil},
		{"openssl t=0", "t=0,v1=6b4a4b8b3c40f1e8f53a3d36682e5f99f7ad2ac1df1c93dfe336f329167641e7", nil, secrets("k"), time.Unix(0, 0), tol, nil},
		{"openssl max t", "t=253402300799,v1=668a20606ae620f9fef9b4321a834dc3e5c2b5cb65e6adb053e3649bd3b6492a", []byte("x"), secrets("k"), time.Unix(253402300799, 0), tol, nil},

		{"wrong secret", v1, body, secrets(pbNew), at, tol, signature.ErrInvalid},
		{"tampered body", v1, []byte(pbBody + "\n"), old, at, tol, signature.ErrInvalid},
		{"tampered t", "t=1700000001,v1=" + pbV1, body, old, at, tol, signature.ErrInvalid},
		{"leading zero t is a different signed string", "t=01700000000,v1=" + pbV1, body, old, at, tol, signature.ErrInvalid},
		{"only non-matching v1", "t=1700000000,v1=" + zero, body, old, at, tol, signature.ErrInvalid},
		{"nil secrets", v1, body, nil, at, tol, signature.ErrNoSecret},
		{"only empty secrets", v1, body, secrets("", ""), at, tol, signature.ErrNoSecret},

		{"tolerance edge past", v1, body, old, at.Add(tol), tol, nil},
		{"tolerance edge future", v1, body, old, at.Add(-tol), tol, nil},
		{"too old", v1, body, old, at.Add(tol + time.Nanosecond), tol, signature.ErrExpired},
		{"too far in future", v1, body, old, at.Add(-tol - time.Nanosecond), tol, signature.ErrExpired},
		{"zero tolerance skips time", v1, body, old, at.Add(1000 * time.Hour), 0, nil},
		{"negative tolerance skips time", v1, body, old, time.Time{}, -time.Second, nil},
		{"expired and forged reports forgery", v1, body, secrets(pbNew), at.Add(time.Hour), tol, signature.ErrInvalid},

		{"empty header", "", body, old, at, tol, signature.ErrInvalid},
		{"missing t", "v1=" + pbV1, body, old, at, tol, signature.ErrInvalid},
		{"empty t", "t=,v1=" + pbV1, body, old, at, tol, signature.ErrInvalid},
		{"non-numeric t", "t=abc,v1=" + pbV1, body, old, at, tol, signature.ErrInvalid},
		{"negative t", "t=-1700000000,v1=" + pbV1, body, old, at, tol, signature.ErrInvalid},
		{"plus t", "t=+1700000000,v1=" + pbV1, body, old, at, tol, signature.ErrInvalid},
		{"fractional t", "t=1700000000.5,v1=" + pbV1, body, old, at, tol, signature.ErrInvalid},
		{"t overflows int64", "t=99999999999999999999,v1=" + pbV1, body, old, at, tol, signature.ErrInvalid},
		{"t after year 9999", "t=253402300800,v1=" + pbV1, body, old, at, tol, signature.ErrInvalid},
		{"duplicate t", "t=1700000000,t=1700000000,v1=" + pbV1, body, old, at, tol, signature.ErrInvalid},
		{"upper-case T", "T=1700000000,v1=" + pbV1, body, old, at, tol, signature.ErrInvalid},
		{"no v1", "t=1700000000", body, old, at, tol, signature.ErrInvalid},
		{"only v0", "t=1700000000,v0=" + pbV1, body, old, at, tol, signature.ErrInvalid},
		{"empty v1", "t=1700000000,v1=", body, old, at, tol, signature.ErrInvalid},
		{"bad hex v1", "t=1700000000,v1=" + pbV1[:62] + "zz", body, old, at, tol, signature.ErrInvalid},
		{"short v1", "t=1700000000,v1=" + pbV1[:62], body, old, at, tol, signature.ErrInvalid},
		{"long v1", "t=1700000000,v1=" + pbV1 + "00", body, old, at, tol, signature.ErrInvalid},
		{"bad v1 next to good one", v1 + ",v1=xyz", body, old, at, tol, signature.ErrInvalid},
		{"base64 v1", "t=1700000000,v1=" + b64FromHex(t, pbV1), body, old, at, tol, signature.ErrInvalid},
		{"item without equals", v1 + ",garbage", body, old, at, tol, signature.ErrInvalid},
		{"trailing comma", v1 + ",", body, old, at, tol, signature.ErrInvalid},
		{"semicolon separated", "t=1700000000;v1=" + pbV1, body, old, at, tol, signature.ErrInvalid},
		{"bare hex", pbV1, body, old, at, tol, signature.ErrInvalid},
	} {
		t.Run(tc.name, func(t *testing.T) {
			err := signature.Verify(tc.header, tc.body, tc.secrets, tc.now, tc.tol)
			if tc.want == nil {
				if err != nil {
					t.Fatalf("Verify(%q) = %v, want nil", tc.header, err)
				}
				return
			}
			if !errors.Is(err, tc.want) || !errors.Is(err, signature.ErrInvalid) {
				t.Fatalf("Verify(%q) = %v, want %v wrapping ErrInvalid", tc.header, err, tc.want)
			}
			if tc.want == signature.ErrInvalid && (errors.Is(err, signature.ErrExpired) || errors.Is(err, signature.ErrNoSecret)) {
				t.Fatalf("Verify(%q) = %v, want a plain ErrInvalid", tc.header, err)
			}
		})
	}
}

// Errors reach logs and responses, so they must not echo what an attacker
// or a secret put in.
func TestVerifyErrorsLeakNothing(t *testing.T) {
	at := time.Unix(pbT, 0)
	for _, h := range []string{
		"t=1700000000,v1=" + pbV1,
		"t=1700000000,v1=" + pbV1[:63] + "z",
		"t=1700000000," + pbOld,
		"t=" + pbOld + ",v1=" + pbV1,
	} {
		for _, now := range []time.Time{at, at.Add(time.Hour)} {
			err := signature.Verify(h, []byte("tampered"), secrets(pbOld), now, time.Minute)
			if err == nil {
				t.Fatalf("Verify(%q) = nil", h)
			}
			msg := err.Error()
			for _, secretish := range []string{pbOld, pbV1[:16], "1700000000"} {
				if strings.Contains(msg, secretish) {
					t.Errorf("error %q contains %q", msg, secretish)
				}
			}
		}
	}
	err := signature.Verify("t=1700000000,v1="+pbV1, []byte(pbBody), secrets(pbOld), at.Add(time.Hour), time.Minute)
	if err == nil || strings.Contains(err.Error(), pbV1[:16]) {
		t.Errorf("expired: %v", err)
	}
}

func TestSignVerifyRoundTrip(t *testing.T) {
	now := time.Date(2025, 6, 1, 12, 0, 0, 0, time.UTC)
	body := []byte(`{"type":"refund.created"}`)
	h := signature.Sign(secrets("a", "b"), now, body)
	for _, s := range []string{"a", "b"} {
		if err := signature.Verify(h, body, secrets(s), now.Add(30*time.Second), time.Minute); err != nil {
			t.Errorf("secret %q: %v", s, err)
		}
	}
	if err := signature.Verify(h, body, secrets("c"), now, time.Minute); !errors.Is(err, signature.ErrInvalid) {
		t.Errorf("secret c: %v, want ErrInvalid", err)
	}
	if err := signature.Verify(signature.Sign(nil, now, body), body, secrets("a"), now, time.Minute); !errors.Is(err, signature.ErrInvalid) {
		t.Errorf("header signed without secrets: %v, want ErrInvalid", err)
	}
}
