package socktab

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"runtime"

	"github.com/tuple-net/tuple/inet"
	"github.com/tuple-net/tuple/sockopt"
	"golang.org/x/sys/unix"
)

// readOptions reads the live options of every socket with an owner by
// duplicating the owner's descriptor into this process with pidfd_getfd(2)
// (Linux 5.6; needs ptrace access to the owner, i.e. root or the same uid
// without Yama restrictions). A socket without owner, or whose owners'
// descriptors cannot be duplicated, gets every option unknown with the
// reason. Sockets whose done is true (fromKernel) are left as they are.
func readOptions(ctx context.Context, socks []Socket, done []bool, noOwner string) {
	const chunk = 256
	parallel(runtime.GOMAXPROCS(0)+1, (len(socks)+chunk-1)/chunk, func(next func() (int, bool)) {
		pidfds := make(map[int]pidfdResult)
		defer func() {
			for _, p := range pidfds {
				if p.err == nil {
					unix.Close(p.fd)
				}
			}
		}()
		for c, ok := next(); ok; c, ok = next() {
			for i := c * chunk; i < min((c+1)*chunk, len(socks)); i++ {
				if done != nil && done[i] {
					continue
				}
				if ctx.Err() != nil {
					setUnknown(&socks[i].Options, "not read: "+ctx.Err().Error())
					continue
				}
				readSocketOptions(&socks[i], pidfds, noOwner)
			}
		}
	})
}

// fromKernel fills each socket's options that from (Query.OptionsFrom)
// knows and reports, per socket, whether none is left to read through an
// owner: the reuse flags, v6only and the device from the record, freebind
// and bind_address_no_port from INET_DIAG_SOCKOPT (which kernels before 5.10
// do not send). The device's name is looked up in the calling thread's
// namespace, so a socket of another namespace (Query.Namespaces) bound to a
// device keeps the owner's read. nil when from is nil.
func fromKernel(socks []Socket, from func(*Socket) (KernelOptions, bool)) []bool {
	if from == nil {
		return nil
	}
	done := make([]bool, len(socks))
	names := map[int]string{}
	for i := range socks {
		s := &socks[i]
		k, ok := from(s)
		if !ok {
			continue
		}
		o := &s.Options
		o.ReuseAddr = Bool{Known: true, Value: k.ReuseAddr}
		o.ReusePort = Bool{Known: true, Value: k.ReusePort}
		if s.Family == inet.IPv6 {
			o.V6Only = Bool{Known: true, Value: k.V6Only}
		} else {
			o.V6Only = Bool{Reason: sockopt.OnlyIPv6Error(sockopt.V6Only).Error()}
		}
		if name, ok := deviceName(k.Dev, s.NetNS, names); ok {
			o.Device = Text{Known: true, Value: name}
		}
		done[i] = o.Device.Known && o.Freebind.Known && o.BindAddressNoPort.Known
	}
	return done
}

// deviceName is the name of interface dev as SO_BINDTODEVICE reports it
// ("" for 0), looked up once per index in names; false when it cannot be
// told here (another namespace's socket, an interface gone).
func deviceName(dev int, netns uint64, names map[int]string) (string, bool) {
	if dev == 0 {
		return "", true
	}
	if netns != 0 {
		return "", false
	}
	if name, ok := names[dev]; ok {
		return name, name != ""
	}
	ifi, err := net.InterfaceByIndex(dev)
	if err != nil {
		names[dev] = ""
		return "", false
	}
	names[dev] = ifi.Name
	return ifi.Name, true
}

type pidfdResult struct {
	fd  int
	err error
}

// readSocketOptions reads the options of s through its owners; noOwner is
// the reason given when a socket with a file has no owner found.
func readSocketOptions(s *Socket, pidfds map[int]pidfdResult, noOwner string) {
	if len(s.Owners) == 0 {
		reason := noOwner
		switch {
		case s.State == TimeWait:
			reason = "no owning process: TIME_WAIT sockets belong to the kernel"
		case s.State == SynRecv || s.State == NewSynRecv:
			reason = "no owning process: request sockets are not files"
		case s.Inode == 0:
			reason = "no owning process: the socket has no file"
		}
		setUnknown(&s.Options, reason)
		return
	}
	var lastErr error
	for _, o := range s.Owners {
		p, ok := pidfds[o.PID]
		if !ok {
			fd, err := unix.PidfdOpen(o.PID, 0)
			p = pidfdResult{fd: fd, err: os.NewSyscallError("pidfd_open", err)}
			if err != nil {
				p.err = fmt.Errorf("pid %d: %w", o.PID, p.err)
			}
			pidfds[o.PID] = p
		}
		if p.err != nil {
			lastErr = p.err
			continue
		}
		fd, err := unix.PidfdGetfd(p.fd, o.FD, 0)
		if err != nil {
			lastErr = fmt.Errorf("pid %d fd %d: %w", o.PID, o.FD, os.NewSyscallError("pidfd_getfd", err))
			continue
		}
		var st unix.Stat_t
		if err := unix.Fstat(fd, &st); err != nil || st.Ino != s.Inode {
			unix.Close(fd)
			lastErr = fmt.Errorf("pid %d fd %d: descriptor changed since the scan", o.PID, o.FD)
			continue
		}
		applyRead(&s.Options, sockopt.Read(uintptr(fd), s.Family == inet.IPv6))
		unix.Close(fd)
		return
	}
	setUnknown(&s.Options, "not readable: "+reasonText(lastErr))
}

// reasonText words an error for a Reason field.
func reasonText(err error) string {
	switch {
	case errors.Is(err, unix.ESRCH):
		return err.Error() + " (process gone)"
	case errors.Is(err, unix.EPERM):
		return err.Error() + " (needs root or ptrace access to the owner)"
	}
	return err.Error()
}

func setUnknown(o *Options, reason string) {
	for _, b := range []*Bool{&o.ReuseAddr, &o.ReusePort, &o.V6Only, &o.BindAddressNoPort, &o.Freebind} {
		if !b.Known {
			b.Reason = reason
		}
	}
	if !o.Device.Known {
		o.Device.Reason = reason
	}
}

func applyRead(o *Options, vals map[sockopt.ID]sockopt.Value) {
	set := func(b *Bool, id sockopt.ID) {
		v, ok := vals[id]
		switch {
		case ok && v.Known:
			*b = Bool{Known: true, Value: v.On}
		case b.Known:
			// keep the kernel's INET_DIAG_SOCKOPT answer
		case ok:
			*b = Bool{Reason: v.Err.Error()}
		default:
			*b = Bool{Reason: id.String() + " not supported here"}
		}
	}
	set(&o.ReuseAddr, sockopt.ReuseAddr)
	set(&o.ReusePort, sockopt.ReusePort)
	set(&o.V6Only, sockopt.V6Only)
	set(&o.BindAddressNoPort, sockopt.BindAddressNoPort)
	set(&o.Freebind, sockopt.Freebind)
	if v, ok := vals[sockopt.BindToDevice]; ok && v.Known {
		o.Device = Text{Known: true, Value: v.Text}
	} else if ok {
		o.Device = Text{Reason: v.Err.Error()}
	}
}
