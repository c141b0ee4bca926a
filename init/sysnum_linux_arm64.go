// finit_module's number on arm64 (the generic table), spelled out as on amd64.
package main

const sysFinitModule = 273
