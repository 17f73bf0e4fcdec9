package sockopt

import (
	"context"
	"errors"
	"net"
	"syscall"
	"testing"

	"github.com/tuple-net/tuple/inet"
)

func TestApplyThenReadLinux(t *testing.T) {
	o := Options{ReuseAddr: true, ReusePort: true, BindAddressNoPort: true,
		PortRange: inet.PortRange{Lo: 40000, Hi: 40010}, Freebind: true, V6Only: V6OnlyOn}
	lc := net.ListenConfig{Control: o.Control}
	ln, err := lc.ListenPacket(context.Background(), "udp6", "[::1]:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	rc, err := ln.(*net.UDPConn).SyscallConn()
	if err != nil {
		t.Fatal(err)
	}
	var got map[ID]Value
	rc.Control(func(fd uintptr) { got = Read(fd, true) })
	for _, id := range []ID{ReuseAddr, ReusePort, BindAddressNoPort, Freebind, V6Only} {
		if v := got[id]; !v.Known || !v.On {
			t.Errorf("%s = %+v, want on", id, v)
		}
	}
	if v := got[LocalPortRange]; v.Int != 40010<<16|40000 {
		t.Errorf("%s = %#x, want %#x", LocalPortRange, v.Int, 40010<<16|40000)
	}
	if _, ok := got[ExclusiveAddrUse]; ok {
		t.Errorf("Linux has no %s but Read returned it", ExclusiveAddrUse)
	}
}

func TestV6OnlyOnIPv4IsAnError(t *testing.T) {
	lc := net.ListenConfig{Control: Options{V6Only: V6OnlyOn}.Control}
	ln, err := lc.Listen(context.Background(), "tcp4", "127.0.0.1:0")
	if err == nil {
		ln.Close()
		t.Fatal("IPV6_V6ONLY on an IPv4 socket: want an error, got none")
	}
}

func TestErrnoIsWrapped(t *testing.T) {
	lc := net.ListenConfig{Control: Options{Device: "no-such-dev0"}.Control}
	ln, err := lc.Listen(context.Background(), "tcp4", "127.0.0.1:0")
	if err == nil {
		ln.Close()
		t.Fatal("binding to a missing device: want an error")
	}
	if !errors.Is(err, syscall.ENODEV) {
		t.Errorf("err = %v, want it to wrap ENODEV", err)
	}
}

func TestCheckRejectsUnsupported(t *testing.T) {
	if err := (Options{ExclusiveAddrUse: true}).Check(); !errors.Is(err, inet.ErrUnsupported) {
		t.Errorf("SO_EXCLUSIVEADDRUSE on linux: err = %v, want inet.ErrUnsupported", err)
	}
	if err := (Options{ReusePort: true, V6Only: V6OnlyOff, Device: "lo"}).Check(); err != nil {
		t.Errorf("supported options: %v", err)
	}
}

// Go sets SO_REUSEADDR on every listener; ClearReuseAddr undoes it.
func TestClearReuseAddrOnListener(t *testing.T) {
	read := func(o Options) Value {
		t.Helper()
		ln, err := (&net.ListenConfig{Control: o.Control}).Listen(context.Background(), "tcp4", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		defer ln.Close()
		rc, err := ln.(*net.TCPListener).SyscallConn()
		if err != nil {
			t.Fatal(err)
		}
		var v Value
		rc.Control(func(fd uintptr) { v = Read(fd, false)[ReuseAddr] })
		return v
	}
	if v := read(Options{}); !v.Known || !v.On {
		t.Fatalf("Go's default listener: SO_REUSEADDR = %+v, want on (the reason ClearReuseAddr exists)", v)
	}
	if v := read(Options{ClearReuseAddr: true}); !v.Known || v.On {
		t.Errorf("with ClearReuseAddr: SO_REUSEADDR = %+v, want off", v)
	}
	if err := (Options{ReuseAddr: true, ClearReuseAddr: true}).Check(); err == nil {
		t.Error("ReuseAddr and ClearReuseAddr together: want an error")
	}
}
