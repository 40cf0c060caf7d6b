package xds

import (
	"context"
	"fmt"
	"log/slog"
)

// cpLogger forwards go-control-plane's printf-style log lines to slog at
// debug level, warnings and errors at their own level. go-control-plane
// logs resource names and versions, never resource contents.
type cpLogger struct{ l *slog.Logger }

func (c cpLogger) Debugf(format string, args ...any) { c.emit(slog.LevelDebug, format, args) }
func (c cpLogger) Infof(format string, args ...any)  { c.emit(slog.LevelDebug, format, args) }
func (c cpLogger) Warnf(format string, args ...any)  { c.emit(slog.LevelWarn, format, args) }
func (c cpLogger) Errorf(format string, args ...any) { c.emit(slog.LevelError, format, args) }

func (c cpLogger) emit(level slog.Level, format string, args []any) {
	if !c.l.Enabled(context.Background(), level) {
		return
	}
	c.l.Log(context.Background(), level, "go-control-plane", "detail", fmt.Sprintf(format, args...))
}
