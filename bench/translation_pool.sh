#!/usr/bin/env bash
# bench/translation_pool.sh - pools several bench/translation.sh reports: for each mode, the
# median and interquartile range of the per-round paired differences to openai (schedstat CPU,
# us per request) over all the rounds of all the given runs. One run's 10 rounds know a median
# to about +-10 us on this VM; pooling many runs is what gives a verdict.
#   bench/translation_pool.sh bench/out/translation-2026*.json
set -euo pipefail
(($# > 0)) || { echo "usage: $0 bench/out/translation-<timestamp>.json ..." >&2; exit 2; }
jq -s -r '
  def q(a; p): (a | sort) as $s | $s[((($s | length) - 1) * p) | floor] | . * 10 | round / 10;
  [.[] | .end_to_end | to_entries[] | {mode: .key, rounds: .value.rounds}] as $all
  | ["non-stream", "stream"][] as $m
  | [$all[] | select(.mode == $m) | .rounds[]] as $r
  | ($r | map(.openai.cpu_us_schedstat)) as $o
  | ($r | map(.anthropic.cpu_us_schedstat - .openai.cpu_us_schedstat)) as $a
  | ($r | map(.gemini.cpu_us_schedstat - .openai.cpu_us_schedstat)) as $g
  | "\($m): \($r | length) rounds; openai \(q($o; 0.5)) us/req; anthropic - openai \(q($a; 0.5)) (IQR \(q($a; 0.25)) .. \(q($a; 0.75))); gemini - openai \(q($g; 0.5)) (IQR \(q($g; 0.25)) .. \(q($g; 0.75)))"
' "$@"
