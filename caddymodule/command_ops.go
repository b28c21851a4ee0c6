package caddymodule

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"regexp"
	"strconv"

	caddycmd "github.com/caddyserver/caddy/v2/cmd"
	"github.com/spf13/cobra"
)

// The operations commands talk to a running Caddy's admin endpoint, like
// `caddy stop` and `caddy reload`: --address, else the admin address of
// --config, else Caddy's default (localhost:2019).

// adminFlags are the flags every operations command takes to find the
// admin endpoint.
type adminFlags struct {
	address, config, adapter string
}

func (f *adminFlags) register(c *cobra.Command) {
	c.Flags().StringVar(&f.address, "address", "", "the admin API address of the running Caddy (default: from --config, else Caddy's default)")
	c.Flags().StringVarP(&f.config, "config", "c", "", "configuration file to read the admin address from, if --address is not used")
	c.Flags().StringVarP(&f.adapter, "adapter", "a", "", "name of the config adapter (when --config is used)")
}

func outboxCommand() *cobra.Command {
	var (
		state string
		admin adminFlags
	)
	c := &cobra.Command{
		Use:   "outbox [--state pending|dead] [--address <admin addr>]",
		Short: "List queued or dead-lettered outbound messages",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if state != "pending" && state != "dead" {
				return fmt.Errorf("--state %q: want pending or dead", state)
			}
			return admin.call(cmd, http.MethodGet, "/paybridge/outbox?state="+url.QueryEscape(state))
		},
	}
	c.Flags().StringVar(&state, "state", "pending", "pending (queued for delivery) or dead (given up after max_age)")
	admin.register(c)
	return c
}

func replayCommand() *cobra.Command {
	var admin adminFlags
	c := &cobra.Command{
		Use:   "replay <seq> [--address <admin addr>]",
		Short: "Deliver an outbound message again now (a dead letter, or a queued one waiting for its next attempt)",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			seq, err := strconv.ParseUint(args[0], 10, 64)
			if err != nil {
				return fmt.Errorf("%q is not a message sequence number (see the seq of `caddy paybridge outbox`)", args[0])
			}
			return admin.call(cmd, http.MethodPost, fmt.Sprintf("/paybridge/outbox/%d/retry", seq))
		},
	}
	admin.register(c)
	return c
}

// call sends one request to the admin endpoint and prints the JSON answer,
// indented, to the command's output.
func (f *adminFlags) call(cmd *cobra.Command, method, uri string) error {
	addr, err := caddycmd.DetermineAdminAPIAddress(f.address, nil, f.config, f.adapter)
	if err != nil {
		return fmt.Errorf("couldn't determine the admin API address: %v", err)
	}
	resp, err := caddycmd.AdminAPIRequest(addr, method, uri, nil, nil)
	if err != nil {
		return apiMessage(err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(io.LimitReader(resp.Body, 64<<20))
	if err != nil {
		return fmt.Errorf("reading the answer: %v", err)
	}
	if resp.StatusCode < 200 || resp.StatusCode > 299 {
		return fmt.Errorf("HTTP %d: %s", resp.StatusCode, bytes.TrimSpace(body))
	}
	var out bytes.Buffer
	if err := json.Indent(&out, body, "", "  "); err != nil {
		return fmt.Errorf("the admin API answered something other than JSON: %v", err)
	}
	out.WriteByte('\n')
	_, err = out.WriteTo(cmd.OutOrStdout())
	return err
}

// adminRefusal is how caddycmd.AdminAPIRequest reports an answer >= 400.
var adminRefusal = regexp.MustCompile(`(?s)^caddy responded with error: HTTP (\d+): (.*)$`)

// apiMessage turns AdminAPIRequest's error for a refusal into the status
// and the API's own message; other errors (nothing listening, ...) are
// returned as they are.
func apiMessage(err error) error {
	m := adminRefusal.FindStringSubmatch(err.Error())
	if m == nil {
		return err
	}
	var answer struct {
		Error string `json:"error"`
	}
	if json.Unmarshal([]byte(m[2]), &answer) != nil || answer.Error == "" {
		return err
	}
	return fmt.Errorf("HTTP %s: %s", m[1], answer.Error)
}
