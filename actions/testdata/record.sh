#!/bin/sh
# Writes each argument on its own line, then the BOMBWATCH_ environment,
# to the file named by the first argument.
out=$1
shift
for a in "$@"; do printf 'arg:%s\n' "$a"; done > "$out"
env | grep '^BOMBWATCH_' | sort >> "$out"
