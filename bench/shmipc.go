//go:build linux

package bench

// MetricShmipcRTT is the round trip of CloudWeGo's shmipc-go: a 64-byte
// request and its echo on one stream between this process and a child.
const MetricShmipcRTT = "shmipc.rtt_ns"

func init() {
	Register(Scenario{
		Name: "shmipc", Rank: RankPeer + 6,
		Doc: "CloudWeGo shmipc-go v0.2.0 (shared-memory buffers and queues, Unix socket notifications): " +
			"64-byte echo round trip on one stream with a child process",
		Metrics: []string{MetricShmipcRTT},
		Run:     runShmipc, // shmipc_run.go; in a -race build shmipc_race.go
	})
}
