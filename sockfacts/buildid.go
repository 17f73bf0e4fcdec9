package sockfacts

import "encoding/binary"

// parseBuildID finds the GNU build ID among ELF notes in host byte order,
// as /sys/kernel/notes holds the kernel's: a sequence of (name size,
// descriptor size, type, name, descriptor), name and descriptor each padded
// to four bytes. The build ID is the descriptor of the note named "GNU"
// of type NT_GNU_BUILD_ID (3).
func parseBuildID(notes []byte) ([]byte, bool) {
	const ntGNUBuildID = 3
	pad := func(n uint64) uint64 { return (n + 3) &^ 3 }
	for b := notes; len(b) >= 12; {
		nameLen := uint64(binary.NativeEndian.Uint32(b[0:]))
		descLen := uint64(binary.NativeEndian.Uint32(b[4:]))
		typ := binary.NativeEndian.Uint32(b[8:])
		b = b[12:]
		if pad(nameLen)+pad(descLen) > uint64(len(b)) {
			return nil, false
		}
		name, desc := b[:nameLen], b[pad(nameLen):pad(nameLen)+descLen]
		if typ == ntGNUBuildID && string(name) == "GNU\x00" && len(desc) > 0 {
			return desc, true
		}
		b = b[pad(nameLen)+pad(descLen):]
	}
	return nil, false
}
