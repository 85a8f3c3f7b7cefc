#!/usr/bin/env bash
# Issue 9's GPU checks and measurements, prepared for a lent GPU machine's short lease (15 minutes of device time,
# the machine's start included): two commands of at most 7 and 6 minutes (fill wheels/ first with
# scripts/gpu_wheels.sh, and carry it):
#   bash scripts/gpu_session.sh checks  # setup; cuPDLPx built for this GPU (in the background); the parity suite's
#                                       # dualip tests on CUDA; profile_dualip.py at 1e7 (plain and --engine compiled);
#                                       # gpu_scale.py at 1e6 and 1e7 with --compile, HiGHS and cuPDLPx
#   bash scripts/gpu_session.sh scale   # setup; gpu_scale.py at 1e8
#   bash scripts/gpu_session.sh large   # setup; gpu_scale.py at 2.5e8 (DuaLip's headline size), if time is left
# Every step has its own time limit (a part's limits add up to its budget above) and keeps its result whatever
# the later steps do. What comes back in $OUT (default gpu_out/; the device tool returns at most 8 files): the
# JSON results, steps.txt (each step's exit status and seconds), logs.tgz (each step's output) and, after a
# cuPDLPx build, its wheel (put it into wheels/ to skip the build next time). The machine has torch, numpy,
# scipy, sympy, pandas, pyarrow, pytest and nvcc; highspy comes from wheels/.
# A dry run on a CPU: DEVICE=cpu PYTHON=.venv/bin/python SIZES=1e5 PROFILE_SIZE=1e5 bash scripts/gpu_session.sh checks
set -uo pipefail
cd "$(dirname "$0")/.."
part=${1:?usage: gpu_session.sh checks|scale|large}
export OUT=${OUT:-gpu_out} PY=${PYTHON:-python3} DEVICE=${DEVICE:-cuda}
mkdir -p "$OUT/logs"

step() {  # step NAME SECONDS COMMAND...: run with a time limit, output to $OUT/logs/NAME.log, status to steps.txt
  local name=$1 limit=$2 start=$SECONDS
  shift 2
  timeout --kill-after=10 "$limit" bash -c '"$@"' "$name" "$@" >"$OUT/logs/$name.log" 2>&1
  local rc=$?
  echo "$part $name rc=$rc seconds=$((SECONDS - start)) limit=$limit" | tee -a "$OUT/steps.txt"
}

setup() {
  "$PY" -m pip install --quiet --no-index --find-links wheels highspy &&
    "$PY" -m pip install --quiet --no-deps --no-build-isolation -e . &&
    "$PY" -c "import torch, highspy, dualip_model; print(torch.__version__, torch.cuda.is_available())" &&
    { [ "$DEVICE" != cuda ] || nvidia-smi; }
}

build_cupdlpx() {  # a wheel for this GPU's architecture only ("all" takes far longer), then installed
  if "$PY" -c "import cupdlpx" 2>/dev/null; then echo "cupdlpx already imports"; return 0; fi
  local wheel
  wheel=$(ls wheels/cupdlpx-*.whl 2>/dev/null | head -1)
  if [ -z "$wheel" ]; then
    local arch
    arch=$("$PY" -c "import torch; print(''.join(map(str, torch.cuda.get_device_capability(0))))")
    "$PY" -m pip wheel --no-deps --no-build-isolation --no-index -w "$OUT" \
      -C "cmake.define.CMAKE_CUDA_ARCHITECTURES=$arch" wheels/cupdlpx-*.tar.gz || return 1
    wheel=$(ls "$OUT"/cupdlpx-*.whl | head -1)
  fi
  "$PY" -m pip install --quiet --no-deps --no-index "$wheel"
}
export -f setup build_cupdlpx

step setup 45 setup
case $part in
  checks)  # at most 45 + max(200, 100 + 2 x 50) + 170 = 415 s
    step build_cupdlpx 200 build_cupdlpx &
    build=$!
    step "parity_$DEVICE" 100 env DUALIP_TEST_DEVICE="$DEVICE" "$PY" -m pytest -q -rf -p no:cacheprovider \
      tests/test_parity.py -k dualip
    size=${PROFILE_SIZE:-1e7}
    step profile 50 "$PY" benchmarks/profile_dualip.py --device "$DEVICE" --size "$size" \
      --out "$OUT/profile_$DEVICE.json"
    step profile_compiled 50 "$PY" benchmarks/profile_dualip.py --device "$DEVICE" --size "$size" --engine compiled \
      --out "$OUT/profile_${DEVICE}_compiled.json"
    wait "$build"
    step gpu_scale 170 "$PY" benchmarks/gpu_scale.py --device "$DEVICE" --sizes "${SIZES:-1e6,1e7}" --compile \
      --time-limit 30 --pdlp-max-nnz 0 --out "$OUT/gpu_scale_$DEVICE.json"
    ;;
  scale)  # at most 45 + 300 = 345 s
    step gpu_scale_1e8 300 "$PY" benchmarks/gpu_scale.py --device "$DEVICE" --sizes "${SIZES:-1e8}" --compile \
      --time-limit 30 --highs-max-nnz 0 --pdlp-max-nnz 0 --out "$OUT/gpu_scale_${DEVICE}_1e8.json"
    ;;
  large)  # at most 45 + 300 = 345 s
    step gpu_scale_2.5e8 300 "$PY" benchmarks/gpu_scale.py --device "$DEVICE" --sizes "${SIZES:-2.5e8}" \
      --time-limit 30 --highs-max-nnz 0 --pdlp-max-nnz 0 --out "$OUT/gpu_scale_${DEVICE}_2.5e8.json"
    ;;
  *)
    echo "unknown part $part (checks, scale or large)" >&2
    exit 2
    ;;
esac
tar -czf "$OUT/logs.tgz" -C "$OUT" logs && rm -rf "$OUT/logs"
