//go:build !linux && !darwin

package plant

import "errors"

func mknodNull(path string) error { return errors.ErrUnsupported }
