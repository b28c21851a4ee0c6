package signature_test

import (
	"reflect"
	"testing"

	"github.com/paybridge/caddy-paybridge/signature"
)

func TestSecrets(t *testing.T) {
	for _, tc := range []struct {
		in   []string
		want [][]byte
	}{
		{nil, nil},
		{[]string{""}, nil},
		{[]string{"", "a", "", " b "}, [][]byte{[]byte("a"), []byte(" b ")}},
	} {
		if got := signature.Secrets(tc.in...); !reflect.DeepEqual(got, tc.want) {
			t.Errorf("Secrets(%q) = %q, want %q", tc.in, got, tc.want)
		}
	}
}
