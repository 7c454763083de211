# Sourced by scripts/serve, scripts/test and scripts/bench: make the virtualenv
# ($ULT_VENV, default .venv) if missing and (re)install the project when
# pyproject.toml or setup.py changed since the last install, or when the tree's
# build is not the one asked for: ULT_COMPILE=1 the hot path compiled by mypyc
# (in place, so every venv on this tree runs it; rebuilt when a compiled module's
# source changed), otherwise pure Python. Without a C compiler or Python's headers
# a compiled build falls back to pure Python with a note.
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"
extras="${1:-}"
py="${PYTHON:-python3}"
venv="${ULT_VENV:-.venv}"
if [ ! -x "$venv/bin/python" ]; then
    "$py" -m venv "$venv"
fi
# -P: the script's directory (the package, with its own secrets.py) stays off sys.path.
build_tool=("$venv/bin/python" -P ult_actors/compiled.py)
want=pure
if [ "${ULT_COMPILE:-0}" = 1 ]; then
    if missing="$("${build_tool[@]}" --toolchain)"; then
        want=compiled
    else
        echo "note: not compiling the hot path ($missing): pure Python, slower" >&2
    fi
fi
stamp="$venv/.installed${extras:+-$extras}"
if [ ! -f "$stamp" ] || [ pyproject.toml -nt "$stamp" ] || [ setup.py -nt "$stamp" ] ||
    [ "$("${build_tool[@]}")" != "$want" ]; then
    spec="."
    [ -n "$extras" ] && spec=".[$extras]"
    [ "$want" = compiled ] && echo "compiling the hot path with mypyc (a minute or two)..." >&2
    ULT_COMPILE="$([ "$want" = compiled ] && echo 1 || echo 0)" \
        "$venv/bin/python" -m pip install --quiet --disable-pip-version-check -e "$spec"
    touch "$stamp"
fi
