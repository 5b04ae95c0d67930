# Sourced by run.sh and test.sh: make .venv with the pinned versions, once.
# A fresh Debian/Ubuntu may lack python3-venv; install it when we can (root or sudo).
py=${PYTHON:-python3}
if ! "$py" -c 'import sys; sys.exit(sys.version_info < (3, 11))' 2>/dev/null; then
  echo "pdm-edge needs Python >= 3.11 (found: $("$py" --version 2>&1))" >&2
  exit 1
fi
if ! "$py" -m venv --help >/dev/null 2>&1 || ! "$py" -c 'import ensurepip' 2>/dev/null; then
  sudo=""; [ "$(id -u)" = 0 ] || sudo="sudo"
  $sudo apt-get update -qq && $sudo apt-get install -y -qq python3-venv python3-pip >/dev/null
fi
extras=${PDM_EXTRAS:+[$PDM_EXTRAS]}
stamp=".venv/.installed${extras}"
want="$(cat pyproject.toml constraints.txt | sha256sum | cut -c1-16)"
if [ ! -x .venv/bin/python ] || [ "$(cat "$stamp" 2>/dev/null)" != "$want" ]; then
  [ -x .venv/bin/python ] || "$py" -m venv .venv
  .venv/bin/python -m pip install -q --disable-pip-version-check -c constraints.txt -e ".${extras}"
  # The DSP's numba kernels compiled once now (~5 s), kept in numba's cache for every run.
  .venv/bin/python -c 'from pdm.dsp.features import compile_kernels; compile_kernels()'
  echo "$want" > "$stamp"
fi
