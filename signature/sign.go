package signature

import (
	"crypto/sha256"
	"encoding/hex"
	"strconv"
	"time"
)

// Sign returns a Paybridge-Signature value for body at time t, with one v1
// per non-empty secret in order, so receivers still on the old secret and
// those already on the new one both accept it during a rotation.
//
// t is truncated to whole seconds. Verify rejects times before 1970 or
// after the year 9999, and a header with no v1 (Sign had no usable secret).
func Sign(secrets [][]byte, t time.Time, body []byte) string {
	ts := strconv.AppendInt(nil, t.Unix(), 10)
	out := make([]byte, 0, len("t=")+len(ts)+len(secrets)*len(",v1=")+len(secrets)*hex.EncodedLen(sha256.Size))
	out = append(out, "t="...)
	out = append(out, ts...)
	for _, s := range secrets {
		if len(s) == 0 {
			continue
		}
		out = append(out, ",v1="...)
		out = hex.AppendEncode(out, stampedMAC(s, ts, body))
	}
	return string(out)
}

// stampedMAC binds the timestamp into the MAC; without it an attacker could
// replay an old body under a fresh t.
func stampedMAC(secret, ts, body []byte) []byte {
	return sum(sha256.New, secret, ts, []byte{'.'}, body)
}
