package signature_test

// Expected values were computed outside Go so the tests do not just compare
// the code with itself:
//
//	printf '%s' "$body" | openssl dgst -sha256 -hmac "$secret" -binary | base64
//	printf '%s' "$t.$body" | openssl dgst -sha256 -hmac "$secret" -hex
//	printf '%s' "$body" | openssl dgst -sha1 -hmac "$secret" -hex
//
// The "Jefe" vectors are RFC 4231 test case 2 and RFC 2202 test case 2.
const (
	rfcKey  = "Jefe"
	rfcData = "what do ya want for nothing?"
	rfc4231 = "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843"
	rfc2202 = "effcdf6ae5eb2fa2d27416d5f184df9c259a7c79"

	clSecret = "cl_secret_123"
	clBody   = `{"data":{"id":"abc","type":"orders"}}`
	clSig    = "67FB7hIK6oKIz33vtlddqMkzBPYodVlz0PeW1X4eRAo="

	// clBody2's digest contains both '+' and '/', so its URL-safe encoding
	// differs from the standard one.
	clBody2 = "body-2"
	clSig2  = "pFa4c2H+EhXRYUJTTV/3CiiYiI2oR6i8fxS0Wp8Dkgk="

	pbOld  = "whsec_old"
	pbNew  = "whsec_new"
	pbT    = 1700000000
	pbBody = `{"id":"evt_1","type":"payment.succeeded"}`
	pbV1   = "5e061c97668702737ec5fb4d7a7aa277625bb7d9b0e4c81d8a2ec76d5488bc29" // pbOld
	pbV1b  = "8f6a91edc74e05b2937ac96991873f6df1b55a86d337362506bcab6a437487ad" // pbNew

	mibSecret = "mib_secret"
	mibBody   = `{"order_id":42}`
	mibSig    = "sha1=7689356e04386564da13eb195bbb79cf49a21fc9"
)

func secrets(s ...string) [][]byte {
	out := make([][]byte, len(s))
	for i, v := range s {
		out[i] = []byte(v)
	}
	return out
}
