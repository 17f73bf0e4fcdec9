package lab

import (
	"testing"
	"time"
)

// TestTWDating: the entry into TIME_WAIT is dated by every bound its
// observations give, so a socket table that answers late does not move
// the entry into the next second.
func TestTWDating(t *testing.T) {
	ms := func(v float64) int64 { return int64(v * float64(time.Millisecond)) }
	left := func(entryMS, readMS float64) time.Duration { // the timer's time left at a kernel read
		return time.Duration(ms(entryMS+60000-readMS)) / time.Millisecond * time.Millisecond
	}
	for _, c := range []struct {
		name      string
		apply     func(d *twDating)
		sec       int64
		straddles bool
		latest    int64 // the second the kernel may have stamped it with, past the bounds' middle
	}{
		{"nothing observed", func(d *twDating) {}, 0, false, 0},
		{"close window alone", func(d *twDating) { d.within(ms(4990), ms(4998)) }, 4, false, 0},
		{"a late table answer straddles alone", func(d *twDating) {
			// Entry at 4.995 s; the kernel reads the timer at 5.000 s and
			// the answer arrives at 5.080 s.
			d.timer(ms(4999), ms(5080), left(4995, 5000))
		}, 5, true, 5},
		{"the close window settles it", func(d *twDating) {
			d.within(ms(4990), ms(4998))
			d.timer(ms(4999), ms(5080), left(4995, 5000))
		}, 4, false, 0},
		{"a second, quick look settles it", func(d *twDating) {
			d.timer(ms(4999), ms(5080), left(4950, 5000))
			d.timer(ms(5100), ms(5102), left(4950, 5101))
		}, 4, false, 0},
		{"within a jiffy of the second: the middle", func(d *twDating) {
			d.timer(ms(4999), ms(5080), left(4995, 5000))
			d.timer(ms(5100), ms(5102), left(4995, 5101))
		}, 4, true, 5},
		{"well inside a second", func(d *twDating) { d.timer(ms(7400), ms(7450), left(7300, 7420)) }, 7, false, 0},
	} {
		t.Run(c.name, func(t *testing.T) {
			var d twDating
			c.apply(&d)
			if got := d.second(); got != c.sec || d.straddles() != c.straddles || d.latest() != c.latest {
				t.Errorf("second %d, straddles %v, latest %d (bounds %d-%d ns); want %d, %v, %d",
					got, d.straddles(), d.latest(), d.lo, d.hi, c.sec, c.straddles, c.latest)
			}
		})
	}
}
