"""``python -m textmask warmup``: compile and cache the kernels."""

from __future__ import annotations

import sys


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    if args != ["warmup"]:
        print("usage: python -m textmask warmup", file=sys.stderr)
        return 2
    from textmask import warmup

    print(f"textmask kernels ready in {warmup():.2f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
