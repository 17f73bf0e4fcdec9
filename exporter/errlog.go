package exporter

import "log/slog"

// changeLog logs a collector's failure when it differs from the last one,
// and the recovery, so a node that keeps failing logs once, not every
// scrape. Not safe for concurrent use: collectors call it under their lock.
type changeLog struct {
	log  *slog.Logger
	what string // the collector, for the message
	last string
}

func newChangeLog(log *slog.Logger, what string) changeLog {
	if log == nil {
		log = slog.Default()
	}
	return changeLog{log: log, what: what}
}

func (l *changeLog) report(err error) {
	msg := ""
	if err != nil {
		msg = err.Error()
	}
	if msg == l.last {
		return
	}
	if err != nil {
		l.log.Error(l.what+" collector failed", "err", err)
	} else {
		l.log.Info(l.what+" collector recovered", "previous_err", l.last)
	}
	l.last = msg
}

// note logs state, what the collector's tables say they lack, as a
// warning when it changes, and their return to whole when it becomes "":
// without it the series would read as complete.
func (l *changeLog) note(state string) {
	if state == l.last {
		return
	}
	if state != "" {
		l.log.Warn(l.what+" tables incomplete", "notes", state)
	} else {
		l.log.Info(l.what+" tables read whole again", "previous_notes", l.last)
	}
	l.last = state
}
