#!/bin/sh
# temp: convert temperatures.
#   sh temp.sh c2f DEGREES   Celsius to Fahrenheit
#   sh temp.sh f2c DEGREES   Fahrenheit to Celsius
set -eu

case "${1:-}" in
  c2f) echo "$2" | awk '{ printf "%g\n", $1 * 9 / 5 + 32 }' ;;
  f2c) echo "f2c: not implemented yet" >&2; exit 1 ;;
  *) echo "usage: sh temp.sh c2f|f2c DEGREES" >&2; exit 2 ;;
esac
