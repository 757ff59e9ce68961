#!/usr/bin/env bash
# Renders every icon source (*.svg) to the PNGs the tray embeds: 22, 32 and 48 px.
# Needs rsvg-convert (Debian: librsvg2-bin). Run after changing an SVG and commit the PNGs.
set -euo pipefail
cd "$(dirname "$0")"
for svg in *.svg; do
  for size in 22 32 48; do
    mkdir -p "$size"
    rsvg-convert -w "$size" -h "$size" "$svg" -o "$size/${svg%.svg}.png"
  done
done
