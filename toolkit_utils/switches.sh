# On/off variables of the toolkit's scripts: one rule for all of them. Sourced by the scripts, not run.
#   on:  1, true, yes            off: 0, false, no, or empty/unset            (any letter case)
# Anything else ends the script before any work: one line on stderr naming the variable, exit status 2.
# Why: bash's ${X:+--flag} alone turns the flag ON for X=0 or X=false, and a typo (AUGMENT=ture) must not
# silently pick a side.

# switches NAME...: check each named variable and rewrite it as 1 (on) or empty (off), so that the script's
# call can pass its flag with ${NAME:+--flag}.
switches() {
  local name value
  for name in "$@"; do
    value=${!name-}
    case "${value,,}" in
      1 | true | yes) printf -v "$name" '%s' 1 ;;
      0 | false | no | "") printf -v "$name" '%s' "" ;;
      *)
        echo "$(basename "$0"): $name=${value//[$'\n\r']/ }: is not an on/off value; use 1, true or yes for on, 0, false, no or empty for off" >&2
        exit 2
        ;;
    esac
  done
}
