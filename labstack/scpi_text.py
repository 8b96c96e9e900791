"""Splitting SCPI program messages into commands: one rule for the guard and the virtual instruments.

A message may hold several lines, and a line several commands separated by ``;``
(outside quoted strings). Both the safety guard, which must see every command
that will reach an instrument, and the virtual instruments, which must execute
exactly those commands, split the same way, so they can never disagree.
"""

from __future__ import annotations


def split_commands(message: str) -> list[str]:
    """Commands of one message: lines, then ``;`` outside quotes; empty pieces dropped.

    A line without quotes (a DAC's many set-points in one message: every message of a
    training iteration) is split at each ``;`` at once; only a line with a quote is
    read character by character.
    """
    out: list[str] = []
    for line in message.splitlines() or [""]:
        if '"' not in line and "'" not in line:
            out.extend([piece.strip() for piece in line.split(";")])
            continue
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
