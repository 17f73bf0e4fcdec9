package tupled

import (
	"testing"

	"github.com/tuple-net/tuple/internal/leakcheck"
)

func TestMain(m *testing.M) { leakcheck.Main(m) }
