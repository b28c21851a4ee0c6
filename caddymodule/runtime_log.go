package caddymodule

import (
	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"
)

// The store, the engine and the delivery worker outlive the config that
// opened them, so the logger they were given would keep writing where that
// first config said, at its level, after a reload moved or quietened the
// logs. They log through liveCore instead, which hands every entry to the
// logging of the config current at that moment.

// liveCore is a zapcore.Core that writes through the current config's
// logger core, or through fallback when no config is current.
type liveCore struct {
	rt       *runtime
	fallback zapcore.Core
	fields   []zapcore.Field
}

// liveLogger is a logger named name under the paybridge app's logger that
// follows the current config.
func (rt *runtime) liveLogger(fallback *zap.Logger, name string) *zap.Logger {
	return zap.New(&liveCore{rt: rt, fallback: fallback.Core()}).Named("paybridge").Named(name)
}

func (c *liveCore) target() zapcore.Core {
	core := c.fallback
	if a := c.rt.current.Load(); a != nil && a.logger != nil {
		core = a.logger.Core()
	}
	if len(c.fields) > 0 {
		core = core.With(c.fields)
	}
	return core
}

func (c *liveCore) Enabled(l zapcore.Level) bool { return c.target().Enabled(l) }

func (c *liveCore) With(fields []zapcore.Field) zapcore.Core {
	return &liveCore{rt: c.rt, fallback: c.fallback, fields: append(c.fields[:len(c.fields):len(c.fields)], fields...)}
}

func (c *liveCore) Check(e zapcore.Entry, ce *zapcore.CheckedEntry) *zapcore.CheckedEntry {
	return c.target().Check(e, ce)
}

func (c *liveCore) Write(e zapcore.Entry, fields []zapcore.Field) error {
	return c.target().Write(e, fields)
}

func (c *liveCore) Sync() error { return c.target().Sync() }
