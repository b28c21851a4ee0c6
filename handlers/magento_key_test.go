package handlers

import "testing"

// Command keys are stored with their answers: a key must never be shared by
// two commands, and an ordinary key must stay what earlier builds stored.
func TestMagentoCommandKeys(t *testing.T) {
	call := func(gatewayKey, ref, id string) *mibCall {
		return &mibCall{command: "capture", id: []byte(id), payment: mibPayment{GatewayKey: gatewayKey, OperationReference: ref}}
	}
	for _, tc := range []struct {
		c    *mibCall
		want string
	}{
		{call("gk_1", "op_1", "7"), "capture|gk_1|ref|op_1"},
		{call("gk_1", "", `"rpc-7"`), `capture|gk_1|id|"rpc-7"`},
	} {
		if got := tc.c.key(); got != tc.want {
			t.Errorf("key %q, earlier builds stored %q", got, tc.want)
		}
	}
	pairs := [][2]*mibCall{
		{call("g|ref|x", "y", "1"), call("g", "x|ref|y", "1")},
		{call(`g\`, "|x", "1"), call("g", `\|x`, "1")},
		{call("g|id|1", "", "2"), call("g", "", "1|id|2")},
	}
	for _, p := range pairs {
		if a, b := p[0].key(), p[1].key(); a == b {
			t.Errorf("two commands share the key %q", a)
		}
	}
}
