"""``python -m loopwatch.dump FILE...``: print a ring file (header, names, pending samples) as JSON.
For debugging a live process without the agent; it reads, never consumes."""
from __future__ import annotations

import json
import sys


def main(argv: list[str]) -> int:
    if not argv:
        print("usage: python -m loopwatch.dump RING_FILE...", file=sys.stderr)
        return 2
    from . import _shim

    status = 0
    for path in argv:
        try:
            ring = _shim.read_ring(path)
        except (OSError, ValueError) as exc:
            print(f"{path}: {exc}", file=sys.stderr)
            status = 1
            continue
        print(json.dumps({"file": path, **ring}, indent=1))
    return status


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
