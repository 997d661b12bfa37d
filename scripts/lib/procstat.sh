# shellcheck shell=bash
# Shared by scripts/fuzz-wire.sh and scripts/soak.sh: what a running server costs, read
# from /proc. Source it; it defines functions only.
#
# A server is measured as a process tree: the process-pipeline forks handler processes (and
# replaces any that die), so a leak in a child must count as much as one in the parent.
# Every figure is a sum over the server's PID and all its descendants:
#
#   rss_kib   VmRSS of /proc/PID/status (resident memory, KiB)
#   threads   Threads of /proc/PID/status
#   fds       the entries of /proc/PID/fd (sockets, pipes, files, epoll instances, ...)
#
# Linux only (like the servers). The tree is found from every process's PPid, because
# /proc/PID/task/TID/children exists only in kernels built with CONFIG_PROC_CHILDREN.

# proc_tree PID: PID and every descendant of it, one per line (PID first, if it runs).
proc_tree() {
  local root=$1
  # Pid and PPid of every process. The files are read with getline, which returns -1 for
  # a process that ended after the glob was expanded; awk's own opening of an argument
  # would stop there (mawk treats a missing file as fatal).
  awk 'BEGIN {
      for (i = 1; i < ARGC; i++) {
        pid = ""
        while ((getline line < ARGV[i]) > 0) {
          split(line, w, /[ \t]+/)
          if (w[1] == "Pid:") pid = w[2]
          else if (w[1] == "PPid:") { print pid, w[2]; break }
        }
        close(ARGV[i])
      }
    }' /proc/[0-9]*/status |
    awk -v root="$root" '
      { parent[$1] = $2 }
      END {
        if (root in parent) print root
        for (pid in parent) {
          # Walks up at most 64 generations: a descendant of root reaches it.
          p = parent[pid]
          for (depth = 0; depth < 64 && p != "" && p != "0"; depth++) {
            if (p == root) { print pid; break }
            p = parent[p]
          }
        }
      }'
}

# proc_running PID: true while PID exists and has not exited (an exited child that its
# parent has not reaped yet, a zombie, still has a /proc entry and still answers kill -0).
proc_running() {
  local state
  state=$(awk '$1 == "State:" { print $2 }' "/proc/$1/status" 2>/dev/null || true)
  [ -n "$state" ] && [ "$state" != Z ]
}

# proc_sample PID: prints "RSS_KIB THREADS FDS", each summed over PID's process tree.
proc_sample() {
  local rss=0 threads=0 fds=0 pid line r t
  for pid in $(proc_tree "$1"); do
    line=$(awk '$1 == "VmRSS:" { r = $2 } $1 == "Threads:" { t = $2 } END { print r + 0, t + 0 }' \
      "/proc/$pid/status" 2>/dev/null || true)
    [ -n "$line" ] || continue
    read -r r t <<<"$line"
    rss=$((rss + r))
    threads=$((threads + t))
    # `ls` lists the directory of the server's descriptors, not its own; their names are
    # numbers, so counting lines is exact.
    # shellcheck disable=SC2012
    fds=$((fds + $(ls "/proc/$pid/fd" 2>/dev/null | wc -l)))
  done
  echo "$rss $threads $fds"
}

# proc_settle PID SECONDS: waits (polling every 0.2 s, at most SECONDS) until two samples
# in a row agree, and prints the last sample. For a baseline: connections that a warm-up
# closed may still be draining in the server for a moment.
proc_settle() {
  local pid=$1 tries previous="" sample
  tries=$(awk -v s="$2" 'BEGIN { printf "%d", s * 5 }')
  sample=$(proc_sample "$pid")
  for _ in $(seq "$tries"); do
    sleep 0.2
    previous=$sample
    sample=$(proc_sample "$pid")
    # RSS moves by a page now and then; threads and descriptors must hold still.
    [ "$(cut -d' ' -f2,3 <<<"$sample")" = "$(cut -d' ' -f2,3 <<<"$previous")" ] && break
  done
  echo "$sample"
}

# proc_floor PID N: N samples 0.2 s apart, and prints the smallest of each figure
# ("RSS_KIB THREADS FDS"). Under load, a server that starts a thread per connection or
# per request holds more threads, descriptors and touched stack pages at one instant than
# at the next; the floor of a short burst is what it keeps, which is what a leak raises.
proc_floor() {
  local pid=$1 n=$2 i floor="" sample
  for ((i = 0; i < n; i++)); do
    [ "$i" -eq 0 ] || sleep 0.2
    sample=$(proc_sample "$pid")
    if [ -z "$floor" ]; then
      floor=$sample
    else
      floor=$(awk -v a="$floor" -v b="$sample" 'BEGIN {
        split(a, x, " "); split(b, y, " ")
        for (k = 1; k <= 3; k++) printf "%d%s", (y[k] < x[k] ? y[k] : x[k]), (k < 3 ? " " : "\n") }')
    fi
  done
  echo "$floor"
}
