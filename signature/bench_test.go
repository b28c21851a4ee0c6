package signature_test

import (
	"bytes"
	"testing"
	"time"

	"github.com/paybridge/caddy-paybridge/signature"
)

// 1 KiB is a typical order webhook payload.
var benchBody = bytes.Repeat([]byte("x"), 1024)

func BenchmarkVerifyCommerceLayer(b *testing.B) {
	s := secrets(clSecret)
	h := signature.CommerceLayer(s[0], benchBody)
	b.ReportAllocs()
	b.SetBytes(int64(len(benchBody)))
	for b.Loop() {
		if !signature.VerifyCommerceLayer(h, benchBody, s) {
			b.Fatal("rejected")
		}
	}
}

func BenchmarkVerify(b *testing.B) {
	s := secrets(pbOld)
	at := time.Unix(pbT, 0)
	h := signature.Sign(s, at, benchBody)
	b.ReportAllocs()
	b.SetBytes(int64(len(benchBody)))
	for b.Loop() {
		if err := signature.Verify(h, benchBody, s, at, 5*time.Minute); err != nil {
			b.Fatal(err)
		}
	}
}
