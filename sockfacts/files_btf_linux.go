package sockfacts

import (
	"encoding/binary"
	"errors"
	"fmt"
	"math"

	"github.com/tuple-net/tuple/internal/prefault"
)

// btfIndex is the kernel's raw BTF (/sys/kernel/btf/vmlinux) with the
// offset of every type: enough to find a few structs' members and a
// function's type id. cilium/ebpf decodes a struct with its whole type
// graph (task_struct's reaches most of the kernel's types, tens of
// milliseconds); the task_file program needs seven offsets and one id.
type btfIndex struct {
	types []byte   // the type section
	strs  []byte   // the string section
	off   []uint32 // off[id-1] is type id's offset in types (id 0 is void)
	found map[btfName]uint32
}

// btfName is a type's kind and name, as find looks it up.
type btfName struct {
	kind uint32
	name string
}

// BTF kinds (include/uapi/linux/btf.h) this reader resolves or skips.
const (
	btfInt      = 1
	btfPtr      = 2
	btfArray    = 3
	btfStruct   = 4
	btfUnion    = 5
	btfEnum     = 6
	btfFwd      = 7
	btfTypedef  = 8
	btfVolatile = 9
	btfConst    = 10
	btfRestrict = 11
	btfFunc     = 12
	btfProto    = 13
	btfVar      = 14
	btfDatasec  = 15
	btfFloat    = 16
	btfDeclTag  = 17
	btfTypeTag  = 18
	btfEnum64   = 19

	btfMagic   = 0xeb9f
	btfTypeLen = 12 // name_off, info, size or type
)

var errBTF = errors.New("malformed BTF")

// parseBTF indexes raw BTF in host byte order (the kernel's own).
func parseBTF(b []byte) (*btfIndex, error) {
	bo := binary.NativeEndian
	if len(b) < 24 || bo.Uint16(b) != btfMagic {
		return nil, fmt.Errorf("%w: no BTF header", errBTF)
	}
	hdrLen := uint64(bo.Uint32(b[4:]))
	typeOff, typeLen := uint64(bo.Uint32(b[8:])), uint64(bo.Uint32(b[12:]))
	strOff, strLen := uint64(bo.Uint32(b[16:])), uint64(bo.Uint32(b[20:]))
	if hdrLen < 24 || hdrLen+typeOff+typeLen > uint64(len(b)) || hdrLen+strOff+strLen > uint64(len(b)) {
		return nil, fmt.Errorf("%w: sections beyond %d bytes", errBTF, len(b))
	}
	x := &btfIndex{
		types: b[hdrLen+typeOff : hdrLen+typeOff+typeLen],
		strs:  b[hdrLen+strOff : hdrLen+strOff+strLen],
	}
	x.off = prefault.Make[uint32](0, len(x.types)/24)
	for p := 0; p < len(x.types); {
		if len(x.types)-p < btfTypeLen {
			return nil, fmt.Errorf("%w: type %d truncated", errBTF, len(x.off)+1)
		}
		info := bo.Uint32(x.types[p+4:])
		vlen := int(info & 0xffff)
		var extra int
		switch kind := info >> 24 & 0x1f; kind {
		case btfInt, btfVar, btfDeclTag:
			extra = 4
		case btfArray:
			extra = 12
		case btfStruct, btfUnion, btfDatasec, btfEnum64:
			extra = 12 * vlen
		case btfEnum, btfProto:
			extra = 8 * vlen
		case btfPtr, btfFwd, btfTypedef, btfVolatile, btfConst, btfRestrict, btfFunc, btfFloat, btfTypeTag:
		default:
			return nil, fmt.Errorf("%w: type %d has unknown kind %d", errBTF, len(x.off)+1, kind)
		}
		if len(x.types)-p-btfTypeLen < extra {
			return nil, fmt.Errorf("%w: type %d truncated", errBTF, len(x.off)+1)
		}
		x.off = append(x.off, uint32(p))
		p += btfTypeLen + extra
	}
	return x, nil
}

// typ returns type id's record: kind, kind_flag, vlen, size-or-type and
// the bytes after the common header.
func (x *btfIndex) typ(id uint32) (kind uint32, flag bool, vlen int, sizeType uint32, rest []byte, err error) {
	if id == 0 || int(id) > len(x.off) {
		return 0, false, 0, 0, nil, fmt.Errorf("%w: no type %d", errBTF, id)
	}
	p := x.types[x.off[id-1]:]
	info := binary.NativeEndian.Uint32(p[4:])
	return info >> 24 & 0x1f, info>>31 != 0, int(info & 0xffff), binary.NativeEndian.Uint32(p[8:]), p[btfTypeLen:], nil
}

// name reports whether the string at off is s.
func (x *btfIndex) nameIs(off uint32, s string) bool {
	end := uint64(off) + uint64(len(s))
	return end < uint64(len(x.strs)) && string(x.strs[off:end]) == s && x.strs[end] == 0
}

// find returns the id of the first type of kind named name. Each lookup
// scans every type; one found is remembered (a layout asks for the same
// struct again and again).
func (x *btfIndex) find(kind uint32, name string) (uint32, error) {
	if id, ok := x.found[btfName{kind, name}]; ok {
		if id == 0 {
			return 0, fmt.Errorf("kernel BTF has no %s (kind %d)", name, kind)
		}
		return id, nil
	}
	for i, p := range x.off {
		t := x.types[p:]
		if binary.NativeEndian.Uint32(t[4:])>>24&0x1f == kind && x.nameIs(binary.NativeEndian.Uint32(t), name) {
			if x.found == nil {
				x.found = map[btfName]uint32{}
			}
			x.found[btfName{kind, name}] = uint32(i + 1)
			return uint32(i + 1), nil
		}
	}
	return 0, fmt.Errorf("kernel BTF has no %s (kind %d)", name, kind)
}

// prefetch looks up every name of kind in one scan of the types, for find
// to answer from (absent ones included) instead of scanning once each.
func (x *btfIndex) prefetch(kind uint32, names ...string) {
	if x.found == nil {
		x.found = map[btfName]uint32{}
	}
	var want []string
	for _, n := range names {
		if _, ok := x.found[btfName{kind, n}]; !ok {
			x.found[btfName{kind, n}] = 0
			want = append(want, n)
		}
	}
	for i, p := range x.off {
		if len(want) == 0 {
			return
		}
		t := x.types[p:]
		if binary.NativeEndian.Uint32(t[4:])>>24&0x1f != kind {
			continue
		}
		nameOff := binary.NativeEndian.Uint32(t)
		for j, n := range want {
			if x.nameIs(nameOff, n) {
				x.found[btfName{kind, n}] = uint32(i + 1)
				want = append(want[:j], want[j+1:]...)
				break
			}
		}
	}
}

// resolve follows typedefs and qualifiers to the type they name.
func (x *btfIndex) resolve(id uint32) (uint32, error) {
	for range 32 {
		kind, _, _, next, _, err := x.typ(id)
		if err != nil {
			return 0, err
		}
		switch kind {
		case btfTypedef, btfVolatile, btfConst, btfRestrict, btfTypeTag:
			id = next
		default:
			return id, nil
		}
	}
	return 0, fmt.Errorf("%w: type chain too long at %d", errBTF, id)
}

// sizeof is the size in bytes of type id.
func (x *btfIndex) sizeof(id uint32) (uint32, error) { return x.sizeofIn(id, 0) }

func (x *btfIndex) sizeofIn(id uint32, depth int) (uint32, error) {
	if depth > 8 {
		return 0, fmt.Errorf("%w: arrays nested too deep at %d", errBTF, id)
	}
	id, err := x.resolve(id)
	if err != nil {
		return 0, err
	}
	kind, _, _, size, rest, _ := x.typ(id)
	switch kind {
	case btfInt, btfStruct, btfUnion, btfEnum, btfEnum64, btfFloat:
		return size, nil
	case btfPtr:
		return 8, nil
	case btfArray:
		elem, n := binary.NativeEndian.Uint32(rest), binary.NativeEndian.Uint32(rest[8:])
		es, err := x.sizeofIn(elem, depth+1)
		if err != nil {
			return 0, err
		}
		if n != 0 && es > math.MaxUint32/n {
			return 0, fmt.Errorf("%w: array %d too large", errBTF, id)
		}
		return es * n, nil
	}
	return 0, fmt.Errorf("%w: type %d (kind %d) has no size", errBTF, id, kind)
}

// member finds name in the struct or union id, descending into anonymous
// members as findField does, base bits into the outermost struct.
func (x *btfIndex) member(id uint32, name string, base uint32, depth int) (field, bool, error) {
	if depth > 8 {
		return field{}, false, fmt.Errorf("%w: anonymous members nested too deep", errBTF)
	}
	id, err := x.resolve(id)
	if err != nil {
		return field{}, false, err
	}
	kind, flag, vlen, _, rest, _ := x.typ(id)
	if kind != btfStruct && kind != btfUnion {
		return field{}, false, nil
	}
	for i := range vlen {
		m := rest[12*i:]
		nameOff, typ, off := binary.NativeEndian.Uint32(m), binary.NativeEndian.Uint32(m[4:]), binary.NativeEndian.Uint32(m[8:])
		var nbits uint32
		if flag {
			nbits, off = off>>24, off&0xffffff
		}
		if uint64(base)+uint64(off) > math.MaxUint32 {
			return field{}, false, fmt.Errorf("%w: member offset overflows", errBTF)
		}
		off += base
		switch {
		case x.nameIs(nameOff, name):
			if nbits != 0 {
				return field{off: off / 8, size: 1, bit: off % 8, nbits: nbits, isBitfield: true}, true, nil
			}
			sz, err := x.sizeof(typ)
			if err != nil || off%8 != 0 {
				return field{}, false, err
			}
			return field{off: off / 8, size: sz}, true, nil
		case nameOff < uint32(len(x.strs)) && x.strs[nameOff] == 0: // anonymous
			if f, ok, err := x.member(typ, name, off, depth+1); ok || err != nil {
				return f, ok, err
			}
		}
	}
	return field{}, false, nil
}

// field is structName.name, checked as structField checks cilium/ebpf's.
func (x *btfIndex) field(structName, name string, size uint32) (field, error) {
	id, err := x.find(btfStruct, structName)
	if err != nil {
		return field{}, err
	}
	f, ok, err := x.member(id, name, 0, 0)
	switch {
	case err != nil:
		return field{}, err
	case !ok:
		return field{}, fmt.Errorf("kernel BTF has no %s.%s", structName, name)
	case f.isBitfield && f.bit+f.nbits > 8:
		return field{}, fmt.Errorf("%s.%s spans bytes", structName, name)
	case !f.isBitfield && size != 0 && f.size != size:
		return field{}, fmt.Errorf("%s.%s is %d bytes, want %d", structName, name, f.size, size)
	}
	return f, nil
}
