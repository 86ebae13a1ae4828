#!/bin/bash
# wait for a busy apply worker (pgvigil_aa or pglogical), then the whole machine's CPU use and the top processes over 1.5 s
for i in $(seq 1 900); do
  p=$(ps -eo pid,pcpu,args --sort=-pcpu | grep -E "${PAT:-pgvigil_aa apply}" | grep -v grep | awk '$2 > 30 {print $1; exit}')
  pgrep -x pgbench >/dev/null && p=""
  if [ -n "$p" ]; then
    read -r _ a1 b1 c1 d1 e1 f1 g1 h1 _ < /proc/stat
    top -b -d 1.5 -n 2 -w 200 | awk '/^top -/{n++} n==2' | head -16 > ${OUTF:-/tmp/cpu.txt}
    read -r _ a2 b2 c2 d2 e2 f2 g2 h2 _ < /proc/stat
    busy=$(( (a2+b2+c2+f2+g2+h2) - (a1+b1+c1+f1+g1+h1) )); idle=$(( (d2+e2) - (d1+e1) ))
    echo "machine busy $(( 100 * busy / (busy + idle) ))% of 2 cores (idle+iowait $(( 100 * idle / (busy + idle) ))%)" >> ${OUTF:-/tmp/cpu.txt}
    exit 0
  fi
  sleep 0.2
done
