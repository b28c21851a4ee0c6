package payment

import (
	"errors"
	"strconv"
	"strings"
)

// Decimal amounts on the wire (Magento's bus speaks in major units): parsed
// from their text, never through float64, and refused rather than rounded.

// ParseDecimal converts a decimal text in major units ("12.5", "-3", "0.125")
// into minor units of currency. It refuses exponents, more non-zero
// decimals than the currency has, unknown currencies and values beyond
// int64.
func ParseDecimal(text, currency string) (int64, error) {
	exp, known := CurrencyExponent(currency)
	if !known {
		return 0, errors.New("has no known currency")
	}
	s := text
	neg := strings.HasPrefix(s, "-")
	s = strings.TrimPrefix(s, "-")
	whole, frac, hasDot := strings.Cut(s, ".")
	if whole == "" || (hasDot && frac == "") || !digits(whole) || !digits(frac) {
		return 0, errors.New("must be a decimal number such as 12.50 (no exponent)")
	}
	// Zeros past the currency's decimals are exact: a float serializer
	// writes 500 JPY as 500.0 and PHP's json_encode does.
	for len(frac) > exp && frac[len(frac)-1] == '0' {
		frac = frac[:len(frac)-1]
	}
	if len(frac) > exp {
		return 0, errors.New("has more decimals than " + currency + " allows (" + strconv.Itoa(exp) + ")")
	}
	n, err := strconv.ParseInt(whole+frac+strings.Repeat("0", exp-len(frac)), 10, 64)
	if err != nil {
		return 0, errors.New("is too large")
	}
	if neg {
		n = -n
	}
	return n, nil
}

func digits(s string) bool {
	for _, c := range s {
		if c < '0' || c > '9' {
			return false
		}
	}
	return true
}

// FormatDecimal writes minor units in the currency's major unit, exactly:
// 12900 EUR is "129.00", 500 JPY is "500".
func FormatDecimal(amount int64, currency string) string {
	exp, _ := CurrencyExponent(currency)
	s := strconv.FormatInt(amount, 10)
	if exp <= 0 {
		return s
	}
	neg := strings.HasPrefix(s, "-")
	s = strings.TrimPrefix(s, "-")
	for len(s) <= exp {
		s = "0" + s
	}
	s = s[:len(s)-exp] + "." + s[len(s)-exp:]
	if neg {
		s = "-" + s
	}
	return s
}
