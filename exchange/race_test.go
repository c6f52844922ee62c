//go:build race

package exchange_test

// raceEnabled is true in a binary built with -race, whose tests scale
// their cycle counts down (everything runs several times slower).
const raceEnabled = true
