"""Every public name has a docstring; the API reference's docstrings document
their arguments.

The reference is generated from the pure engine's objects and the Python
modules (Google style), so there each function with parameters must list
every one of them under `Args:` (and no name that is not a parameter), and
say what it returns.  The compiled core needs a summary line on each public
method (the full text would duplicate pure.py's).
"""
import ast
import dataclasses
import doctest
import importlib
import inspect
import re
import textwrap

import pytest

import autograd
import autograd.engine
import autograd.pure

# the names each engine module defines, as autograd.engine exports them
ENGINE_NAMES = ["Value", "Block", "Replay", "Function", "no_grad", "enable_grad", "is_grad_enabled",
                "vsum", "dot", "dense", "logsumexp", "function"]
ENGINE_CLASSES = ["Value", "Block", "Replay", "Function"]
MODULES = ["autograd.nn", "autograd.train", "autograd.data", "autograd.graph", "autograd.higher", "autograd.math",
           "autograd.engine", "autograd.persist"]


# -- a small Google-style docstring reader ---------------------------------------------

_SECTION = re.compile(r"^([A-Z][A-Za-z ]*):\s*$")
_ITEM = re.compile(r"^(\*{0,2}[A-Za-z_][A-Za-z_0-9]*)\s*(\([^)]*\))?:(\s|$)")


def sections(doc):
    """{section title: [its lines, dedented to the section's items]}."""
    out, title = {}, None
    for line in inspect.cleandoc(doc or "").splitlines():
        m = _SECTION.match(line)
        if m:
            title = m.group(1)
            out[title] = []
        elif title is not None:
            if line and not line.startswith(" "):     # back to prose
                title = None
            else:
                out[title].append(line)
    return {k: textwrap.dedent("\n".join(v)).strip("\n").splitlines() for k, v in out.items()}


def documented_args(doc):
    """The names under `Args:`, without their stars."""
    names = []
    for line in sections(doc).get("Args", []):
        if line and not line.startswith(" "):
            m = _ITEM.match(line)
            assert m, f"an Args: item is not `name: description`: {line!r}"
            names.append(m.group(1).lstrip("*"))
    return names


def test_the_reader():
    doc = """Summary.

    Args:
        a: One,
            continued.
        *rest: More.
        b (int): Two.

    Returns:
        Something.
    """
    assert documented_args(doc) == ["a", "rest", "b"]
    assert "Returns" in sections(doc)
    assert documented_args("Summary.") == []


# -- what is public ----------------------------------------------------------------------

def own_names(module):
    """The public names `module` defines (not those it imports)."""
    out = []
    for name, obj in vars(module).items():
        if name.startswith("_") or inspect.ismodule(obj):
            continue
        if inspect.isclass(obj) or inspect.isfunction(obj):
            if obj.__module__ == module.__name__:
                out.append(name)
        elif name in _assigned_names(module):
            out.append(name)
    return out


def _assigned_names(module):
    return set(_attribute_docstrings(module))


def _attribute_docstrings(module):
    """{name: docstring or None} for the names assigned at module level
    (inside `if` and `try` blocks too): the string that follows an
    assignment documents it, as griffe reads it."""
    tree = ast.parse(inspect.getsource(module))
    out = {}

    def visit(body):
        for k, stmt in enumerate(body):
            targets = []
            if isinstance(stmt, ast.Assign):
                targets = [t.id for t in stmt.targets if isinstance(t, ast.Name)]
            elif isinstance(stmt, ast.AnnAssign) and isinstance(stmt.target, ast.Name):
                targets = [stmt.target.id]
            nxt = body[k + 1] if k + 1 < len(body) else None
            doc = (nxt.value.value if isinstance(nxt, ast.Expr) and isinstance(nxt.value, ast.Constant)
                   and isinstance(nxt.value.value, str) else None)
            for name in targets:
                if not name.startswith("_") and not out.get(name):
                    out[name] = doc
            for field in ("body", "orelse", "finalbody"):
                if isinstance(stmt, (ast.If, ast.Try)) and getattr(stmt, field, None):
                    visit(getattr(stmt, field))
            if isinstance(stmt, ast.Try):
                for handler in stmt.handlers:
                    visit(handler.body)
    visit(tree.body)
    return out


def members(cls, init=True):
    """(name, object) for the public methods and properties `cls` defines,
    with __call__, and __init__ (given `init`), where it defines them."""
    out = []
    for name, obj in vars(cls).items():
        if name.startswith("_") and name not in ("__init__", "__call__"):
            continue
        if name == "__init__" and not (init and getattr(obj, "__qualname__", "").startswith(cls.__qualname__)):
            continue
        if isinstance(obj, (staticmethod, classmethod)):
            obj = obj.__func__
        if callable(obj) or inspect.isdatadescriptor(obj):
            out.append((name, obj))
    return out


def documented(obj):
    doc = obj.__doc__
    return bool(doc and doc.strip())


# -- every public name has a docstring, on both engines ------------------------------------

def test_engine_names_have_docstrings(engine):
    for name in ENGINE_NAMES:
        obj = getattr(engine, name)
        assert documented(obj), f"{engine.__name__}.{name} has no docstring"
    for name in ENGINE_CLASSES:
        cls = getattr(engine, name)
        # pure.py documents the constructor on the class; the core has a line on each
        for member, obj in members(cls, init=engine is not autograd.pure):
            assert documented(obj), f"{engine.__name__}.{name}.{member} has no docstring"


def test_engine_exports_are_the_engine_names():
    assert set(autograd.engine.__all__) - {"BACKEND", "engine_of"} <= set(ENGINE_NAMES)


@pytest.mark.parametrize("name", autograd.__all__)
def test_package_names_have_docstrings(name, engine):
    if name == "BACKEND":       # a str: documented where it is assigned
        assert _attribute_docstrings(autograd.engine).get("BACKEND")
        return
    obj = getattr(engine, name) if name in ENGINE_NAMES else getattr(autograd, name)
    assert documented(obj), f"autograd.{name} has no docstring"


@pytest.mark.parametrize("module_name", MODULES)
def test_module_names_have_docstrings(module_name):
    module = importlib.import_module(module_name)
    names = own_names(module)
    assert names
    attribute_docs = _attribute_docstrings(module)
    for name in names:
        obj = getattr(module, name)
        if inspect.isclass(obj) or inspect.isfunction(obj):
            assert documented(obj), f"{module_name}.{name} has no docstring"
            if inspect.isclass(obj):
                for member, m in members(obj, init=False):     # the class documents it
                    assert documented(m), f"{module_name}.{name}.{member} has no docstring"
        else:
            assert attribute_docs.get(name), \
                f"{module_name}.{name} has no docstring (a string after its assignment)"


# -- the reference's docstrings document every argument ----------------------------------

def _parameters(func):
    try:
        sig = inspect.signature(func)
    except (TypeError, ValueError):
        return None, None
    params = [p.name for p in sig.parameters.values() if p.name not in ("self", "cls")]
    return params, sig.return_annotation


def _check_args(where, func, doc):
    """Each parameter of `func` under Args: in `doc`, and no other name."""
    params, returns = _parameters(func)
    if params is None:
        return []
    problems = []
    listed = documented_args(doc)
    for p in params:
        if p not in listed:
            problems.append(f"{where}: parameter {p!r} is not under Args:")
    for name in listed:
        if name not in params:
            problems.append(f"{where}: Args: lists {name!r}, which is not a parameter")
    if len(set(listed)) != len(listed):
        problems.append(f"{where}: Args: lists a name twice")
    return problems


def _check_returns(where, func, doc):
    params, returns = _parameters(func)
    if returns in (None, "None", inspect.Signature.empty) or func.__name__ in ("__init__",):
        return []
    if "Returns" not in sections(doc):
        return [f"{where}: no Returns: section (it returns {returns})"]
    return []


def _check_class(where, cls):
    problems = []
    init = vars(cls).get("__init__")
    if dataclasses.is_dataclass(cls) or issubclass(cls, tuple):
        fields = [f.name for f in dataclasses.fields(cls)] if dataclasses.is_dataclass(cls) else list(cls._fields)
        attrs = [line.split(":")[0].strip() for line in sections(cls.__doc__).get("Attributes", [])
                 if line and not line.startswith(" ")]
        problems += [f"{where}: field {f!r} is not under Attributes:" for f in fields if f not in attrs]
    elif inspect.isfunction(init) and init.__qualname__.startswith(cls.__qualname__):
        # the constructor's arguments, under Args: in the class's docstring or __init__'s
        doc = cls.__doc__ if documented_args(cls.__doc__) or not documented_args(init.__doc__) else init.__doc__
        problems += _check_args(f"{where}()", init, doc)
    for name, member in members(cls):
        if name == "__init__" or not inspect.isfunction(member):
            continue
        problems += _check_args(f"{where}.{name}", member, member.__doc__)
        problems += _check_returns(f"{where}.{name}", member, member.__doc__)
    return problems


def _reference_objects():
    for name in ENGINE_NAMES:
        yield f"autograd.pure.{name}", getattr(autograd.pure, name)
    for module_name in MODULES:
        module = importlib.import_module(module_name)
        for name in own_names(module):
            obj = getattr(module, name)
            if inspect.isclass(obj) or inspect.isfunction(obj):
                yield f"{module_name}.{name}", obj


@pytest.mark.parametrize("where, obj", list(_reference_objects()), ids=lambda x: x if isinstance(x, str) else "")
def test_reference_docstrings_document_the_arguments(where, obj):
    if inspect.isclass(obj):
        problems = _check_class(where, obj)
    else:
        problems = _check_args(where, obj, obj.__doc__) + _check_returns(where, obj, obj.__doc__)
    assert not problems, "\n".join(problems)


def test_the_check_can_fail():
    def f(a, b):
        """Summary.

        Args:
            a: One.
            c: Not a parameter.
        """
    problems = _check_args("f", f, f.__doc__)
    assert any("'b'" in p for p in problems) and any("'c'" in p for p in problems)


# -- the examples in the reference run ---------------------------------------------------

@pytest.mark.parametrize("module_name", ["autograd.pure"] + MODULES)
def test_docstring_examples(module_name):
    module = importlib.import_module(module_name)
    result = doctest.testmod(module, optionflags=doctest.ELLIPSIS)
    assert result.failed == 0
