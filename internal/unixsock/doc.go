// Package unixsock binds a server's Unix socket path. A socket file that a
// server which is gone left at the path is replaced; a live server's socket
// and anything that is not a socket (a file, a directory, a symbolic link)
// are left as they are and reported. Listen needs a Unix system; Check
// works everywhere.
package unixsock
