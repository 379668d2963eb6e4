#!/usr/bin/env python3
"""Lists every `unsafe` block, impl and fn in the repository's Rust files
that has no `// SAFETY:` comment (or `# Safety` doc section) stating the
invariant it relies on; exits 1 if there is any.

A comment counts when it is on the line itself or directly above it (through
attributes, comments and the start of a statement such as `let x =`). An
`unsafe fn` in a trait or impl block whose header has a `SAFETY (every
method)` comment or a `# Safety` doc is covered by it: the trait's contract
(e.g. `Lanes` in runtime/src/kernels/winograd/mod.rs) is stated once.

Run from anywhere: `python3 scripts/safety_audit.py`.
"""
import pathlib
import re
import subprocess
import sys

ROOT = pathlib.Path(__file__).resolve().parent.parent


def covered_above(lines, i):
    k = i - 1
    while k >= 0 and i - k <= 14:
        s = lines[k].strip()
        if "SAFETY" in s or "# Safety" in s:
            return True
        if s.startswith("//") or s.startswith("#[") or s == "":
            k -= 1
            continue
        # The start of the statement the `unsafe` block ends.
        if k == i - 1 and not s.endswith(";") and not s.endswith("}"):
            k -= 1
            continue
        return False
    return False


def audit(path):
    lines = path.read_text().split("\n")
    blocks = []  # (indent, covered) of enclosing trait/impl blocks
    missing = []
    count = 0
    for i, line in enumerate(lines):
        code = line.split("//")[0]
        header = re.match(r"^(\s*)(pub(\([a-z]+\))? )?(unsafe )?(impl|trait)\b", code)
        if header and code.rstrip().endswith("{"):
            k, covered = i - 1, False
            while k >= 0 and lines[k].strip().startswith(("//", "#[")):
                covered |= "SAFETY (every method)" in lines[k] or "# Safety" in lines[k]
                k -= 1
            blocks.append((len(header.group(1)), covered))
        if blocks and line.strip() == "}" and len(line) - len(line.lstrip()) == blocks[-1][0]:
            blocks.pop()
        if not re.search(r"\bunsafe\b", code) or re.search(r"unsafe_code|unsafe_op_in_unsafe_fn", code):
            continue
        if code.strip().startswith("#"):
            continue
        count += 1
        ok = "SAFETY" in line or covered_above(lines, i)
        if not ok and re.search(r"\bunsafe fn\b", code) and any(c for _, c in blocks):
            ok = True
        if not ok:
            missing.append(f"{path.relative_to(ROOT)}:{i + 1}: {line.strip()}")
    return count, missing


def main():
    files = subprocess.run(
        ["git", "ls-files", "*.rs"], capture_output=True, text=True, cwd=ROOT, check=True
    ).stdout.split()
    total, missing = 0, []
    for f in files:
        n, m = audit(ROOT / f)
        total += n
        missing += m
    print(f"{total} lines with `unsafe`; {len(missing)} without a SAFETY comment")
    for m in missing:
        print(m)
    return 1 if missing else 0


if __name__ == "__main__":
    sys.exit(main())
