#!/usr/bin/env python3
"""Fails if a Catch2 TEST_CASE name contains a semicolon.

catch_discover_tests turns every test name into a CMake list entry, so a name
with ';' becomes several fragments that match no test: ctest then "passes"
them without running anything (three server and three engine tests were lost
this way until 2026-11-22).

Usage: check_test_names.py TESTS_DIR
"""
import pathlib
import re
import sys

# TEST_CASE( followed by one or more adjacent string literals: the name.
NAME = re.compile(r'TEST_CASE\(\s*((?:"(?:[^"\\]|\\.)*"\s*)+)')


def main() -> int:
    bad = []
    for path in sorted(pathlib.Path(sys.argv[1]).rglob("*_test.cc")):
        for match in NAME.finditer(path.read_text()):
            name = "".join(re.findall(r'"((?:[^"\\]|\\.)*)"', match.group(1)))
            if ";" in name:
                bad.append(f"{path}: {name}")
    for line in bad:
        print(f"test name with ';' (ctest would never run it): {line}")
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
