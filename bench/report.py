"""Puts a benchmark's section into docs/benchmarks.md, replacing that benchmark's previous one.

Usage: python3 bench/report.py NAME SECTION_FILE
The section file must start with `<!-- NAME:begin ... -->` and end with `<!-- NAME:end -->`.
"""
import pathlib
import re
import sys

name, section_file = sys.argv[1], sys.argv[2]
doc = pathlib.Path(__file__).resolve().parent.parent / "docs" / "benchmarks.md"
doc.parent.mkdir(exist_ok=True)
header = "# Benchmarks\n\nFigures measured on the project's 2-core machines; each section says the command that produced it.\n"
text = doc.read_text() if doc.exists() else header
section = pathlib.Path(section_file).read_text().strip()
pattern = re.compile(rf"<!-- {re.escape(name)}:begin.*?<!-- {re.escape(name)}:end -->", re.S)
text = pattern.sub(lambda _: section, text) if pattern.search(text) else text.rstrip() + "\n\n" + section + "\n"
doc.write_text(text)
