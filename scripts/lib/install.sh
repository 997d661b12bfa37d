# shellcheck shell=bash
# Shared by the scripts in scripts/: installing what a script needs, only where missing.
# Source it; it defines functions and sets SUDO (empty when running as root).

SUDO=""
[ "$(id -u)" -eq 0 ] || SUDO=sudo

# apt_install PACKAGE...: installs the packages with apt, without letting apt start any
# system service they contain (nginx, Apache and Docker would otherwise start on their
# default ports): a policy-rc.d that says "no" is put in place for the install if none is.
apt_install() {
  echo "installing $* with apt" >&2
  local policy_added=0
  if [ ! -e /usr/sbin/policy-rc.d ]; then
    printf '#!/bin/sh\nexit 101\n' | $SUDO tee /usr/sbin/policy-rc.d >/dev/null
    $SUDO chmod 755 /usr/sbin/policy-rc.d
    policy_added=1
  fi
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "$@" >/dev/null
  [ $policy_added -eq 0 ] || $SUDO rm -f /usr/sbin/policy-rc.d
}

# pip_tool PACKAGE: installs a pip package that ships a program into its own directory
# under ~/.cache/servelab (nothing system-wide, no virtualenv needed) and prints that
# directory; the program is in its bin/.
pip_tool() {
  local dir=${XDG_CACHE_HOME:-$HOME/.cache}/servelab/$1
  if [ ! -d "$dir/bin" ]; then
    python3 -m pip --version >/dev/null 2>&1 || apt_install python3-pip
    echo "installing $1 with pip into $dir" >&2
    # Debian marks its Python as externally managed; a --target install does not touch it.
    python3 -m pip install -q --target "$dir" "$1" 2>/dev/null ||
      python3 -m pip install -q --break-system-packages --target "$dir" "$1"
  fi
  echo "$dir"
}
