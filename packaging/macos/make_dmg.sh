#!/usr/bin/env bash
# macOS: wrap the Hearth.app that `python packaging/build.py` (PyInstaller's BUNDLE step) leaves in
# dist/ into a drag-to-Applications disk image. Metal is llama.cpp's default backend on macOS, so
# `make package BACKEND=metal` is the usual build. Not signed or notarised here: that needs an
# Apple Developer ID (codesign --deep -s "Developer ID Application: …", then notarytool).
#
# Usage: bash packaging/macos/make_dmg.sh [BACKEND]
set -euo pipefail
cd "$(dirname "$0")/../.."
backend="${1:-metal}"
version="$(python3 -c 'import desktop; print(desktop.__version__)')"
app="dist/Hearth.app"
[ -d "$app" ] || { echo "No $app: run python packaging/build.py on macOS first." >&2; exit 1; }
stage="build/package/dmg"
rm -rf "$stage" && mkdir -p "$stage"
cp -R "$app" "$stage/"
ln -s /Applications "$stage/Applications"
out="dist/hearth-${version}-macos-$(uname -m)-${backend}.dmg"
hdiutil create -volname "Hearth" -srcfolder "$stage" -ov -format UDZO "$out"
echo "$out"
