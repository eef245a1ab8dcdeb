#!/usr/bin/env bash
# Create (or update) the project's virtual environment: ROS 2 Kilted wheels, torch (CPU), simulators,
# and mtrl_robot itself in editable mode. Safe to run again; pip skips what is already installed.
set -euo pipefail
python=${1:-python3}
venv=${2:-.venv}
cd "$(dirname "$0")/.."
if [ ! -x "$venv/bin/python" ]; then
  "$python" -m venv "$venv"
fi
"$venv/bin/python" -m pip install -q --upgrade pip
"$venv/bin/python" -m pip install -q -r requirements.txt
scripts/build_interfaces.sh "$venv"   # control_msgs, tf2_msgs: system ROS 2 if present, else built from interfaces/
"$venv/bin/python" -m pip install -q --no-deps -e .
