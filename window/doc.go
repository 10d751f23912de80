// Package window counts events per key over exact sliding windows.
//
// A Counter answers, for a key and a time t, how many of the key's events
// fell in the window (t-per, t]. Unlike fixed windows, which reset at a
// boundary and so let up to twice the limit through around it, the answer
// is exact: the Counter keeps the times of the key's last limit+1 events,
// which is all it needs to tell whether the limit is crossed, so its memory
// per key is bounded by the limit and not by the traffic.
//
// Time is always an argument: the package never reads the clock, so a
// replay of old events decides exactly what living through them did. It
// knows nothing of mail: a key is any string.
package window
