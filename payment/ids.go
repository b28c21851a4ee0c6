package payment

import (
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
)

// newID returns prefix + 128 random bits in hex. Transaction tokens and
// action ids are handed to platforms, so they must be unguessable; the
// same generator serves every id so none is accidentally weaker.
func newID(prefix string) string {
	var b [16]byte
	if _, err := rand.Read(b[:]); err != nil {
		panic("payment: no randomness: " + err.Error()) // crypto/rand never fails on supported platforms
	}
	return prefix + hex.EncodeToString(b[:])
}

// pspKey derives the PSP idempotency key from the platform call's natural
// key: a repeat of the call after an unknown outcome reaches the PSP with
// the same key and cannot charge twice.
func pspKey(naturalKey string) string {
	sum := sha256.Sum256([]byte(naturalKey))
	return "pbk_" + hex.EncodeToString(sum[:20])
}
