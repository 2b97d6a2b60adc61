#!/usr/bin/env bash
# Renders an eval's report.html in headless Chromium (Debian's package `chromium`) to a PNG,
# to look at the page as a reader's browser shows it, offline.
#   scripts/report-screenshot.sh runs/demo/eval/step3/report.html /tmp/report.png
set -euo pipefail
page="${1:?usage: report-screenshot.sh REPORT.html OUT.png}"
out="${2:?usage: report-screenshot.sh REPORT.html OUT.png}"
[[ -f "$page" ]] || { echo "report-screenshot: $page does not exist" >&2; exit 1; }
browser="$(command -v chromium || command -v chromium-browser || command -v google-chrome || true)"
[[ -n "$browser" ]] || { echo "report-screenshot: no Chromium found (apt-get install chromium)" >&2; exit 1; }
profile="$(mktemp -d)"
trap 'rm -rf "$profile"' EXIT
"$browser" --headless --no-sandbox --disable-gpu --disable-quic --no-first-run \
    --disable-background-networking --disable-component-update --disable-sync \
    --user-data-dir="$profile" --window-size=1200,2600 \
    --screenshot="$(realpath -m "$out")" "file://$(realpath "$page")" 2>/dev/null
echo "wrote $out"
