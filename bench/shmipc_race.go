//go:build linux && race

package bench

import "context"

// shmipcRaceSkip is why a -race build does not measure shmipc-go.
const shmipcRaceSkip = "not measured in a -race build: shmipc-go v0.2.0 has data races of its own " +
	"(session teardown, log level) that the race detector reports; go run ./cmd/shmbench measures it"

func runShmipc(ctx context.Context, env *Env) ([]Row, error) {
	return SkipRows(shmipcRaceSkip, MetricShmipcRTT), nil
}
