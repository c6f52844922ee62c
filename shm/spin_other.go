//go:build !amd64

package shm

// SpinPause is a spin-wait hint; here, where none is implemented, nothing.
func SpinPause() {}
