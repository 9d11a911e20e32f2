"""Write (or check) the defaults table of each bundle's README from its inference configs.

Each README holds one block between the markers of :data:`diffrecon.bundle.DEFAULTS_BEGIN` and ``DEFAULTS_END``
(written at the end of the README the first time); its table is :func:`diffrecon.bundle.defaults_section`, so the
README shows every setting and its default as the configs give them. ``tests/bundles/test_bundle_defaults.py``
fails when a table and the configs differ.

    python scripts/bundle_defaults.py [--check] [BUNDLE ...]
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

from diffrecon.bundle import DEFAULTS_BEGIN, DEFAULTS_END, bundle_path, defaults_section

BUNDLES = Path(__file__).resolve().parents[1] / "bundles"


def with_section(readme: str, section: str) -> str:
    """``readme`` with its defaults block replaced by ``section`` (appended under a "## Defaults" heading when
    there is none yet)."""
    if DEFAULTS_BEGIN in readme:
        head, _, rest = readme.partition(DEFAULTS_BEGIN)
        _, _, tail = rest.partition(DEFAULTS_END)
        return head + section + tail
    return readme.rstrip("\n") + "\n\n## Defaults\n\n" + section + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("bundles", nargs="*", help="bundle names (default: every bundle with an inference config)")
    parser.add_argument("--check", action="store_true", help="write nothing; exit 1 if a README is out of date")
    args = parser.parse_args(argv)
    names = args.bundles or sorted(p.parents[1].name for p in BUNDLES.glob("*/configs/inference.json"))
    stale = []
    for name in names:
        readme = bundle_path(name) / "docs" / "README.md"
        text = readme.read_text()
        updated = with_section(text, defaults_section(name))
        if updated != text:
            stale.append(name)
            if not args.check:
                readme.write_text(updated)
    verb = "out of date" if args.check else "written"
    print(f"{verb}: {', '.join(stale) or 'none'}")
    return 1 if args.check and stale else 0


if __name__ == "__main__":
    sys.exit(main())
