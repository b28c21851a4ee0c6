package caddymodule

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"strings"
	"time"

	"github.com/caddyserver/caddy/v2/caddyconfig"
	"github.com/spf13/cobra"
)

func mibRegisterCommand() *cobra.Command {
	var config, adapter string
	c := &cobra.Command{
		Use:   "mib-register --config <Caddyfile> [--adapter caddyfile]",
		Short: "Register the config's Magento endpoints on the integration bus",
		RunE: func(cmd *cobra.Command, _ []string) error {
			if config == "" {
				return errors.New("--config is required")
			}
			cfgJSON, err := loadConfigJSON(config, adapter)
			if err != nil {
				return err
			}
			var configs []MagentoConfig
			findMagento(cfgJSON, &configs)
			if len(configs) == 0 {
				return fmt.Errorf("%s has no paybridge magento handler", config)
			}
			out := cmd.OutOrStdout()
			for _, mc := range configs {
				bus, err := mc.busClient()
				if err != nil {
					return fmt.Errorf("magento %s: %v", mc.EndpointName, err)
				}
				if bus.publicURL == "" {
					return fmt.Errorf("magento %s: public_url is required to register", bus.endpoint)
				}
				ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
				ep, err := bus.register(ctx)
				cancel()
				if err != nil {
					return fmt.Errorf("magento %s: %v", bus.endpoint, err)
				}
				b, _ := json.MarshalIndent(map[string]any{"endpoint_name": bus.endpoint, "remote_endpoint": ep}, "", "  ")
				fmt.Fprintf(out, "%s\n", b)
			}
			return nil
		},
	}
	c.Flags().StringVar(&config, "config", "", "the config file (Caddyfile or JSON)")
	c.Flags().StringVar(&adapter, "adapter", "", "config adapter (default: caddyfile unless the file ends in .json)")
	return c
}

// loadConfigJSON reads a config file as Caddy JSON, adapting it when needed.
func loadConfigJSON(path, adapter string) ([]byte, error) {
	body, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	if adapter == "" && strings.HasSuffix(path, ".json") {
		return body, nil
	}
	if adapter == "" {
		adapter = "caddyfile"
	}
	a := caddyconfig.GetAdapter(adapter)
	if a == nil {
		return nil, fmt.Errorf("unknown config adapter %q", adapter)
	}
	out, _, err := a.Adapt(body, map[string]any{"filename": path})
	return out, err
}

// findMagento collects the magento configs of every paybridge handler in
// a Caddy JSON config.
func findMagento(cfgJSON []byte, out *[]MagentoConfig) {
	var v any
	if json.Unmarshal(cfgJSON, &v) != nil {
		return
	}
	for _, h := range findHandlers(v) {
		raw, ok := h["magento"]
		if !ok {
			continue
		}
		b, _ := json.Marshal(raw)
		var mc MagentoConfig
		if json.Unmarshal(b, &mc) == nil {
			*out = append(*out, mc)
		}
	}
}

// findHandlers digs every paybridge handler out of a decoded Caddy JSON
// config, wherever routes and subroutes nest them.
func findHandlers(v any) []map[string]any {
	var out []map[string]any
	var walk func(any)
	walk = func(v any) {
		switch x := v.(type) {
		case map[string]any:
			if x["handler"] == "paybridge" {
				out = append(out, x)
			}
			for _, c := range x {
				walk(c)
			}
		case []any:
			for _, c := range x {
				walk(c)
			}
		}
	}
	walk(v)
	return out
}
