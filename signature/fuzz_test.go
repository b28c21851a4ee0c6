package signature_test

import (
	"errors"
	"testing"
	"time"

	"github.com/paybridge/caddy-paybridge/signature"
)

// maxUnix mirrors the package's upper bound on t (end of year 9999).
const maxUnix = 253402300799

// Seeds live in testdata/fuzz/FuzzVerify.
func FuzzVerify(f *testing.F) {
	f.Fuzz(func(t *testing.T, header string, body, secret []byte, unix int64) {
		now := time.Unix(unix, 0)
		if err := signature.Verify(header, body, [][]byte{secret}, now, time.Minute); err != nil {
			if !errors.Is(err, signature.ErrInvalid) {
				t.Fatalf("Verify(%q) = %v, does not wrap ErrInvalid", header, err)
			}
		} else if err := signature.Verify(header, append(body, '!'), [][]byte{secret}, now, time.Minute); err == nil {
			t.Fatalf("Verify(%q) accepted two different bodies", header)
		}

		// Sign only promises verifiable headers for t in [1970, 9999].
		at := time.Unix(clampUnix(unix), 0)
		h := signature.Sign([][]byte{secret}, at, body)
		err := signature.Verify(h, body, [][]byte{secret}, at, time.Minute)
		if len(secret) == 0 {
			if err == nil {
				t.Fatalf("Verify(%q) without a secret = nil", h)
			}
			return
		}
		if err != nil {
			t.Fatalf("Verify(Sign()) = %v, header %q", err, h)
		}
		rotated := signature.Sign([][]byte{[]byte("other"), secret}, at, body)
		if err := signature.Verify(rotated, body, [][]byte{secret}, at, time.Minute); err != nil {
			t.Fatalf("Verify(rotated Sign()) = %v, header %q", err, rotated)
		}
		err = signature.Verify(h, append(body, '!'), [][]byte{secret}, at, time.Minute)
		if !errors.Is(err, signature.ErrInvalid) || errors.Is(err, signature.ErrExpired) {
			t.Fatalf("Verify(Sign(), tampered body) = %v", err)
		}
	})
}

func clampUnix(u int64) int64 {
	u %= maxUnix + 1
	if u < 0 {
		u = -u
	}
	return u
}

// Seeds live in testdata/fuzz/FuzzVerifyCommerceLayer.
func FuzzVerifyCommerceLayer(f *testing.F) {
	f.Fuzz(func(t *testing.T, header string, body, secret []byte) {
		want := signature.CommerceLayer(secret, body)
		if signature.VerifyCommerceLayer(header, body, [][]byte{secret}) {
			// Strict decoding means one MAC has exactly one accepted header.
			if len(secret) == 0 || header != want {
				t.Fatalf("accepted %q, only %q should pass (secret %q)", header, want, secret)
			}
		}
		ok := signature.VerifyCommerceLayer(want, body, [][]byte{secret})
		if ok != (len(secret) > 0) {
			t.Fatalf("VerifyCommerceLayer(CommerceLayer()) = %v with secret %q", ok, secret)
		}
		if signature.VerifyCommerceLayer(want, append(body, '!'), [][]byte{secret}) {
			t.Fatal("tampered body accepted")
		}
	})
}
