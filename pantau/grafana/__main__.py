"""``python -m pantau.grafana [--check]``: regenerate (or check) the provisioned files."""

from __future__ import annotations

import sys

from pantau.grafana.render import stale_files, write_files
from pantau.paths import GRAFANA_DIR


def main(argv: list[str]) -> int:
    """Write the files, or with ``--check`` list the stale ones and return 1 if any."""
    if argv == ["--check"]:
        stale = stale_files(GRAFANA_DIR)
        for rel in stale:
            print(f"stale: grafana/{rel} (run python -m pantau.grafana)")
        return 1 if stale else 0
    if argv:
        print("usage: python -m pantau.grafana [--check]", file=sys.stderr)
        return 2
    for rel in write_files(GRAFANA_DIR):
        print(f"wrote grafana/{rel}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
