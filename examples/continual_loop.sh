#!/usr/bin/env bash
# The continual benchmark as a shell loop: for k in 1..T, unlearn forget task k starting from stage k-1, then
# score the stage with the lmms-eval CLI; stage 0 (the vanilla model) is scored first; the report comes last.
# `icu-bench run` does the same in one process (faster, same files and scores).
#
# usage: examples/continual_loop.sh BASE DATA RUN_DIR [METHOD] [STAGES] [-- extra icu-bench unlearn flags]
#   BASE     the vanilla (fine-tuned) model dir, e.g. runs/demo/vanilla
#   DATA     the ICU-Bench data dir, e.g. runs/demo/data
#   RUN_DIR  where stage_K/, eval/stage_K/ and report/ go
#   METHOD   unlearning method (default npo_diff); STAGES: number of forget tasks T (default 3)
# Re-running it skips the stages and evaluations that are complete.
set -euo pipefail
if [ $# -lt 3 ]; then
    sed -n '6,11p' "$0" >&2
    exit 2
fi
BASE=$1 DATA=$2 RUN=$3 METHOD=${4:-npo_diff} T=${5:-3}
shift $(( $# < 5 ? $# : 5 ))
[ "${1:-}" = "--" ] && shift
BATCH=${BATCH_SIZE:-16}
TASKS=${TASKS:-icu}  # icu includes icu_holdout_{vqa,qa}: the base rate B[0]; add ,icu_para for the paraphrase view
LIMIT=${LIMIT:-}  # score at most N docs per task (debugging / tests); empty = all
export ICU_DATA_DIR=$DATA
# Validate every input (method name and flags, base model, data and its hash, T <= the number of forget tasks)
# before anything is scored or written: a typo costs a second, not a stage-0 evaluation.
icu-bench unlearn --dry-run --method "$METHOD" --base "$BASE" --data "$DATA" --stage "$T" --out "$RUN" "$@" >/dev/null
TASKS_PATH=$(icu-bench tasks-path)
mkdir -p "$RUN/eval"

score() { # score STAGE MODEL_ARGS: lmms-eval into a temp dir, renamed when complete
    local out=$RUN/eval/stage_$1 tmp=$RUN/eval/.tmp-stage_$1
    if [ -d "$out" ]; then echo "stage $1: scores complete, skipped"; return; fi
    rm -rf "$tmp"
    lmms-eval --include_path "$TASKS_PATH" --tasks "$TASKS" --model icu_hf --model_args "$2" \
        --output_path "$tmp" --log_samples --verbosity WARNING ${LIMIT:+--limit "$LIMIT"}
    mv "$tmp" "$out"
}

score 0 "pretrained=$BASE,batch_size=$BATCH"
for k in $(seq 1 "$T"); do
    if [ ! -f "$RUN/stage_$k/stage.json" ]; then
        from=()
        [ "$k" -gt 1 ] && from=(--from "$RUN/stage_$((k - 1))")
        icu-bench unlearn --method "$METHOD" --base "$BASE" --data "$DATA" --stage "$k" "${from[@]}" --out "$RUN" "$@"
    fi
    score "$k" "pretrained=$BASE,adapter=$RUN/stage_$k,batch_size=$BATCH"
done
icu-bench report "$RUN"
