// Package kernelvm boots a Linux kernel under qemu with a small initramfs it
// builds itself and runs one program inside: the way tuple checks its rules
// model on kernels other than the one it runs on (Debian's 5.10, 6.1 and
// 6.12 cloud kernels; scripts/fetch-kernels fetches them).
//
// The initramfs holds the program (with its shared libraries when it is
// dynamically linked), any extra tools, the kernel's modules the program
// needs, and a description of the run. The program itself is the guest's
// init: a program that wants to run inside a guest calls Guest at the top of
// main (or TestMain); as PID 1 of a kernelvm guest it mounts /proc, /sys and
// /dev, loads the modules, runs itself again with the requested arguments,
// sends its standard output over a second serial port and powers the guest
// off. Anywhere else Guest returns at once.
//
// The host side (Run) needs qemu-system-x86_64 (Debian's qemu-system-x86);
// it uses KVM when /dev/kvm opens and works, TCG otherwise.
package kernelvm
