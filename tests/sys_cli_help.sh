#!/bin/bash
# sys_cli_help.sh — the `loom` command's conventions, for every command and
# subcommand that `loom help` lists: `--help` and `-h` print its usage (exit
# 0) and do nothing else — no cluster stopped or queried, no file written —
# `loom help X` prints the same, an unknown option is one line on stderr
# with exit 2; and the bash completion script knows every command.
set -euo pipefail
. "$(dirname "$0")/lib.sh" "$@"

D=$T/st
use_state_dir "$D"
WORK=$T/cwd          # commands run here: --help must write nothing into it
mkdir -p "$WORK"
cd "$WORK"

# ---- the overall usage ----------------------------------------------------
capture "$LOOM" --help
check "loom --help: usage on stdout, exit 0" eval '[ "$RC" -eq 0 ] && grep -q "^usage: loom" <<<"$OUT" && [ -z "$ERR" ]'
HELP=$OUT
capture "$LOOM" help
check "loom help prints the same as loom --help" eval '[ "$RC" -eq 0 ] && [ "$OUT" = "$HELP" ]'
capture "$LOOM" -h
check "loom -h prints the same" eval '[ "$RC" -eq 0 ] && [ "$OUT" = "$HELP" ]'

# the commands: "  NAME[ SUB]   summary" lines of the listing
mapfile -t CMDS < <(grep -E '^  [a-z]' <<<"$HELP" | cut -c3-18 | sed 's/ *$//')
check "loom help lists the commands (${#CMDS[@]})" test "${#CMDS[@]}" -ge 30
for want in start stop status actors drain kill-actor submit jobs job get logs cancel delete \
    "token create" "token revoke" "kv put" "kv get" "kv del" infer \
    "slurm start" "slurm submit" "slurm status" "slurm cancel" \
    "tune run" "tune status" "tune stop" "tune resume" help version; do
    grep -qx -- "$want" <<<"$(printf '%s\n' "${CMDS[@]}")" || bad "loom help lists '$want'"
done

# ---- a running cluster, which no --help may touch ---------------------------
capture "$LOOM" start --head --port 0 --state-dir "$D" --num-cpus 1
if [ "$RC" -ne 0 ]; then bad "loom start --head"; show_capture; finish; fi
ok "a cluster runs"
PIDS=$(state_pids "$D" | sort)
snapshot() { (cd "$D" && find . -path ./logs -prune -o -path ./nodes -prune -o -print | sort); }
BEFORE=$(snapshot)
printf 'x' >"$T/kvval"

# ---- every command's --help, -h, help X, unknown option --------------------
for cmd in "${CMDS[@]}"; do
    read -r -a words <<<"$cmd"
    capture "$LOOM" "${words[@]}" --help --state-dir "$D"
    if [ "$RC" -eq 0 ] && grep -q "^usage: loom $cmd" <<<"$OUT" && grep -q "^example:" <<<"$OUT" && [ -z "$ERR" ]; then
        ok "loom $cmd --help: its usage and an example, exit 0"
    else
        bad "loom $cmd --help"
        show_capture
    fi
    H=$OUT
    capture "$LOOM" "${words[@]}" -h
    check "  ... -h prints the same" eval '[ "$RC" -eq 0 ] && [ "$OUT" = "$H" ]'
    capture "$LOOM" help "${words[@]}"
    check "  ... loom help $cmd prints the same" eval '[ "$RC" -eq 0 ] && [ "$OUT" = "$H" ]'
    # without a cluster: help, not a connection error
    capture "$LOOM" "${words[@]}" --help --state-dir "$T/no-cluster-here"
    check "  ... without a cluster too" eval '[ "$RC" -eq 0 ] && [ "$OUT" = "$H" ] && [ -z "$ERR" ]'
    capture "$LOOM" "${words[@]}" --frobnicate --state-dir "$D"
    if [ "$RC" -eq 2 ] && [ "$(wc -l <<<"$ERR")" -eq 1 ] && grep -q -- "--frobnicate" <<<"$ERR" && [ -z "$OUT" ]; then
        ok "  ... an unknown option: one line, exit 2: $ERR"
    else
        bad "  ... loom $cmd --frobnicate"
        show_capture
    fi
done

check "the cluster's processes are the same after all that" test "$(state_pids "$D" | sort)" = "$PIDS"
check "  ... all alive" eval 'for p in $PIDS; do kill -0 $p || exit 1; done'
check "  ... it answers" nodes_alive_eq 1 "$D"
check "the state dir has the same files" test "$(snapshot)" = "$BEFORE"
check "nothing was written in the working directory" test -z "$(ls -A "$WORK")"
capture "$LOOM" kv put help-probe y --help --state-dir "$D"
check "loom kv put KEY VALUE --help prints help" eval '[ "$RC" -eq 0 ] && grep -q "^usage: loom kv put" <<<"$OUT"'
capture "$LOOM" kv get help-probe --state-dir "$D" --timeout 0.1
check "  ... and sets no key" test "$RC" -ne 0

# ---- usage errors ----------------------------------------------------------
capture "$LOOM" stop --frob --state-dir "$D"
check "loom stop --frob names the option and the help" \
    eval '[ "$RC" -eq 2 ] && grep -qx "loom: stop: unknown option '"'"'--frob'"'"'; see '"'"'loom stop --help'"'"'" <<<"$ERR"'
check "  ... and stops nothing" nodes_alive_eq 1 "$D"
capture "$LOOM" get --timeout
check "an option without its value: one line, exit 2" eval '[ "$RC" -eq 2 ] && [ "$(wc -l <<<"$ERR")" -eq 1 ] && grep -q "wants a value" <<<"$ERR"'
capture "$LOOM" status --json=yes
check "a flag given a value: exit 2" eval '[ "$RC" -eq 2 ] && grep -q "takes no value" <<<"$ERR"'
capture "$LOOM" drain
check "a missing argument: the command's usage, exit 2" eval '[ "$RC" -eq 2 ] && grep -q "^usage: loom drain" <<<"$ERR" && grep -q "loom drain --help" <<<"$ERR"'
capture "$LOOM" help frobnicate
check "loom help of an unknown command: exit 2" eval '[ "$RC" -eq 2 ] && grep -q "unknown command" <<<"$ERR"'
capture "$LOOM" status --state-dir="$D" --json
check "--key=value is taken" eval '[ "$RC" -eq 0 ] && grep -q "\"nodes\"" <<<"$OUT"'
capture "$LOOM" kv put help-probe "$(cat "$T/kvval")" --state-dir "$D"
capture "$LOOM" kv get help-probe --state-dir "$D"
check "kv still works after the --help checks" test "$RC:$OUT" = "0:x"

# ---- bash completion -------------------------------------------------------
COMP=$BUILD/cli/loom-completion.bash
check "the build wrote the completion script" test -s "$COMP"
check "  ... it is what 'loom _completion' prints" eval 'diff -q <("$LOOM" _completion) "$COMP" >/dev/null'
check "  ... bash -n accepts it" bash -n "$COMP"
check "  ... sourcing it registers loom (complete -p loom)" bash -c ". '$COMP' && complete -p loom | grep -q _loom"
check "  ... install puts it in share/bash-completion/completions/loom" \
    grep -q "share/bash-completion/completions" "$BUILD/cli/cmake_install.cmake"
# complete WORDS...: what bash would offer for the last word
complete_words()
{
    bash -c '. "$1"; shift; COMP_WORDS=("$@"); COMP_CWORD=$(($# - 1)); _loom; printf "%s\n" "${COMPREPLY[@]}"' \
        _ "$COMP" "$@"
}
TOP=$(complete_words loom "")
for cmd in "${CMDS[@]}"; do
    read -r -a words <<<"$cmd"
    grep -qx -- "${words[0]}" <<<"$TOP" || bad "completion offers '${words[0]}'"
    if [ ${#words[@]} -eq 2 ]; then
        SUBS=$(complete_words loom "${words[0]}" "")
        grep -qx -- "${words[1]}" <<<"$SUBS" || bad "completion offers '$cmd'"
    fi
done
ok "completion offers every command and subcommand of loom help"
check "completion: loom st -> start, status, stop" test "$(complete_words loom st | sort | tr '\n' ' ')" = "start status stop "
check "completion: loom status --j -> --json" test "$(complete_words loom status --j)" = "--json"
check "completion: loom kv get --t -> --timeout" test "$(complete_words loom kv get --t)" = "--timeout"
check "completion: loom slurm submit --no -> --nodes" test "$(complete_words loom slurm submit --no)" = "--nodes"
check "completion: loom help tune r -> resume, run" test "$(complete_words loom help tune r | sort | tr '\n' ' ')" = "resume run "
# every option a command's help names is offered by the completion
for cmd in "${CMDS[@]}"; do
    read -r -a words <<<"$cmd"
    OFFERED=$(complete_words loom "${words[@]}" --)
    for o in $("$LOOM" "${words[@]}" --help | grep -oE '^  --[a-z][a-z0-9-]*' | sort -u); do
        grep -qx -- "$o" <<<"$OFFERED" || bad "completion of 'loom $cmd' offers $o (its help names it)"
    done
done
ok "completion offers the options each command's help names"

finish
