package signature

import (
	"crypto/sha1"
	"encoding/hex"
	"strings"
)

// mibPrefix names the algorithm, as in GitHub-style webhook headers.
const mibPrefix = "sha1="

// MIB returns the Magento integration bus signature for body. SHA-1 is the
// bus's choice, not ours; HMAC-SHA1 is still sound as a MAC even though
// plain SHA-1 collisions are practical.
func MIB(secret, body []byte) string {
	return mibPrefix + hex.EncodeToString(sum(sha1.New, secret, body))
}

// VerifyMIB reports whether header matches body under any of secrets.
// Hex digits of either case are accepted since they decode to the same
// bytes; anything but a full 20-byte digest is rejected.
func VerifyMIB(header string, body []byte, secrets [][]byte) bool {
	digits, ok := strings.CutPrefix(header, mibPrefix)
	if !ok || len(digits) != hex.EncodedLen(sha1.Size) {
		return false
	}
	got, err := hex.DecodeString(digits)
	if err != nil {
		return false
	}
	return matchAny(sha1.New, secrets, body, got)
}
