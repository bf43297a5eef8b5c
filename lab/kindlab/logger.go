package kindlab

import (
	"context"
	"fmt"
	"log/slog"

	kindlog "sigs.k8s.io/kind/pkg/log"
)

// kindLogger hands kind's progress to slog: warnings and errors always, V(0) as info, V(1+) as
// debug (kind's V(3) carries kubeadm's whole output, useful when a node fails to come up).
type kindLogger struct{ l *slog.Logger }

var _ kindlog.Logger = kindLogger{}

func (k kindLogger) Warn(msg string)                          { k.l.Warn(msg) }
func (k kindLogger) Warnf(format string, args ...any)         { k.l.Warn(fmt.Sprintf(format, args...)) }
func (k kindLogger) Error(msg string)                         { k.l.Error(msg) }
func (k kindLogger) Errorf(format string, args ...any)        { k.l.Error(fmt.Sprintf(format, args...)) }
func (k kindLogger) V(level kindlog.Level) kindlog.InfoLogger { return kindInfo{l: k.l, level: level} }

type kindInfo struct {
	l     *slog.Logger
	level kindlog.Level
}

func (i kindInfo) slogLevel() slog.Level {
	if i.level <= 0 {
		return slog.LevelInfo
	}
	return slog.LevelDebug
}

func (i kindInfo) Info(msg string) {
	i.l.Log(context.Background(), i.slogLevel(), msg, "source", "kind")
}
func (i kindInfo) Infof(format string, args ...any) {
	i.Info(fmt.Sprintf(format, args...))
}
func (i kindInfo) Enabled() bool { return i.l.Enabled(context.Background(), i.slogLevel()) }
