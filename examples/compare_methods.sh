#!/usr/bin/env bash
# The seven-method comparison: one medium data set, one vanilla model, every unlearning method for STAGES
# sequential forget tasks with its calibrated defaults (docs/calibration.md), then one report over all runs
# (headline table, heatmaps per method, first-task curves across methods). One seed at fixed step budgets: to
# rank methods (several seeds, equal forgetting, paired differences) use `icu-bench compare` (docs/comparison.md).
# usage: examples/compare_methods.sh OUT [STAGES]
#   OUT     work dir: OUT/data, OUT/tiny, OUT/vanilla, OUT/run_<method>/, OUT/report/
#   STAGES  forget tasks per run (default 8)
# environment (defaults in brackets):
#   PROFILES [48] PER_TASK [2] SEED [0]   data scale: 8 tasks of 2 profiles, 32 retain profiles
#   METHODS ["ga ga_diff kl_min npo npo_diff mmunlearner manu"]
#   EVAL ["icu,icu_longform,icu_ll"]       lmms-eval tasks scored after every stage
#   DEVICE [cpu]
#   FINETUNE_ARGS [""]                     extra `icu-bench finetune` flags, e.g. --no-longform (then drop
#                                          icu_longform from EVAL: the vanilla model has no summaries to score)
#   RUN_ARGS [""]                          extra `icu-bench run` flags for every method, e.g. --limit 8 for a
#                                          quick look (a run with other flags is another run: use a new OUT)
# Every step is skipped when its output is complete, and `icu-bench run` resumes a run: re-running the
# script after an interruption continues where it stopped. OUT/report/COMMAND.md records what was run.
set -euo pipefail
if [ $# -lt 1 ]; then
    sed -n '6,18p' "$0" >&2
    exit 2
fi
OUT=$1 STAGES=${2:-8}
PROFILES=${PROFILES:-48} PER_TASK=${PER_TASK:-2} SEED=${SEED:-0} DEVICE=${DEVICE:-cpu}
METHODS=${METHODS:-"ga ga_diff kl_min npo npo_diff mmunlearner manu"}
EVAL=${EVAL:-icu,icu_longform,icu_ll}
FINETUNE_ARGS=${FINETUNE_ARGS:-}
RUN_ARGS=${RUN_ARGS:-}
mkdir -p "$OUT"
start=$(date +%s)

if [ ! -f "$OUT/data/manifest.json" ]; then
    icu-bench data generate --out "$OUT/data" --seed "$SEED" --profiles "$PROFILES" --tasks "$STAGES" \
        --profiles-per-task "$PER_TASK" --image-size 160 --workers 2 --overwrite
fi
if [ ! -f "$OUT/tiny/config.json" ]; then
    icu-bench model build-tiny --out "$OUT/tiny" --data "$OUT/data" --overwrite
fi
if [ ! -f "$OUT/vanilla/config.json" ]; then
    # the project's recipe, trained until every split x view is known (teacher-forced exact match >= 0.9)
    icu-bench finetune --model "$OUT/tiny" --data "$OUT/data" --out "$OUT/vanilla" --device "$DEVICE" \
        --stop-at-accuracy 0.9 --check-every 50 --max-steps 3000 --overwrite $FINETUNE_ARGS
fi
for method in $METHODS; do
    echo "== $method: $STAGES stages"
    icu-bench run --base "$OUT/vanilla" --data "$OUT/data" --method "$method" --stages "$STAGES" \
        --tasks "$EVAL" --device "$DEVICE" --out "$OUT/run_$method" $RUN_ARGS
done
runs=()
for method in $METHODS; do runs+=("$OUT/run_$method"); done
icu-bench report "${runs[@]}" --out "$OUT/report"

facts=$(python -c 'import json, sys
m = json.load(open(sys.argv[1])); s = m["scale"]
print("%d profiles, %d forget tasks of %d profiles, seed %d; data hash `%s`" % (
    s["profiles"], s["tasks"], s["profiles_per_task"], m["seed"], m["data_hash"]))' "$OUT/data/manifest.json")
cat > "$OUT/report/COMMAND.md" <<EOF
# How this comparison was made

    PROFILES=$PROFILES PER_TASK=$PER_TASK SEED=$SEED METHODS="$METHODS" EVAL=$EVAL FINETUNE_ARGS="$FINETUNE_ARGS" \\
        RUN_ARGS="$RUN_ARGS" \\
        examples/compare_methods.sh OUT $STAGES

- data (read from its manifest): $facts
- icu-bench $(python -c 'import importlib.metadata as m; print(m.version("icu-bench"))'), \
git $(git -C "$(dirname "$0")" rev-parse --short HEAD 2>/dev/null || echo unknown)
- wall time of this invocation: $(( $(date +%s) - start )) s on $(getconf _NPROCESSORS_ONLN) CPU cores ($DEVICE)
EOF
echo "report: $OUT/report/report.md"
