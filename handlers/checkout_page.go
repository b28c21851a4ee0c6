package handlers

import (
	"html/template"
	"net/http"
	"strings"

	"github.com/paybridge/caddy-paybridge/payment"
)

type pageData struct {
	Title     string
	Error     string
	PaymentID string
	Amount    string
	Currency  string
	Status    string
	// Payable: the session may be confirmed (open, or declined before).
	Payable bool
	Choices []struct{ Token, Label string }
	Result  *confirmAnswer
	// FormAction is relative, so the page works behind any prefix (also
	// one a handle_path strips): from …/checkout/{id} it is "{id}/confirm",
	// from …/{id}/confirm "confirm", and one level up when the page's own
	// path ends in a slash, which the browser resolves against.
	FormAction string
}

func newPageData(p *payment.Payment, res *confirmAnswer, pagePath string) pageData {
	slash := strings.HasSuffix(pagePath, "/")
	return pageData{
		Title:     "Pay " + payment.FormatDecimal(p.Amount, p.Currency) + " " + p.Currency,
		PaymentID: p.ID,
		Amount:    payment.FormatDecimal(p.Amount, p.Currency),
		Currency:  p.Currency,
		Status:    string(p.Status),
		Payable:   p.Status == payment.StatusOpen || p.Status == payment.StatusRefused,
		Choices:   checkoutChoices,
		Result:    res,
		FormAction: func() string {
			switch {
			case res == nil && !slash: // …/checkout/{id}
				return p.ID + "/confirm"
			case res == nil, !slash: // …/checkout/{id}/ or …/{id}/confirm
				return "confirm"
			default: // …/{id}/confirm/
				return "../confirm"
			}
		}(),
	}
}

func writePage(w http.ResponseWriter, status int, d pageData) {
	h := w.Header()
	h.Set("Content-Type", "text/html; charset=utf-8")
	// Nothing external, no scripts: the page must work as a plain form.
	h.Set("Content-Security-Policy", "default-src 'none'; style-src 'unsafe-inline'; form-action 'self'")
	h.Set("Cache-Control", "no-store")
	h.Set("X-Frame-Options", "DENY")
	w.WriteHeader(status)
	_ = checkoutPage.Execute(w, d)
}

var checkoutPage = template.Must(template.New("checkout").Parse(`<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>{{.Title}} · paybridge sandbox</title>
<style>
body{font-family:system-ui,sans-serif;max-width:32rem;margin:2rem auto;padding:0 1rem;color:#222}
.box{border:1px solid #ccc;border-radius:8px;padding:1rem 1.5rem}
.amount{font-size:2rem;font-weight:600}
label{display:block;margin:.5rem 0}
button{font-size:1rem;padding:.5rem 1.5rem;margin-top:1rem}
.ok{color:#0a6b2d}.bad{color:#a01616}.wait{color:#8a5a00}
small{color:#666}
</style>
</head>
<body>
<p><small>paybridge sandbox · test payment page · no real money moves</small></p>
{{if .Error}}<div class="box"><h1 class="bad">{{.Error}}</h1></div>{{else}}
<div class="box">
<p class="amount" id="amount">{{.Amount}} {{.Currency}}</p>
<p><small>Payment <code id="payment-id">{{.PaymentID}}</code> · status <span id="status">{{.Status}}</span></small></p>
{{with .Result}}
{{if eq .Outcome "authorized"}}<h1 class="ok" id="result">Payment authorized</h1>
{{else if eq .Outcome "pending"}}<h1 class="wait" id="result">Payment pending</h1><p>The bank has not answered yet; the shop will hear the outcome.</p>
{{else if eq .Outcome "declined"}}<h1 class="bad" id="result">Payment declined</h1><p>{{.Code}}: {{.Message}}</p>
{{else}}<h1 class="bad" id="result">Not confirmed</h1><p>{{.Message}}</p>{{end}}
{{end}}
{{if .Payable}}
<form method="post" action="{{.FormAction}}">
<fieldset><legend>Choose a test card</legend>
{{range $i, $c := .Choices}}<label><input type="radio" name="token" value="{{$c.Token}}" id="{{$c.Token}}"{{if eq $i 0}} checked{{end}}> {{$c.Label}} <small><code>{{$c.Token}}</code></small></label>
{{end}}</fieldset>
<button type="submit" id="pay">Pay {{.Amount}} {{.Currency}}</button>
</form>
{{else if not .Result}}<p id="result">This payment is {{.Status}}.</p>{{end}}
</div>
{{end}}
</body>
</html>
`))
