// Package localroute waits until addresses just added to a network
// namespace are usable: the kernel routes each as a local address. An IPv6
// address gets its local route from a work queue after RTM_NEWADDR has
// returned (addrconf's DAD work, even with IFA_F_NODAD), so a socket
// operation right after adding it can fail with ENETUNREACH; a timer only
// makes that rarer. The wait asks the kernel (RTM_GETROUTE) and wakes on
// its route events. Linux only.
package localroute
