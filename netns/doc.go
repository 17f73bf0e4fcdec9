// Package netns finds the host's network namespaces and says whose they
// are: on a Kubernetes node or a Docker host, sockets live in one namespace
// per pod or container, and a port question is only answered by looking in
// all of them.
//
// List finds namespaces from /proc/*/ns/net (every namespace some process
// is in) and /run/netns (named ones, which may have no process),
// deduplicated by inode. Each namespace carries the processes in it and,
// where their cgroup paths tell it, the container id and Kubernetes pod UID
// (docker, containerd and CRI-O layouts, systemd and cgroupfs drivers);
// nothing is guessed: unknown stays empty.
//
// Do runs a function on an OS thread that has entered a namespace, so that
// sockets (netlink included) it opens belong to that namespace. Entering
// another namespace needs CAP_SYS_ADMIN (root), reading other processes'
// /proc/PID/ns/net needs CAP_SYS_PTRACE.
package netns
