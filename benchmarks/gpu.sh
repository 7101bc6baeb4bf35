#!/usr/bin/env bash
# il2rd's benchmark suite on a lent GPU (H100/H200), 256^3 included, in under 5 minutes.
#
#   bash benchmarks/gpu.sh            # from the repository root; results under $OUT
#
# Installs nothing from the network. The image has JAX with CUDA, numpy, SciPy, numba, sympy,
# matplotlib, h5py; it has no hydra-core/omegaconf (the suite imports no il2rd module that needs
# them: this script checks) and no py-pde. py-pde is pure Python and its needs are in the image,
# so carry its wheel to get the py-pde rows:
#   here:  echo /.whl/ >> .git/info/exclude; pip download --no-deps py-pde==0.59.0 -d .whl
#   run:   carry [".whl"]   (anything in .whl/*.whl is installed with --no-index --no-deps)
# Without it the py-pde rows are skipped and the report says so.
# The sections that run il2rd as a user does (attribution, sweep, days: issue 17's targets) compose a
# Hydra config: they run when hydra-core, omegaconf and antlr4-python3-runtime wheels are carried in .whl too
#   here:  pip download --no-deps hydra-core==1.3.2 omegaconf==2.3.0 -d .whl; pip wheel --no-deps antlr4-python3-runtime==4.9.3 -w .whl
#
# Writes $OUT/gpu.json, $OUT/gpu.md, $OUT/gpu_scaling.png and $OUT/gpu.log
# (OUT defaults to benchmarks/results). The suite saves after every section and stops starting
# new ones after BUDGET_S seconds (default 230), so a slow machine still returns results.
set -uo pipefail
cd "$(dirname "$0")/.."
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}"   # il2rd importable without installing
export PYTHONUNBUFFERED=1
export XLA_PYTHON_CLIENT_PREALLOCATE=false   # the scaling section runs one process per case
OUT="${OUT:-$PWD/benchmarks/results}"
PY="${PYTHON:-python3}"
BUDGET_S="${BUDGET_S:-230}"
mkdir -p "$OUT"

if ls .whl/*.whl >/dev/null 2>&1; then
    $PY -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --target /tmp/il2rd-bench-site .whl/*.whl \
        && export PYTHONPATH="$PYTHONPATH:/tmp/il2rd-bench-site" || echo "gpu.sh: carried wheels did not install; going on without"
fi

command -v nvidia-smi >/dev/null && nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader

# the suite must import with hydra and omegaconf absent
$PY - <<'PYEOF' || { echo "gpu.sh: import check failed"; exit 1; }
import sys
sys.modules["hydra"] = None      # any import of these now raises ImportError
sys.modules["omegaconf"] = None
sys.path.insert(0, "benchmarks")
import common, peers, report, scaling, stencil, steady, transient  # noqa: F401
import jax
print("import check ok: jax", jax.__version__, jax.devices(), "| peers:", peers.available())
PYEOF

SECTIONS="stencil steady transient scaling"
if $PY -c "import hydra, omegaconf" 2>/dev/null; then   # with the carried Hydra wheels: what a user waits for
    SECTIONS="$SECTIONS attribution sweep days"
else
    echo "gpu.sh: hydra-core/omegaconf not importable: sections attribution, sweep, days skipped (carry their wheels in .whl)"
fi
timeout 285 $PY benchmarks/run.py --gpu --out "$OUT" --budget-s "$BUDGET_S" --sections $SECTIONS 2>&1 | tee "$OUT/gpu.log"
status=${PIPESTATUS[0]}
ls -la "$OUT"
exit $status
