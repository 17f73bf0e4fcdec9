package handover

import (
	"testing"

	"github.com/google/go-cmp/cmp"
)

func TestOfferRoundTrip(t *testing.T) {
	names := []string{"tcp 127.0.0.1:8080", "tcp [::]:8080"}
	got, err := parseOffer(encodeOffer(names), 2)
	if err != nil {
		t.Fatal(err)
	}
	if d := cmp.Diff(names, got); d != "" {
		t.Errorf("-want +got\n%s", d)
	}
}

func TestParseOfferRejects(t *testing.T) {
	for _, tc := range []struct {
		name string
		in   string
		fds  int
	}{
		{"empty", "", 0},
		{"no newline", magic + " 1\ntcp a", 1},
		{"other magic", "hello 1\ntcp a\n", 1},
		{"count zero", magic + " 0\n", 0},
		{"too many", magic + " 254\n", 254},
		{"fewer descriptors", magic + " 2\ntcp a\ntcp b\n", 1},
		{"fewer names", magic + " 2\ntcp a\n", 2},
	} {
		if _, err := parseOffer([]byte(tc.in), tc.fds); err == nil {
			t.Errorf("%s: parseOffer(%q, %d): no error", tc.name, tc.in, tc.fds)
		}
	}
}

func FuzzParseOffer(f *testing.F) {
	f.Add(encodeOffer([]string{"tcp 127.0.0.1:1"}), 1)
	f.Add([]byte(magic+" 3\na\nb\n"), 3)
	f.Fuzz(func(t *testing.T, b []byte, fds int) {
		names, err := parseOffer(b, fds)
		if err != nil {
			return
		}
		if len(names) != fds {
			t.Fatalf("%d names for %d descriptors", len(names), fds)
		}
		again, err := parseOffer(encodeOffer(names), fds)
		if err != nil || !cmp.Equal(names, again) {
			t.Fatalf("re-encoding %q: %q, %v", names, again, err)
		}
	})
}
