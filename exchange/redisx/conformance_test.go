package redisx_test

import (
	"testing"

	"github.com/shmex/shmex/exchange"
	"github.com/shmex/shmex/exchange/exchangetest"
	"github.com/shmex/shmex/exchange/redisx"
)

// TestRedisConformance runs the conformance suite on the Redis exchange:
// each subtest on its own prefix of the shared server; the second
// participant is another handle of this process.
func TestRedisConformance(t *testing.T) {
	srv := sharedServer(t)
	exchangetest.Run(t, exchangetest.Harness{
		New: func(t *testing.T, cfg exchangetest.Config) exchange.Exchange {
			var opts []redisx.Option
			if cfg.MailboxCapacity > 0 {
				opts = append(opts, redisx.WithMailboxCapacity(cfg.MailboxCapacity))
			}
			return open(t, srv.Addr, newPrefix(), opts...)
		},
		Open: func(t *testing.T, ex exchange.Exchange) exchange.Exchange {
			x := ex.(*redisx.Exchange)
			return open(t, srv.Addr, x.Prefix())
		},
	})
}
