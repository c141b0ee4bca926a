// The syscall package's table stops before finit_module on amd64.
package main

const sysFinitModule = 313
