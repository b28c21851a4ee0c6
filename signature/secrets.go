package signature

// Secrets converts configured values into the form every function here
// takes. Empty values are dropped because an unset {env.X} placeholder
// becomes "", and an empty HMAC key would let anyone sign. Values are not
// trimmed: a secret's bytes are exactly what the other side uses.
func Secrets(values ...string) [][]byte {
	var out [][]byte
	for _, v := range values {
		if v == "" {
			continue
		}
		out = append(out, []byte(v))
	}
	return out
}
