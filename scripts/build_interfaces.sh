#!/usr/bin/env bash
# Make control_msgs/action/FollowJointTrajectory importable from a virtual environment.
#
#   scripts/build_interfaces.sh [VENV]        (default: .venv)
#
# 1. If the venv's python can already import control_msgs.action (a sourced system ROS 2, or an
#    earlier run of this script with the same definitions), nothing is done.
# 2. Otherwise the ament/rosidl build wheels (requirements-build.txt) are installed into the venv,
#    the Python/numpy include paths that those wheels' exported CMake files carry from the wheel
#    build machine are rewritten to the venv's own, and interfaces/control_msgs is configured,
#    built and installed into the venv prefix with plain cmake (no colcon, nothing to source).
# 3. The import is verified; any failure stops with a message saying which step failed.
#
# Environment: CONTROL_MSGS_FORCE=1 rebuilds even if an import works; KEEP_BUILD=1 keeps the
# temporary build folder.
set -euo pipefail

root="$(cd "$(dirname "$0")/.." && pwd)"
venv_arg="${1:-.venv}"
case "$venv_arg" in
  /*) venv="$venv_arg" ;;
  *) venv="$(pwd)/$venv_arg" ;;
esac
py="$venv/bin/python"
src="$root/interfaces/control_msgs"
stamp_file="$venv/share/control_msgs/.mtrl_robot_source_hash"

say() { echo "[build_interfaces] $*"; }
die() { echo "[build_interfaces] ERROR: $*" >&2; exit 1; }

[ -x "$py" ] || die "no python at $py; create the venv first (scripts/bootstrap.sh does)"
[ -f "$src/package.xml" ] || die "interface sources not found at $src"

# Content hash of the interface definitions, stored next to an installed build so that an edited
# definition triggers a rebuild while an unchanged one is left alone.
src_hash="$(cd "$src" && cat package.xml CMakeLists.txt msg/*.msg action/*.action | sha256sum | cut -d' ' -f1)"

import_check='from control_msgs.action import FollowJointTrajectory; import control_msgs, os; print(os.path.dirname(control_msgs.__file__))'

if [ "${CONTROL_MSGS_FORCE:-0}" != 1 ] && where="$("$py" -c "$import_check" 2>/dev/null)"; then
  case "$where" in
    "$venv"/*)
      if [ -f "$stamp_file" ] && [ "$(cat "$stamp_file")" = "$src_hash" ]; then
        say "control_msgs already built into $venv (definitions unchanged); nothing to do"
        exit 0
      fi
      say "control_msgs in $venv was built from other definitions; rebuilding"
      ;;
    *)
      say "control_msgs found outside the venv ($where), e.g. a system ROS 2; using it"
      exit 0
      ;;
  esac
fi

start=$SECONDS
for tool in cmake cc c++; do
  command -v "$tool" >/dev/null || die "'$tool' not found; install it (Debian: apt-get install cmake g++)"
done
generator=()
if command -v ninja >/dev/null; then generator=(-G Ninja); fi

say "installing build wheels (requirements-build.txt) into $venv"
# The machine-wide pip configuration may name index folders that do not exist; pip warns about
# each of them. Those lines are noise here; everything else pip prints is kept.
if ! "$py" -m pip install -q -r "$root/requirements-build.txt" \
    2> >(grep -v "is ignored: it is neither a file nor a directory" >&2); then
  die "pip could not install the build wheels listed in requirements-build.txt"
fi

say "pointing the wheels' CMake files at this venv's Python and numpy headers"
"$py" - "$venv" <<'PY' || die "could not rewrite the include paths in the wheels' CMake files"
import pathlib
import sys
import sysconfig

import numpy

venv = pathlib.Path(sys.argv[1])
py_inc = sysconfig.get_paths()["include"]
np_inc = numpy.get_include()
# The wheels are built in a manylinux image whose interpreter lives in /opt/python/cp3XY-cp3XY.
tag = f"cp{sys.version_info.major}{sys.version_info.minor}"
ver = f"python{sys.version_info.major}.{sys.version_info.minor}"
old_root = f"/opt/python/{tag}-{tag}"
replacements = [
    (f"{old_root}/lib/{ver}/site-packages/numpy/_core/include", np_inc),
    (f"{old_root}/lib/{ver}/site-packages/numpy/core/include", np_inc),
    (f"{old_root}/include/{ver}", py_inc),
]
changed = 0
for path in (venv / "share").glob("*/cmake/*.cmake"):
    text = path.read_text()
    new = text
    for old, repl in replacements:
        new = new.replace(old, repl)
    if new != text:
        path.write_text(new)
        changed += 1
leftover = [str(p) for p in (venv / "share").glob("*/cmake/*.cmake") if old_root in p.read_text()]
if leftover:
    sys.exit(f"paths under {old_root} remain in: {', '.join(leftover)}")
print(f"[build_interfaces]   {changed} file(s) rewritten; python {py_inc}, numpy {np_inc}")
PY

build="$(mktemp -d "${TMPDIR:-/tmp}/mtrl_control_msgs_build.XXXXXX")"
cleanup() {
  if [ "${KEEP_BUILD:-0}" = 1 ]; then say "build folder kept: $build"; else rm -rf "$build"; fi
}
trap cleanup EXIT
log="$build/build.log"

run_step() {  # run_step "description" command...; output goes to the log, shown on failure
  local what="$1"; shift
  if ! "$@" >>"$log" 2>&1; then
    echo "---- last lines of $log ----" >&2
    tail -n 40 "$log" >&2
    KEEP_BUILD=1
    die "$what failed (full log: $log)"
  fi
}

say "configuring interfaces/control_msgs (cmake, build folder $build)"
run_step "cmake configure" env PATH="$venv/bin:$PATH" AMENT_PREFIX_PATH="$venv" \
  cmake -S "$src" -B "$build" "${generator[@]}" \
  -DCMAKE_BUILD_TYPE=Release \
  -DCMAKE_PREFIX_PATH="$venv" \
  -DCMAKE_INSTALL_PREFIX="$venv" \
  -DPython3_EXECUTABLE="$py" \
  -DPython3_FIND_STRATEGY=LOCATION \
  -DBUILD_TESTING=OFF
say "building"
run_step "cmake build" env PATH="$venv/bin:$PATH" AMENT_PREFIX_PATH="$venv" cmake --build "$build" --parallel "$(nproc)"
say "installing into $venv"
run_step "cmake install" cmake --install "$build"
echo "$src_hash" > "$stamp_file"

say "verifying the import"
"$py" - <<'PY' || die "control_msgs was installed but 'from control_msgs.action import FollowJointTrajectory' fails"
from control_msgs.action import FollowJointTrajectory
from control_msgs.msg import JointComponentTolerance, JointTolerance  # noqa: F401

goal = FollowJointTrajectory.Goal()
assert hasattr(goal, "component_path_tolerance") and hasattr(FollowJointTrajectory.Feedback(), "multi_dof_index")
assert FollowJointTrajectory.Result.GOAL_TOLERANCE_VIOLATED == -5
print("[build_interfaces]   control_msgs.action.FollowJointTrajectory imports")
PY
say "done in $((SECONDS - start)) s"
