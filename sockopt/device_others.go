//go:build unix && !linux && !darwin

package sockopt

func setDevice(fd uintptr, level, name int, dev string) error { return notSupported(BindToDevice) }

func getDevice(fd uintptr, level, name int) (string, error) { return "", notSupported(BindToDevice) }
