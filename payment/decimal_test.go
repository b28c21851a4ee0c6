package payment

import "testing"

func TestParseDecimal(t *testing.T) {
	ok := []struct {
		text, currency string
		want           int64
	}{
		{"12.5", "EUR", 1250}, {"12.50", "EUR", 1250}, {"12", "EUR", 1200}, {"0.01", "EUR", 1},
		{"500", "JPY", 500}, {"1.234", "KWD", 1234}, {"-3.1", "USD", -310}, {"92233720368547758.07", "EUR", 9223372036854775807},
		{"500.0", "JPY", 500}, {"12.500", "EUR", 1250}, {"7.000000", "EUR", 700}, {"0.0", "JPY", 0},
	}
	for _, c := range ok {
		if got, err := ParseDecimal(c.text, c.currency); err != nil || got != c.want {
			t.Errorf("%s %s: %d, %v; want %d", c.text, c.currency, got, err, c.want)
		}
		if c.want >= 0 {
			if back, _ := ParseDecimal(FormatDecimal(c.want, c.currency), c.currency); back != c.want {
				t.Errorf("FormatDecimal(%d %s) does not parse back", c.want, c.currency)
			}
		}
	}
	for _, c := range [][2]string{
		{"12.345", "EUR"}, {"12.3450", "EUR"}, {"1.5", "JPY"}, {"1.50", "JPY"}, {"1e2", "EUR"}, {"", "EUR"}, {".5", "EUR"}, {"5.", "EUR"},
		{"+5", "EUR"}, {"0x10", "EUR"}, {"12.5", "XXX"}, {"92233720368547758.08", "EUR"}, {"1.2.3", "EUR"}, {"--1", "EUR"},
	} {
		if got, err := ParseDecimal(c[0], c[1]); err == nil {
			t.Errorf("%q %s accepted as %d", c[0], c[1], got)
		}
	}
	if s := FormatDecimal(12900, "EUR"); s != "129.00" {
		t.Errorf("FormatDecimal: %s", s)
	}
	if s := FormatDecimal(5, "KWD"); s != "0.005" {
		t.Errorf("FormatDecimal: %s", s)
	}
}
