//go:build linux && cgo

package main

import (
	"context"
	"errors"

	"github.com/shmex/shmex/agent"
	"github.com/shmex/shmex/exchange"
	"github.com/shmex/shmex/proxystore"
)

// Status codes of shmex.h (TestHeaderStatusCodes checks that they match).
const (
	statusOK               = 0
	statusInval            = -1
	statusBadHandle        = -2
	statusClosed           = -3
	statusBadID            = -4
	statusMailboxClosed    = -5
	statusTimedOut         = -6
	statusPending          = -7
	statusRemote           = -8
	statusAgentTerminated  = -9
	statusCanceled         = -10
	statusShutdown         = -11
	statusTooLarge         = -12
	statusNoSpace          = -13
	statusProxy            = -14
	statusTruncated        = -15
	statusExist            = -16
	statusIO               = -17
	statusBusy             = -18
	statusMin              = statusBusy
	errorKindActionGeneric = "ActionError"
)

// Errors of this package, each mapped to one status.
var (
	// errBadHandle reports a handle never made, closed, or of the wrong kind.
	errBadHandle = errors.New("bad handle")
	// errInval reports a bad argument from C.
	errInval = errors.New("invalid argument")
	// errClosed reports an object (or its parent) closed meanwhile.
	errClosed = errors.New("closed")
	// errShutdown reports an agent asked to shut down.
	errShutdown = errors.New("agent shut down")
	// errTruncated reports an output buffer too small.
	errTruncated = errors.New("output buffer too small")
	// errTimedOut reports a wait that ran out (a poll that found nothing).
	errTimedOut = errors.New("timed out")
)

// statusOf maps err to a status code and, for errors an agent answered, the
// remote error's kind.
func statusOf(err error) (status int, kind string) {
	var re *exchange.RemoteError
	if errors.As(err, &re) {
		kind = re.Kind
	}
	switch {
	case err == nil:
		return statusOK, ""
	case errors.Is(err, errBadHandle):
		return statusBadHandle, ""
	case errors.Is(err, errInval), errors.Is(err, exchange.ErrInvalidArgument), errors.Is(err, exchange.ErrWrongRole):
		return statusInval, ""
	case errors.Is(err, errShutdown):
		return statusShutdown, ""
	case errors.Is(err, errTruncated):
		return statusTruncated, ""
	case errors.Is(err, agent.ErrAgentTerminated):
		if kind == "" {
			kind = exchange.ErrorKindMailboxTerminated
		}
		return statusAgentTerminated, kind
	case re != nil:
		return statusRemote, kind
	case errors.Is(err, errClosed), errors.Is(err, exchange.ErrExchangeClosed),
		errors.Is(err, proxystore.ErrClosed), errors.Is(err, agent.ErrHandleClosed):
		return statusClosed, ""
	case errors.Is(err, exchange.ErrBadEntityID):
		return statusBadID, ""
	case errors.Is(err, exchange.ErrMailboxClosed):
		return statusMailboxClosed, ""
	case errors.Is(err, errTimedOut), errors.Is(err, context.DeadlineExceeded):
		return statusTimedOut, ""
	case errors.Is(err, agent.ErrPending):
		return statusPending, ""
	case errors.Is(err, agent.ErrCanceled), errors.Is(err, context.Canceled):
		return statusCanceled, ""
	case errors.Is(err, exchange.ErrMessageTooLarge):
		return statusTooLarge, ""
	case errors.Is(err, proxystore.ErrStoreFull), errors.Is(err, exchange.ErrRegistryFull):
		return statusNoSpace, ""
	case errors.Is(err, proxystore.ErrBadProxy), errors.Is(err, proxystore.ErrStaleProxy),
		errors.Is(err, proxystore.ErrForeignProxy), errors.Is(err, proxystore.ErrOwnerDead),
		errors.Is(err, proxystore.ErrExpired), errors.Is(err, proxystore.ErrNotOwner),
		errors.Is(err, proxystore.ErrReleased), errors.Is(err, proxystore.ErrTooManyViews),
		errors.Is(err, proxystore.ErrBadArena):
		return statusProxy, ""
	case errors.Is(err, exchange.ErrDuplicateID):
		return statusExist, ""
	case errors.Is(err, exchange.ErrMailboxBusy):
		return statusBusy, ""
	}
	return statusIO, ""
}
