package exporter

import (
	"log/slog"
	"sync"
)

// changeLog logs a failing part of a scrape when its error differs from the
// last one, and its recovery, so a node failing every scrape logs once
// rather than every 15 seconds.
type changeLog struct {
	log  *slog.Logger
	mu   sync.Mutex
	last map[string]string // part -> last error text, absent when fine
}

func newChangeLog(log *slog.Logger) *changeLog {
	if log == nil {
		log = slog.Default()
	}
	return &changeLog{log: log, last: map[string]string{}}
}

// report records the outcome of part in this scrape: err nil when it worked.
func (c *changeLog) report(part string, err error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	prev, failing := c.last[part]
	switch {
	case err == nil && failing:
		delete(c.last, part)
		c.log.Info(part+" recovered", "previous_err", prev)
	case err != nil && (!failing || prev != err.Error()):
		c.last[part] = err.Error()
		c.log.Error(part+" failed", "err", err)
	}
}
