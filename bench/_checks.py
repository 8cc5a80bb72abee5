"""How every benchmark ends: its targets as a Markdown checklist, and an exit status saying whether all were met."""

from __future__ import annotations

from collections.abc import Sequence


def print_checks(checks: Sequence[tuple[str, bool]]) -> int:
    """Print `- [x] check` (or `- [ ] check`) per check, after a blank line; 0 if every check passed, else 1."""
    print()
    for check, passed in checks:
        print(f"- [{'x' if passed else ' '}] {check}")
    return 0 if all(passed for _, passed in checks) else 1
