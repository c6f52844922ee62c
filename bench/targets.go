//go:build linux

package bench

// Targets of rows whose scenarios live in files being reworked at the time
// these were written (agent.go); each belongs in its scenario's Targets,
// next to the row, and moves there with the next change of that file.
// Rows that do not exist yet when their issue is open (same-CPU round
// trips, payload calls, C and Python calls, cross-node calls) get their
// targets in their scenario when they are added.
var pendingTargets = []Target{
	// Issue 13: an agent call as short as the exchange's.
	{Metric: MetricActionRTT, Op: AtMost, Factor: 1, Plus: 300, Vs: MetricExchangeRTTSpin, Issue: 13},
	{Metric: MetricActionRTT, Stat: StatP99, Op: AtMost, Factor: 3, Vs: MetricActionRTT, VsStat: StatP50, Issue: 13},
	{Metric: MetricActionThroughput, Op: AtLeast, Factor: 0.3, Vs: MetricExchangeThrough1, Issue: 13},
	{Metric: MetricActionThroughput, Op: AtLeast, Factor: 1.5e6, Issue: 13},
	{Metric: MetricActionThroughput8, Op: AtLeast, Factor: 0.3, Vs: MetricExchangeThrough8, Issue: 13},
}

// TargetsFor returns the targets of one of the scenario's metrics: those
// the scenario declares and those still waiting to move next to their row.
func (s Scenario) TargetsFor(metric string) []Target {
	var out []Target
	for _, list := range [][]Target{s.Targets, pendingTargets} {
		for _, t := range list {
			if t.Metric == metric {
				out = append(out, t)
			}
		}
	}
	return out
}
