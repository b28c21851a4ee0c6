package store

import (
	"strings"

	"go.uber.org/zap"
)

// badgerLogger forwards Badger's warnings and errors to zap. Its info and
// debug lines (table counts, compactions, flushes) are routine and would
// drown the web server's own log.
type badgerLogger struct{ l *zap.SugaredLogger }

// Badger ends most formats with a newline; zap adds its own.
func trim(format string) string { return strings.TrimRight(format, "\n") }

func (b badgerLogger) Errorf(format string, args ...any)   { b.l.Errorf(trim(format), args...) }
func (b badgerLogger) Warningf(format string, args ...any) { b.l.Warnf(trim(format), args...) }
func (badgerLogger) Infof(string, ...any)                  {}
func (badgerLogger) Debugf(string, ...any)                 {}
