#!/usr/bin/env python3
"""Failed tests of a runtest log whose failure is respseal refusing a
command on a sealed name: prints "test name<TAB>COMMAND" per such test.

usage: refusals.py RUNTEST_LOG

A failure counts as a refusal only if its own error text (the lines
runtest prints after "[err]: NAME in ...") carries respseal's refusal: an
error reply "ERR respseal: CMD is not allowed / is not supported / cannot
be used / would keep ..." or "ERR respseal: unknown command 'cmd' refused".
"""
import re
import sys

STATUS = re.compile(r"^(?:\*\*\* )?\[(ok|err|exception|timeout|ignore|skip)\]: (.*?)(?: in tests/\S+| \(\d+ ms\))?$")
REFUSAL = re.compile(
    r"respseal: (?:unknown command '([^']+)' refused"
    r"|([A-Z][A-Z_-]*) (?:is not allowed|is not supported|cannot be used|would keep))"
)

seen = set()
current, text = None, []


def flush():
    if current and current not in seen:
        m = REFUSAL.search("\n".join(text))
        if m:
            seen.add(current)
            print(f"{current}\t{(m.group(1) or m.group(2)).upper()}")


for line in open(sys.argv[1], errors="replace"):
    line = re.sub(r"\x1b\[[0-9;]*m", "", line.rstrip("\n"))
    m = STATUS.match(line)
    if m:
        flush()
        current, text = (m.group(2) if m.group(1) == "err" else None), []
    elif current is not None:
        text.append(line)
flush()
