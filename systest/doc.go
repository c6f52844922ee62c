// Package systest holds shmex's system tests: crash campaigns and soaks that drive the public API across real processes.
package systest
