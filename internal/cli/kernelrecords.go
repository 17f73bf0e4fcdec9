package cli

import (
	"github.com/tuple-net/tuple/hostmodel"
	"github.com/tuple-net/tuple/inet"
	"github.com/tuple-net/tuple/sockfacts"
	"github.com/tuple-net/tuple/socktab"
)

// kernelOptions starts reading the kernel's records of the sockets on port
// (0: every port) of TCP, UDP or both, beside the socket table's dump, and
// returns socktab.Query.OptionsFrom answering from them, and the index of
// the records, which waits for the reads (call it once the dump is done:
// the reads must end). A read that fails (not root) leaves the index
// empty: the options then come from the owners' descriptors.
func kernelOptions(tcp, udp bool, port uint16) (func(*socktab.Socket) (socktab.KernelOptions, bool), func() *hostmodel.Facts) {
	none := func() ([]sockfacts.Sock, error) { return nil, nil }
	waitTCP, waitUDP := none, none
	if tcp {
		waitTCP = kernelRecords(inet.TCP, port, sockfacts.SkipInode())
	}
	if udp {
		waitUDP = kernelRecords(inet.UDP, port, sockfacts.SkipInode())
	}
	var index *hostmodel.Facts
	facts := func() *hostmodel.Facts {
		if index == nil {
			t, terr := waitTCP()
			u, uerr := waitUDP()
			if terr != nil || uerr != nil {
				t, u = nil, nil
			}
			index = hostmodel.IndexFacts(append(t, u...))
		}
		return index
	}
	return func(s *socktab.Socket) (socktab.KernelOptions, bool) { return facts().Options(s) }, facts
}

// kernelRecords reads the kernel's records of a port's sockets (0: every
// port) for who and ls -o; tests replace it to run them as where the
// iterator cannot (not root, no BTF).
var kernelRecords = sockfacts.ReadPortAsync
