#!/usr/bin/env bash
# Runs each fuzz target (or the ones named) for SECONDS (default 60) and
# prints its executions, speed and crashes:
#
#   fuzz/run.sh [SECONDS] [TARGET...]
#
# Corpora live in fuzz/corpus/<target> (not committed); on the first run each
# is seeded from the repository: the models for `parse_nn`, the ONNX cases
# for `onnx_import`, the `.npy` cases for `npy_read`, fuzz/seeds/ for
# `weights_safetensors`. Crashes are written to fuzz/artifacts/<target>/;
# reproduce one with `cargo fuzz run --sanitizer none <target> <file>`.
# Everything runs under `nice -n 19`. Extra libFuzzer flags can be passed
# in FUZZ_FLAGS (e.g. FUZZ_FLAGS=-jobs=2), and cargo-fuzz build flags in
# FUZZ_BUILD_FLAGS (e.g. FUZZ_BUILD_FLAGS=--no-trace-compares: graph_diff
# spends about half its time in the comparison callbacks).
set -euo pipefail

seconds=${1:-60}
shift || true
all=(parse_nn onnx_import weights_safetensors npy_read graph_diff)
targets=("$@")
if [ ${#targets[@]} -eq 0 ]; then
    targets=("${all[@]}")
fi

fuzz=$(cd "$(dirname "$0")" && pwd)
root=$(dirname "$fuzz")
cd "$fuzz"

# Copies every file under $2 named *$3 into corpus/$1, under its hash (the
# cases are all called model.onnx, input_0.npy...).
seed() {
    local target=$1 dir=$2 suffix=$3
    find "$dir" -type f -name "*$suffix" -print0 |
        while IFS= read -r -d '' f; do
            cp "$f" "corpus/$target/$(sha1sum "$f" | cut -c1-16)$suffix"
        done
}

for t in "${targets[@]}"; do
    if [ ! -d "corpus/$t" ]; then
        mkdir -p "corpus/$t"
        case $t in
        parse_nn)
            seed "$t" "$root/models" .nn
            seed "$t" "$root/tests/cases" .nn
            ;;
        onnx_import) seed "$t" "$root/tests/cases" .onnx ;;
        npy_read) seed "$t" "$root/tests/cases" .npy ;;
        weights_safetensors) seed "$t" "$fuzz/seeds/weights_safetensors" .safetensors ;;
        graph_diff) ;;
        *)
            echo "unknown target $t (known: ${all[*]})" >&2
            exit 2
            ;;
        esac
    fi
done

# Build once for all targets, so that the time below is fuzzing time.
# shellcheck disable=SC2086
nice -n 19 cargo fuzz build --sanitizer none ${FUZZ_BUILD_FLAGS:-}

mkdir -p logs
printf '%-22s %12s %10s %8s\n' target executions "execs/s" crashes
for t in "${targets[@]}"; do
    mkdir -p "artifacts/$t"
    log="logs/$t.log"
    # graph_diff compiles a model per execution; a slower input there is
    # not a hang.
    timeout=10
    extra=()
    if [ "$t" = graph_diff ]; then
        # Models need a few hundred bytes of choices; without a seed corpus
        # libFuzzer would start at 4-byte inputs and grow them slowly.
        timeout=60
        extra=(-max_len=1024 -len_control=0)
    fi
    # libFuzzer stops at the first crash and saves it under artifacts/.
    # shellcheck disable=SC2086
    nice -n 19 cargo fuzz run --sanitizer none ${FUZZ_BUILD_FLAGS:-} "$t" "corpus/$t" -- \
        -max_total_time="$seconds" -timeout="$timeout" -print_final_stats=1 \
        -artifact_prefix="artifacts/$t/" "${extra[@]}" ${FUZZ_FLAGS:-} >"$log" 2>&1 || true
    execs=$(grep -o 'stat::number_of_executed_units: *[0-9]*' "$log" | grep -o '[0-9]*$' | tail -n 1)
    speed=$(grep -o 'stat::average_exec_per_sec: *[0-9]*' "$log" | grep -o '[0-9]*$' | tail -n 1)
    crashes=$(find "artifacts/$t" -type f \( -name 'crash-*' -o -name 'timeout-*' -o -name 'oom-*' \) | wc -l)
    printf '%-22s %12s %10s %8s\n' "$t" "${execs:-?}" "${speed:-?}" "$crashes"
done
echo "logs in fuzz/logs/, crashes in fuzz/artifacts/"
