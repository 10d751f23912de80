// Package parsers turns mail-server log lines into sender events.
//
// Each log format (Postfix, sendmail, qmail) lives in its own file and joins
// the registry from an init function, so adding a format touches nothing
// else. A Parser is made per input file because formats such as Postfix must
// correlate several lines (the smtpd "client=" line and the qmgr "from=" line
// of one queue ID) before an event is complete.
//
// Parsers know nothing of windows, rules or actions. They never read the wall
// clock: the reference time used to infer the year of classic syslog stamps
// is passed in, so a replay of a log yields the same events as living through
// it. Every byte of a log line may have been written by an attacker (sender
// addresses, HELO names, user names): parsers treat them as data, never panic
// on them, and do not use regular expressions on the hot path.
package parsers
