"""The import rules of docs/development.md, read from the source: every import statement of every
module (also those inside functions), resolved to the project module or outside package it names,
checked against one table.  A rule covers what a module imports directly and what it reaches
through other project modules, so a rule cannot be dodged by importing a helper that imports the
forbidden thing."""
from __future__ import annotations

import ast
from functools import lru_cache
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
PACKAGES = ("core", "renderer", "dataset", "models", "train", "inference", "tracking", "app")
TOP_MODULES = ("cli",)

#: the modules that draw with OpenGL: moderngl / glcontext, and every renderer module reaching them
GL = "<renderer's GL modules>"

#: (who, what it must never import, why) — `who` and `what` are dotted prefixes ("renderer" is the
#: package and every module in it); GL stands for the renderer modules that reach moderngl
RULES: tuple[tuple[tuple[str, ...], tuple[str, ...], str], ...] = (
    (("core",), PACKAGES[1:] + TOP_MODULES, "core is what every layer may use: it uses no layer"),
    (("renderer",), ("dataset", "models", "train", "inference", "tracking", "app", "torch"),
     "the renderer is the bottom layer and needs no torch"),
    (("models",), ("renderer", "train", "dataset", "moderngl"), "the networks are pure torch"),
    (("dataset.shards", "dataset.torchdata", "dataset.poses"), ("renderer", "moderngl", "glcontext"),
     "reading shards (inspect, training) needs no OpenGL"),
    (("train",), ("renderer", "moderngl", "glcontext"), "a training node has no OpenGL"),
    (("inference",), ("train", GL), "inference runs networks on drawings, not training or rendering"),
    (("tracking",), ("renderer",), "tracking turns faces into poses; it renders nothing"),
    (PACKAGES, ("click",), "only cli.py knows click"),
)


def _module_files() -> dict[str, Path]:
    files = {name: REPO / f"{name}.py" for name in TOP_MODULES}
    for package in PACKAGES:
        for path in sorted((REPO / package).rglob("*.py")):
            parts = list(path.relative_to(REPO).with_suffix("").parts)
            if parts[-1] == "__init__":
                parts.pop()
            files[".".join(parts)] = path
    return files


def _imports(module: str, path: Path, modules: set[str]) -> list[tuple[str, int]]:
    """(imported name, line) of every import in the file, relative ones resolved; `from P import x`
    names P.x when that is a project module, else P."""
    package = module.split(".") if path.name == "__init__.py" else module.split(".")[:-1]
    out = []
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            out += [(alias.name, node.lineno) for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                base = ".".join(package[:len(package) - node.level + 1] + ([base] if base else []))
            for alias in node.names:
                sub = f"{base}.{alias.name}"
                out.append((sub if sub in modules else base, node.lineno))
    return out


@lru_cache(maxsize=1)
def _graph() -> tuple[dict[str, Path], dict[str, list[tuple[str, int]]]]:
    files = _module_files()
    return files, {m: _imports(m, p, set(files)) for m, p in files.items()}


def _under(name: str, prefix: str) -> bool:
    return name == prefix or name.startswith(prefix + ".")


def _gl_modules(graph) -> set[str]:
    """The project modules that import moderngl / glcontext, directly or through others."""
    gl = {m for m, imps in graph.items() if any(_under(i, p) for i, _ in imps for p in ("moderngl", "glcontext"))}
    while True:
        more = {m for m, imps in graph.items() if m not in gl and any(i in gl for i, _ in imps)}
        if not more:
            return gl
        gl |= more


def _reach(graph, start: str) -> dict[str, list[str]]:
    """Everything `start` imports directly or through project modules: name -> the chain to it."""
    chains = {start: [start]}
    todo = [start]
    while todo:
        m = todo.pop()
        for name, line in graph.get(m, []):
            if name not in chains:
                chains[name] = chains[m] + [f"{name} ({m}:{line})"]
                if name in graph:
                    todo.append(name)
    return chains


def violations(files=None, graph=None) -> list[str]:
    if graph is None:
        files, graph = _graph()
    gl = _gl_modules(graph)
    found = []
    for who, forbidden, why in RULES:
        for module in sorted(m for m in graph if any(_under(m, w) for w in who)):
            for name, chain in _reach(graph, module).items():
                bad = [f for f in forbidden if (name in gl and _under(name, "renderer") if f == GL
                                                else _under(name, f))]
                if bad:
                    found.append(f"{module} imports {name} (via {' -> '.join(chain[1:])}): {why}")
    return found


#: cycles known when this test was written, to be cut where that code is being changed (models/io.py
#: and models/tha1.py each import the other inside functions: the THA1 weights work owns them)
KNOWN_CYCLES = ({"models.io", "models.tha1"},)


def import_cycles(graph) -> list[list[str]]:
    """The groups of project modules that import each other, directly or round a loop (Tarjan)."""
    index, low, stack, on_stack, groups = {}, {}, [], set(), []

    def visit(v):
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w, _ in graph[v]:
            if w not in graph:
                continue
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            group = []
            while not group or group[-1] != v:
                group.append(stack.pop())
                on_stack.discard(group[-1])
            if len(group) > 1:
                groups.append(sorted(group))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return groups


def test_no_import_cycles():
    """No two modules import each other, not even inside functions."""
    files, graph = _graph()
    cycles = [c for c in import_cycles(graph) if set(c) not in KNOWN_CYCLES]
    assert not cycles, f"import cycles: {cycles}"


def test_no_private_names_across_modules():
    """A module imports only public names of another: what others use is public in its owner."""
    files, _ = _graph()
    found = [f"{module}:{node.lineno} imports {node.module or '.'}.{alias.name}"
             for module, path in files.items()
             for node in ast.walk(ast.parse(path.read_text(encoding="utf-8")))
             if isinstance(node, ast.ImportFrom)
             for alias in node.names if alias.name.startswith("_") and not alias.name.startswith("__")]
    assert not found, "private names imported across modules:\n" + "\n".join(found)


def test_import_rules():
    problems = violations()
    assert not problems, "import rules broken:\n" + "\n".join(problems)


def test_the_table_sees_function_level_and_relative_imports():
    """The reader finds imports inside functions and resolves relative ones (else the rules above
    could pass by not seeing anything)."""
    files, graph = _graph()
    names = {n for n, _ in graph["dataset.modelcheck"]}
    assert "renderer.offscreen" in names or "renderer.assembly" in names  # imported inside functions
    assert "dataset.errors" in {n for n, _ in graph["dataset.shards"]}
    gl = _gl_modules(graph)
    assert "renderer.offscreen" in gl and "core.pose" not in gl


def test_a_forbidden_import_is_caught(tmp_path):
    """A function-level `import torch` in a renderer module breaks the table."""
    files, graph = _graph()
    graph = dict(graph)
    graph["renderer.framing"] = graph["renderer.framing"] + [("torch", 999)]
    problems = violations(files, graph)
    assert any(p.startswith("renderer.framing imports torch") for p in problems), problems
    assert any(p.startswith("renderer.assembly imports torch") for p in problems)  # through framing
