#!/usr/bin/env python3
"""Python's own `python3 -m http.server`, started with servelab's `--addr HOST:PORT`.

The grader starts a server from a command with `{addr}` in it; http.server wants
`--bind HOST PORT` instead. This wrapper turns one into the other and runs the module
exactly as `python3 -m http.server --bind HOST PORT --directory DIR` would, so that the
course can see what the grader says about a server that was never written for the
protocol (coursework/mutants/tests/python.rs asserts it).
"""

import argparse
import os
import runpy
import sys

parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
parser.add_argument("--addr", required=True, help="HOST:PORT to listen on")
options = parser.parse_args()
host, _, port = options.addr.rpartition(":")
# Serves this script's directory (a listing of the Python starter), not the caller's.
directory = os.path.dirname(os.path.abspath(__file__))
sys.argv = ["http.server", "--bind", host, "--directory", directory, port]
runpy.run_module("http.server", run_name="__main__", alter_sys=True)
