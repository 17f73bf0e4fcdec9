// Package nat settles what source NAT does to source ports: which ports a
// masquerading or SNAT rule can still hand out towards each destination.
//
// The kernel's NAT (net/netfilter/nf_nat_core.c) keeps an inside client's
// source port when the translated four-tuple is unique, and otherwise
// searches the rule's port range for a port whose reply tuple (destination
// address and port, NAT address and port, protocol) no conntrack entry holds.
// So the budget is per (NAT address, protocol, destination): two inside
// clients may use one outside port towards different destinations, and a
// destination runs out of ports while another still has room.
//
// Budgets is the arithmetic, a pure function of the NAT rules and the
// conntrack table; Read (Linux) takes both from the kernel over netlink
// (nftables rules, conntrack entries and statistics). Reading needs
// CAP_NET_ADMIN.
package nat
