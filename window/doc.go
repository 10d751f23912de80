// Package window measures events per key over exact sliding windows.
//
// A Window answers, for a key and a time t, the sum of the amounts of the
// key's events in (t-per, t]: a count when every amount is 1, bytes or
// recipients otherwise. Unlike fixed windows, which reset at a boundary and
// so let up to twice the limit through around it, the answer is exact, for
// times on the window's resolution grid (see Resolution: whole seconds are
// on it for windows up to 4096 s). The Window keeps only the newest events
// whose amounts add up to more than the limit — all it needs to tell
// whether the limit is crossed and when the sum falls back under it — and
// one entry per interval of the resolution, so its memory per key is
// bounded by the limit (limit+1 entries for a count) and by 4097 entries,
// not by the traffic.
//
// Burst keeps FML's burst score: at each event, Σ 1/max(|t−tᵢ|, ε) over the
// key's earlier events within a time, over log times and over the messages'
// Date: headers.
//
// Time is always an argument: the package never reads the clock, so a
// replay of old events decides exactly what living through them did. It
// knows nothing of mail: a key is any string.
package window
