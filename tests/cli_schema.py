#!/usr/bin/env python3
"""Checks a `lamda ... --json` output against the schema documented in docs/cli.md.

usage: cli_schema.py docs/cli.md COMMAND OUTPUT.json

docs/cli.md holds, for each command, a fenced block right after `<!-- schema: COMMAND -->`: a JSON
value whose leaves are type names ("string", "int", "number", "bool", "any"); a key ending in '?'
is optional; a one-element array describes every element. No jsonschema module needed.
"""
import json
import re
import sys


def load_schema(doc_path, command):
    text = open(doc_path, encoding="utf-8").read()
    m = re.search(r"<!-- schema: " + re.escape(command) + r" -->\s*```json\n(.*?)```", text, re.S)
    if not m:
        sys.exit(f"{doc_path}: no schema for '{command}'")
    return json.loads(m.group(1))


TYPES = {
    "string": lambda v: isinstance(v, str),
    "int": lambda v: isinstance(v, int) and not isinstance(v, bool),
    "number": lambda v: isinstance(v, (int, float)) and not isinstance(v, bool),
    "bool": lambda v: isinstance(v, bool),
    "null": lambda v: v is None,
    "any": lambda v: True,
}


def check(schema, value, where, errors):
    if isinstance(schema, str):
        if not any(TYPES[t](value) for t in schema.split("|")):
            errors.append(f"{where}: expected {schema}, got {type(value).__name__}")
    elif isinstance(schema, list) and len(schema) > 1:
        tries = []
        for alternative in schema:
            tries.append([])
            check(alternative, value, where, tries[-1])
            if not tries[-1]:
                return
        errors.append(f"{where}: matches none of the {len(schema)} alternatives: " +
                      "; ".join(e for t in tries for e in t))
    elif isinstance(schema, list):
        if not isinstance(value, list):
            errors.append(f"{where}: expected an array")
            return
        for i, item in enumerate(value):
            check(schema[0], item, f"{where}[{i}]", errors)
    elif isinstance(schema, dict):
        if not isinstance(value, dict):
            errors.append(f"{where}: expected an object")
            return
        for key, sub in schema.items():
            if key == "*":
                continue
            optional = key.endswith("?")
            name = key.rstrip("?")
            if name not in value:
                if not optional:
                    errors.append(f"{where}: missing '{name}'")
                continue
            check(sub, value[name], f"{where}.{name}", errors)
        if "*" in schema:
            named = {key.rstrip("?") for key in schema}
            for name, item in value.items():
                if name not in named:
                    check(schema["*"], item, f"{where}.{name}", errors)


def main():
    doc, command, output = sys.argv[1:4]
    schema = load_schema(doc, command)
    value = json.load(open(output, encoding="utf-8"))
    errors = []
    check(schema, value, command, errors)
    for e in errors:
        print(e)
    return 1 if errors else 0


if __name__ == "__main__":
    sys.exit(main())
