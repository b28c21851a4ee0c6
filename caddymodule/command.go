package caddymodule

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"strings"
	"time"

	caddycmd "github.com/caddyserver/caddy/v2/cmd"
	"github.com/spf13/cobra"

	"github.com/paybridge/caddy-paybridge/signature"
)

func init() {
	// One command with subcommands: Caddy panics on duplicate names.
	caddycmd.RegisterCommand(caddycmd.Command{
		Name:  "paybridge",
		Usage: "<sign|listen|outbox|replay|mib-register> [flags]",
		Short: "paybridge tools: sign bodies, receive callbacks, inspect and replay the outbox, register on Magento's bus",
		Long: `
paybridge tools for walkthroughs and debugging.

  caddy paybridge sign --secret S [--file body.json]
      Prints the X-CommerceLayer-Signature value of the body (the file, or
      standard input): base64 HMAC-SHA256 of its exact bytes.

  caddy paybridge listen --secret S [--addr localhost:9090]
      Receives callbacks (e.g. Commerce Layer's webhook endpoint stand-in)
      and payment events, prints each body and whether its signature
      (X-CommerceLayer-Signature or Paybridge-Signature) verifies, answers 200.
      It also stands in for Openfront's GraphQL endpoint: an event relayed
      to handlePaymentProviderWebhook is checked against S (the sandbox's
      webhook_secret) and accepted.

  caddy paybridge outbox [--state pending|dead] [--address <admin addr>]
      Lists the outbound messages (callbacks, events) waiting for delivery,
      or the dead letters given up after max_age, from the running Caddy's
      admin API (GET /paybridge/outbox), as JSON.

  caddy paybridge replay <seq> [--address <admin addr>]
      Delivers message <seq> again now: a dead letter goes back into its
      queue, a queued message waiting for its next attempt is tried at once
      (POST /paybridge/outbox/<seq>/retry).

  caddy paybridge mib-register --config <Caddyfile> [--adapter caddyfile]
      Registers every 'paybridge magento' endpoint of the config on its
      Magento integration bus (magento.service_bus.remote.register), like
      'bin/magento oms:service-bus:register', and prints what the bus
      answered. Needs the config's environment variables.

  outbox and replay find the admin endpoint like 'caddy stop' does:
  --address, else the admin address of --config [--adapter], else Caddy's
  default.
`,
		CobraFunc: func(cmd *cobra.Command) {
			cmd.AddCommand(signCommand(), listenCommand(), outboxCommand(), replayCommand(), mibRegisterCommand())
		},
	})
}

func signCommand() *cobra.Command {
	var secret, file string
	c := &cobra.Command{
		Use:   "sign --secret <secret> [--file <body.json>]",
		Short: "Print the X-CommerceLayer-Signature of a body",
		RunE: func(cmd *cobra.Command, _ []string) error {
			if secret == "" {
				return errors.New("--secret is required")
			}
			body, err := readInput(cmd, file)
			if err != nil {
				return err
			}
			fmt.Fprintln(cmd.OutOrStdout(), signature.CommerceLayer([]byte(secret), body))
			return nil
		},
	}
	c.Flags().StringVar(&secret, "secret", "", "the shared secret")
	c.Flags().StringVar(&file, "file", "", "the body (default: standard input)")
	return c
}

func readInput(cmd *cobra.Command, file string) ([]byte, error) {
	if file == "" || file == "-" {
		return io.ReadAll(cmd.InOrStdin())
	}
	return os.ReadFile(file)
}

func listenCommand() *cobra.Command {
	var secret, addr string
	c := &cobra.Command{
		Use:   "listen --secret <secret> [--addr localhost:9090]",
		Short: "Receive and print signed callbacks, events and Openfront relays",
		RunE: func(cmd *cobra.Command, _ []string) error {
			out := cmd.OutOrStdout()
			secrets := signature.Secrets(secret)
			srv := &http.Server{
				Addr:              addr,
				ReadHeaderTimeout: 10 * time.Second,
				Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
					body, _ := io.ReadAll(io.LimitReader(r.Body, 1<<20))
					if relay, ok := parseRelay(body); ok {
						// A stand-in for Openfront's GraphQL endpoint: it
						// checks the relayed event's signature and accepts it.
						fmt.Fprintf(out, "%s %s relay to Openfront: %s\nheaders %s\n%s\n", r.Method, r.URL.Path, relay.verdict(secrets), relay.headers(), relay.Variables.Event)
						w.Header().Set("Content-Type", "application/json")
						_, _ = w.Write([]byte(`{"data":{"handlePaymentProviderWebhook":{"success":true,"message":null,"error":null}}}`))
						return
					}
					verdict := "no signature checked (no --secret)"
					if len(secrets) > 0 {
						verdict = "signature INVALID"
						switch {
						case r.Header.Get(signature.Header) != "":
							// Payment events: timestamped, 5 minutes of tolerance.
							if signature.Verify(r.Header.Get(signature.Header), body, secrets, time.Now(), 5*time.Minute) == nil {
								verdict = "signature ok (" + signature.Header + ")"
							}
						case signature.VerifyCommerceLayer(r.Header.Get(signature.CommerceLayerHeader), body, secrets):
							verdict = "signature ok"
						}
					}
					fmt.Fprintf(out, "%s %s %s\n%s\n", r.Method, r.URL.Path, verdict, body)
					w.WriteHeader(http.StatusOK)
				}),
			}
			fmt.Fprintf(out, "listening on http://%s\n", addr)
			return srv.ListenAndServe()
		},
	}
	c.Flags().StringVar(&secret, "secret", "", "the secret to verify signatures with: a Commerce Layer shared secret, an events endpoint's secret, or the sandbox's webhook_secret for events relayed to Openfront")
	c.Flags().StringVar(&addr, "addr", "localhost:9090", "address to listen on")
	return c
}

// relayRequest is the GraphQL request paybridge relays an event to
// Openfront with.
type relayRequest struct {
	Query     string `json:"query"`
	Variables struct {
		Event   json.RawMessage   `json:"event"`
		Headers map[string]string `json:"headers"`
	} `json:"variables"`
}

func parseRelay(body []byte) (relayRequest, bool) {
	var r relayRequest
	if json.Unmarshal(body, &r) != nil || !strings.Contains(r.Query, "handlePaymentProviderWebhook") {
		return r, false
	}
	return r, true
}

func (r relayRequest) headers() []byte {
	b, _ := json.Marshal(r.Variables.Headers)
	return b
}

func (r relayRequest) verdict(secrets [][]byte) string {
	if len(secrets) == 0 {
		return "no signature checked (no --secret)"
	}
	sig := r.Variables.Headers[strings.ToLower(signature.Header)]
	if signature.Verify(sig, r.Variables.Event, secrets, time.Now(), 5*time.Minute) == nil {
		return "event signature ok"
	}
	return "event signature INVALID"
}
