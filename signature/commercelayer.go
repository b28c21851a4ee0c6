package signature

import (
	"crypto/sha256"
	"encoding/base64"
)

// CommerceLayerHeader carries Commerce Layer's webhook signature.
const CommerceLayerHeader = "X-CommerceLayer-Signature"

// clHeaderLen is the only length a padded standard-base64 SHA-256 digest
// can have; checking it first rejects hex (64) and unpadded (43) variants
// and any embedded CR/LF, which the base64 decoder would otherwise skip.
var clHeaderLen = base64.StdEncoding.EncodedLen(sha256.Size)

// CommerceLayer returns the X-CommerceLayer-Signature value for body.
func CommerceLayer(secret, body []byte) string {
	return base64.StdEncoding.EncodeToString(sum(sha256.New, secret, body))
}

// VerifyCommerceLayer reports whether header matches body under any of
// secrets. Only the exact encoding Commerce Layer sends is accepted, so
// that one MAC has one valid header and lenient decoding cannot be used to
// smuggle variants past a cache or a replay log keyed on the header.
func VerifyCommerceLayer(header string, body []byte, secrets [][]byte) bool {
	if len(header) != clHeaderLen {
		return false
	}
	got, err := base64.StdEncoding.Strict().DecodeString(header)
	if err != nil || len(got) != sha256.Size {
		return false
	}
	return matchAny(sha256.New, secrets, body, got)
}
