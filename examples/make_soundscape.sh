#!/usr/bin/env sh
# Rebuild examples/soundscape.wav and examples/soundscape.tsv from ../shared/soundscapes/fixtures.
# Run from the repository root: sh examples/make_soundscape.sh [FIXTURES_DIR]
set -eu
FIXTURES="${1:-../shared/soundscapes/fixtures}"
TMP="$(mktemp -d)"
trap 'rm -rf "$TMP"' EXIT
ptsed synth \
  --foreground "$FIXTURES/fixtures.tsv" \
  --background "$FIXTURES/rain.wav" \
  --only Speech --only Music --only "Walk, footsteps" --only "Beep, bleep" --only "Cattle, bovinae" \
  --duration 20 --min-events 5 --max-events 7 --snr-db 10 20 \
  --count 1 --seed 1129 --output "$TMP" --no-progress
cp "$TMP/audio/soundscape_00000.wav" examples/soundscape.wav
sed 's/^soundscape_00000\.wav/soundscape.wav/' "$TMP/labels.tsv" > examples/soundscape.tsv
