"""Splitting SCPI program messages into commands: one rule for the guard and the virtual instruments.

A message may hold several lines, and a line several commands separated by ``;``
(outside quoted strings). Both the safety guard, which must see every command
that will reach an instrument, and the virtual instruments, which must execute
exactly those commands, split the same way, so they can never disagree.
"""

from __future__ import annotations


def split_commands(message: str) -> list[str]:
    """Commands of one message: lines, then ``;`` outside quotes; empty pieces dropped."""
    out: list[str] = []
    for line in message.splitlines() or [""]:
        current: list[str] = []
        quote: str | None = None
        for ch in line:
            if quote:
                current.append(ch)
                if ch == quote:
                    quote = None
            elif ch in "\"'":
                quote = ch
                current.append(ch)
            elif ch == ";":
                out.append("".join(current).strip())
                current = []
            else:
                current.append(ch)
        out.append("".join(current).strip())
    return [c for c in out if c]
