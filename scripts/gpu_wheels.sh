#!/usr/bin/env bash
# Fill wheels/ (git-ignored) with what a lent GPU machine lacks, to carry there with scripts/gpu_session.sh:
# highspy built for its Python (3.12; GPU_PYTHON to change) and cuPDLPx's source, which gpu_session.sh builds
# there against its nvcc. Run it here: it needs the package index, which that machine cannot reach.
set -euo pipefail
cd "$(dirname "$0")/.."
mkdir -p wheels
python3 -m pip download --quiet --disable-pip-version-check --no-deps --only-binary=:all: \
  --python-version "${GPU_PYTHON:-3.12}" --platform manylinux_2_28_x86_64 -d wheels "highspy>=1.7"
# cuPDLPx ships as a source package only, and pip download would try to build it: fetch the file itself
python3 - <<'EOF'
import json, pathlib, urllib.request
release = json.load(urllib.request.urlopen("https://pypi.org/pypi/cupdlpx/json", timeout=60))
(sdist,) = [u for u in release["urls"] if u["packagetype"] == "sdist"]
target = pathlib.Path("wheels") / sdist["filename"]
if not target.exists():
    target.write_bytes(urllib.request.urlopen(urllib.request.Request(
        urllib.request.urljoin("https://pypi.org/pypi/cupdlpx/json", sdist["url"])), timeout=120).read())
print("wheels/:", ", ".join(sorted(p.name for p in pathlib.Path("wheels").iterdir())))
EOF
