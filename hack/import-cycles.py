#!/usr/bin/env python3
"""Fails when the modules of a crate import each other in a circle (issue #31).

A crate's top-level modules (a file `src/x.rs`, or a folder `src/x/` with its files) are the
nodes; module A depends on B when A's code names `crate::B` (in a `use` or a path). Test code
(`tests.rs` files and inline `#[cfg(test)] mod tests { ... }` blocks) is left out: tests may
reach anywhere. Prints each circle found and exits 1, or says how many crates it checked.

Usage: python3 hack/import-cycles.py [repository root]
"""
import re
import sys
from pathlib import Path

root = Path(sys.argv[1] if len(sys.argv) > 1 else Path(__file__).resolve().parent.parent)
PATH = re.compile(r"\b(crate|super)::((?:[a-z_][a-z0-9_]*::)*(?:[a-z_][a-z0-9_]*|\{[^}]*\}))")
COMMENT = re.compile(r"//[^\n]*")


def without_tests(text: str) -> str:
    """The text without comments and inline `#[cfg(test)]` modules (brace-matched from their `mod`)."""
    text = COMMENT.sub("", text)
    out, at = [], 0
    for marker in re.finditer(r"#\[cfg\(test\)\]\s*mod\s+\w+\s*\{", text):
        if marker.start() < at:
            continue
        out.append(text[at:marker.start()])
        depth, i = 1, marker.end()
        while i < len(text) and depth:
            depth += {"{": 1, "}": -1}.get(text[i], 0)
            i += 1
        at = i
    out.append(text[at:])
    return "".join(out)


def module_of(src: Path, file: Path) -> tuple[str, ...] | None:
    """The module a file is, as a path from the crate root (`("filter", "expr")`); None for the
    crate root and for test files."""
    parts = list(file.relative_to(src).with_suffix("").parts)
    if parts[-1] == "tests" or "tests" in parts[:-1] or parts in (["lib"], ["main"]):
        return None
    if parts[-1] == "mod":
        parts.pop()
    return tuple(parts)


def cycles_in(src: Path) -> list[list[str]]:
    files = {module_of(src, f): f for f in src.rglob("*.rs")}
    files.pop(None, None)
    modules = set(files)
    # A module stands for its submodules too (`filter` uses `filter::expr`: no edge between them).
    def node_for(path: tuple[str, ...]) -> tuple[str, ...] | None:
        while path and path not in modules:
            path = path[:-1]
        return path or None

    edges: dict[tuple[str, ...], set[tuple[str, ...]]] = {m: set() for m in modules}
    for module, file in files.items():
        parent = module[:-1] if file.name not in ("mod.rs",) and not (src / Path(*module)).is_dir() else module
        for anchor, rest in PATH.findall(without_tests(file.read_text())):
            base = () if anchor == "crate" else (parent[:-1] if file.name == "mod.rs" else module[:-1])
            heads = [rest]
            if rest.endswith("}"):
                prefix, group = rest[:-1].split("{", 1)
                heads = [prefix + name.strip().split("::")[0] for name in group.split(",") if name.strip()]
            for head in heads:
                segments = tuple(s for s in head.split("::") if s and s != "self")
                target = node_for(base + segments)
                if target is None:
                    continue
                # Inside one's own subtree, or naming an ancestor that merely holds us: not an edge.
                if target[: len(module)] == module or module[: len(target)] == target:
                    continue
                edges[module].add(target)
    found, seen = [], set()

    def walk(node, path):
        for nxt in sorted(edges.get(node, ())):
            if nxt in path:
                cycle = path[path.index(nxt):]
                key = frozenset(cycle)
                if key not in seen:
                    seen.add(key)
                    found.append(["::".join(m) for m in cycle + [nxt]])
            elif len(path) < 12:
                walk(nxt, path + [nxt])

    for start in sorted(edges):
        walk(start, [start])
    return found


def main() -> int:
    crates = sorted(p.parent for p in root.glob("*/Cargo.toml") if (p.parent / "src").is_dir())
    failed = False
    for crate in crates:
        for cycle in cycles_in(crate / "src"):
            failed = True
            print(f"{crate.name}: {' -> '.join(cycle)}")
    if failed:
        print("import circles found: break each (a leaf module for what both sides need)", file=sys.stderr)
        return 1
    print(f"no import circles in {len(crates)} crates")
    return 0


if __name__ == "__main__":
    sys.exit(main())
