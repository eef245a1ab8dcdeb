#!/usr/bin/env bash
# Make the ROS 2 interface packages under interfaces/ (control_msgs, tf2_msgs: those with no PyPI wheel)
# importable from a virtual environment.
#
#   scripts/build_interfaces.sh [VENV]        (default: .venv)
#
# For each package folder interfaces/<name> (a package.xml, CMakeLists.txt and msg/, srv/, action/ files):
# 1. If the venv's python can already import every type the folder defines (from a sourced system ROS 2,
#    or from an earlier run of this script with the same definitions), the package is left alone.
# 2. Otherwise, once for all packages to build, the ament/rosidl build wheels (requirements-build.txt) are
#    installed into the venv and the Python/numpy include paths that those wheels' exported CMake files carry
#    from the wheel build machine are rewritten to the venv's own; then the package is configured, built and
#    installed into the venv prefix with plain cmake (no colcon, nothing to source).
# 3. The imports are verified; any failure stops with a message saying which package and step failed.
#
# Packages are built in alphabetical order; none of them depends on another one here.
#
# Environment: INTERFACES_FORCE=1 rebuilds even if the imports work; KEEP_BUILD=1 keeps the temporary build
# folders.
set -euo pipefail

root="$(cd "$(dirname "$0")/.." && pwd)"
venv_arg="${1:-.venv}"
case "$venv_arg" in
  /*) venv="$venv_arg" ;;
  *) venv="$(pwd)/$venv_arg" ;;
esac
py="$venv/bin/python"

say() { echo "[build_interfaces] $*"; }
die() { echo "[build_interfaces] ERROR: $*" >&2; exit 1; }

[ -x "$py" ] || die "no python at $py; create the venv first (scripts/bootstrap.sh does)"
packages=()
for folder in "$root"/interfaces/*/; do
  [ -f "$folder/package.xml" ] && packages+=("$(basename "$folder")")
done
[ "${#packages[@]}" -gt 0 ] || die "no interface packages (folders with a package.xml) under $root/interfaces"

source_hash() {  # content hash of a package's definitions: an edited definition triggers a rebuild
  (cd "$root/interfaces/$1" && shopt -s nullglob && cat package.xml CMakeLists.txt msg/*.msg srv/*.srv action/*.action \
    | sha256sum | cut -d' ' -f1)
}

import_check() {  # python importing every type package $1 defines, then printing the package's folder
  local pkg="$1" kind file lines=""
  for kind in msg srv action; do
    for file in "$root/interfaces/$pkg/$kind"/*."$kind"; do
      [ -f "$file" ] && lines+="from $pkg.$kind import $(basename "$file" ".$kind")"$'\n'
    done
  done
  printf '%simport os, %s\nprint(os.path.dirname(%s.__file__))\n' "$lines" "$pkg" "$pkg"
}

to_build=()
for pkg in "${packages[@]}"; do
  stamp_file="$venv/share/$pkg/.mtrl_robot_source_hash"
  if [ "${INTERFACES_FORCE:-0}" != 1 ] && where="$("$py" -c "$(import_check "$pkg")" 2>/dev/null)"; then
    case "$where" in
      "$venv"/*)
        if [ -f "$stamp_file" ] && [ "$(cat "$stamp_file")" = "$(source_hash "$pkg")" ]; then
          say "$pkg already built into $venv (definitions unchanged); nothing to do"
          continue
        fi
        say "$pkg in $venv was built from other definitions; rebuilding"
        ;;
      *)
        say "$pkg found outside the venv ($where), e.g. a system ROS 2; using it"
        continue
        ;;
    esac
  fi
  to_build+=("$pkg")
done
[ "${#to_build[@]}" -gt 0 ] || exit 0

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

build_package() {  # configure, build and install interfaces/$1 into the venv, then verify its imports
  local pkg="$1" build log
  build="$(mktemp -d "${TMPDIR:-/tmp}/mtrl_${pkg}_build.XXXXXX")"
  log="$build/build.log"
  run_step() {  # run_step "description" command...; output goes to the log, shown on failure
    local what="$1"; shift
    if ! "$@" >>"$log" 2>&1; then
      echo "---- last lines of $log ----" >&2
      tail -n 40 "$log" >&2
      die "$pkg: $what failed (full log: $log)"
    fi
  }
  say "configuring interfaces/$pkg (cmake, build folder $build)"
  run_step "cmake configure" env PATH="$venv/bin:$PATH" AMENT_PREFIX_PATH="$venv" \
    cmake -S "$root/interfaces/$pkg" -B "$build" "${generator[@]}" \
    -DCMAKE_BUILD_TYPE=Release \
    -DCMAKE_PREFIX_PATH="$venv" \
    -DCMAKE_INSTALL_PREFIX="$venv" \
    -DPython3_EXECUTABLE="$py" \
    -DPython3_FIND_STRATEGY=LOCATION \
    -DBUILD_TESTING=OFF
  say "building $pkg"
  run_step "cmake build" env PATH="$venv/bin:$PATH" AMENT_PREFIX_PATH="$venv" \
    cmake --build "$build" --parallel "$(nproc)"
  say "installing $pkg into $venv"
  run_step "cmake install" cmake --install "$build"
  source_hash "$pkg" > "$venv/share/$pkg/.mtrl_robot_source_hash"
  "$py" -c "$(import_check "$pkg")" >/dev/null \
    || die "$pkg was installed but importing its types fails (build folder kept: $build)"
  say "$pkg: every type it defines imports"
  if [ "${KEEP_BUILD:-0}" = 1 ]; then say "build folder kept: $build"; else rm -rf "$build"; fi
}

for pkg in "${to_build[@]}"; do
  build_package "$pkg"
done
say "done in $((SECONDS - start)) s"
