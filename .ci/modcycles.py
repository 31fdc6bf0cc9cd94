#!/usr/bin/env python3
"""Fails if two modules of the daemon's crate import each other, directly or through others.

A module is a file under src/ (mod.rs names its folder); src/bin is left out. An import is any
`crate::a::b` path (or `super::x`, resolved) outside comments and test modules, mapped to the
longest module it names. A parent and its own children are not counted as a cycle: a folder's
mod.rs declares and re-exports its children. Prints each cycle and exits 1; prints
"no cycles" and exits 0 otherwise. (docs/ARCHITECTURE.md, "The source tree".)
"""
import os
import re
import sys

root = sys.argv[1] if len(sys.argv) > 1 else "src"
mods = {}
for dirpath, _, files in os.walk(root):
    if os.path.relpath(dirpath, root).split(os.sep)[0] == "bin":
        continue
    for f in files:
        if not f.endswith(".rs"):
            continue
        rel = os.path.relpath(os.path.join(dirpath, f), root)[:-3].split(os.sep)
        if rel[-1] == "mod":
            rel = rel[:-1]
        if rel == ["lib"]:
            rel = []
        text = open(os.path.join(dirpath, f), encoding="utf-8").read()
        text = text.split("#[cfg(test)]")[0]
        text = "\n".join(l for l in text.split("\n") if not l.strip().startswith("//"))
        mods["::".join(rel)] = text
names = set(mods)


def resolve(segs):
    best = None
    for i in range(1, len(segs) + 1):
        c = "::".join(segs[:i])
        if c in names:
            best = c
    return best


def related(a, b):
    return a == b or a.startswith(b + "::") or b.startswith(a + "::") or not a or not b


PATH = r"[a-z_][a-z0-9_]*(?:::[a-z_][a-z0-9_]*)*"
graph = {m: set() for m in mods}
for m, text in mods.items():
    here = m.split("::") if m else []
    found = []
    for p in re.findall(r"crate::(" + PATH + ")", text):
        found.append(p.split("::"))
    for p in re.findall(r"\bsuper::(" + PATH + ")", text):
        found.append(here[:-1] + p.split("::"))
    for base, items in re.findall(r"use crate::(" + PATH + r")::\{([^}]*)\}", text):
        for it in items.split(","):
            it = it.strip().split(" ")[0].split("::")[0]
            if it and it != "self":
                found.append(base.split("::") + [it])
    for segs in found:
        r = resolve(segs)
        if r is not None and not related(m, r):
            graph[m].add(r)

# Tarjan's strongly connected components.
index, low, stack, on, out, counter = {}, {}, [], set(), [], [0]
sys.setrecursionlimit(10000)


def visit(v):
    index[v] = low[v] = counter[0]
    counter[0] += 1
    stack.append(v)
    on.add(v)
    for w in graph[v]:
        if w not in index:
            visit(w)
            low[v] = min(low[v], low[w])
        elif w in on:
            low[v] = min(low[v], index[w])
    if low[v] == index[v]:
        comp = []
        while True:
            w = stack.pop()
            on.discard(w)
            comp.append(w)
            if w == v:
                break
        if len(comp) > 1:
            out.append(sorted(comp))


for v in graph:
    if v not in index:
        visit(v)
for comp in out:
    print("import cycle: " + " <-> ".join(comp))
    for a in comp:
        print("  " + a + " imports " + ", ".join(sorted(x for x in graph[a] if x in comp)))
if out:
    sys.exit(1)
print("no cycles")
