package main

import (
	"cmp"
	"os"
	"runtime/debug"

	"github.com/bombwatch/bombwatch/config"
	"github.com/bombwatch/bombwatch/pipeline"
)

// bytesPerKey is what memory the soft limit allows a key of max_keys: a
// count window's key costs about 100 bytes, a distinct one's more, and a
// full batch encodes every key (see pipeline.commit): the limit is a net
// well above what is live, which the collector would thrash against.
const bytesPerKey = 400

// limitMemory sets the Go heap's soft limit from max_keys, unless
// GOMEMLIMIT is set: near it the collector works harder instead of
// letting the heap grow to twice what is live, so that a daemon that
// tracks an attacker's millions of keys stays near what they cost.
func limitMemory(cfg *config.Config) {
	if os.Getenv("GOMEMLIMIT") != "" {
		return
	}
	keys := cmp.Or(cfg.MaxKeys, pipeline.DefaultMaxKeys)
	debug.SetMemoryLimit(int64(keys)*bytesPerKey + 256<<20)
}
