// Package proxystore moves payloads of any size between the processes of an
// exchange without copying them: a payload lives in a [Store] and a
// [Proxy], a few dozen bytes, travels in its place.
package proxystore
