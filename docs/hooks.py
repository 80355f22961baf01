"""mkdocs hooks: pages generated from the code at build time, so that they cannot drift from it.

- ``<!-- generated: config-reference -->`` becomes the table of every config key (type, default, allowed values,
  description), read from the config dataclasses (:mod:`kzoo.config`, :mod:`kzoo.models.mask_rcnn_config`,
  :mod:`kzoo.models.nin_config`): ``dataclasses.fields`` for keys, types and defaults, the checks in each
  ``__post_init__`` (``check_choice``, ``check_range``, ``if self.x not in CHOICES: raise``...) for choices and
  ranges, and the comments beside each field for the description.
- ``<!-- generated: cli-reference -->`` becomes ``kzoo <command> --help`` of every command, from the CLI's own
  argument parser (:func:`kzoo.cli.build_parser`).
- ``benchmarks.md`` is ``benchmarks/README.md`` (rendered by ``benchmarks/render.py`` from the committed results),
  ``changelog.md`` is ``CHANGELOG.md``.

Nothing here imports TensorFlow. ``python docs/hooks.py`` prints the generated markdown.
"""

from __future__ import annotations

import ast
import dataclasses
import inspect
import os
import re
import sys
import textwrap
import typing

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
if ROOT not in sys.path:
    sys.path.insert(0, ROOT)

MARKERS = {
    "<!-- generated: config-reference -->": lambda: config_reference(),
    "<!-- generated: cli-reference -->": lambda: cli_reference(),
}


# -- mkdocs events ------------------------------------------------------------------------------------------------


#: pages of the site that are files of the repository outside docs/
REPOSITORY_PAGES = {"benchmarks.md": "benchmarks/README.md", "changelog.md": "CHANGELOG.md"}


def on_files(files, config):
    """Add the :data:`REPOSITORY_PAGES` (``benchmarks/README.md``, ``CHANGELOG.md``) to the site."""
    from mkdocs.structure.files import File

    for page, source in REPOSITORY_PAGES.items():
        with open(os.path.join(ROOT, source), encoding="utf-8") as f:
            content = f.read()
        for other_page, other_source in REPOSITORY_PAGES.items():  # links between them, as the site names them
            content = content.replace(f"]({other_source}", f"]({other_page}")
        files.append(File.generated(config, page, content=content))
    return files


def on_page_markdown(markdown, page, config, files):
    """Replace each generation marker with its generated markdown."""
    for marker, generate in MARKERS.items():
        if marker in markdown:
            markdown = markdown.replace(marker, generate())
    return markdown


# -- config reference ---------------------------------------------------------------------------------------------


def _yaml_value(value) -> str:
    """A default as it would be written in a YAML config."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, tuple | list):
        return "[" + ", ".join(_yaml_value(v) for v in value) + "]"
    if isinstance(value, str):
        return value if value else '""'
    if dataclasses.is_dataclass(value):
        return "(section)"
    return repr(value)


def _number(node: ast.AST, namespace: dict):
    try:
        return _evaluate(node, namespace)
    except Exception:  # noqa: BLE001 - not a constant: shown as source
        return ast.unparse(node).replace("self.", "")


def _evaluate(node: ast.AST, namespace: dict):
    """A constant, a tuple of constants or a module-level name."""
    if isinstance(node, ast.Name):
        return namespace[node.id]
    return ast.literal_eval(node)


def _field_of(node: ast.AST, env: dict) -> tuple[str, bool] | None:
    """``(field, each)``: the dataclass field an expression reads (``self.x``, ``getattr(self, "x")``, or a loop name
    bound to one); ``each`` when it is one value of a sequence field (``for value in self.x``)."""
    if isinstance(node, ast.Name) and node.id in env:
        bound = env[node.id]
        if isinstance(bound, tuple):  # ("each", field)
            return bound[1], True
        return _field_of(bound, env)
    if isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name) and node.value.id == "self":
        return node.attr, False
    if isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and node.func.id == "getattr":
        if len(node.args) == 2 and isinstance(node.args[0], ast.Name) and node.args[0].id == "self":
            name = node.args[1]
            if isinstance(name, ast.Name) and name.id in env:
                name = env[name.id]
            if isinstance(name, ast.Constant) and isinstance(name.value, str):
                return name.value, False
    return None


def _range_text(low, high, low_open: bool = False) -> str:
    if low is not None and high is not None:
        return f"{'(' if low_open else '['}{low}, {high}]"
    if low is not None:
        return f"{'>' if low_open else '>='} {low}"
    return f"<= {high}"


def _choices_text(choices) -> str:
    return "one of " + ", ".join(f"`{_yaml_value(choice)}`" for choice in choices)


#: values a check is called with to read what it allows from its error messages ("must be ...")
_PROBES = (-(2**70), -1.5, -1, 0, 0.5, 1, 1.5, 2**70, float("nan"), float("inf"))


def _probe(check, args: list, kwargs: dict) -> list[str]:
    """What a ``check_*(key, value, ...)`` function allows, in its own words: the "must be ..." of its errors."""
    texts = []
    for value in _PROBES:
        try:
            check("key", value, *args, **kwargs)
        except Exception as error:  # noqa: BLE001 - any refusal says what it wants
            match = re.search(r"must be (.*?)(?:, got |$)", str(error))
            if match and match.group(1) not in texts:
                texts.append(match.group(1))
    return texts


def _constraints(cls) -> dict[str, list[str]]:
    """``field -> ["one of ...", ">= 1", ...]`` from the checks in ``cls.__post_init__`` (and the methods of
    ``self`` it calls): ``check_choice`` gives its choices; any other ``check_*(key, self.x, ...)`` function is
    called with a few probe values and its "must be ..." messages are collected; ``if self.x not in CHOICES``,
    ``if self.x < n`` and ``if not low <= self.x <= high`` followed by a ``raise`` are read as written."""
    found: dict[str, list[str]] = {}
    namespace = vars(sys.modules[cls.__module__])
    visited: set[str] = set()

    def add(field: tuple[str, bool] | None, text: str) -> None:
        if field:
            text = f"each {text}" if field[1] else text
            if text not in found.setdefault(field[0], []):
                found[field[0]].append(text)

    def value_text(node: ast.AST, env: dict) -> str:
        field = _field_of(node, env)
        return f"`{field[0]}`" if field else str(_number(node, namespace))

    def check_call(call: ast.Call, env: dict) -> None:
        if (
            isinstance(call.func, ast.Attribute)
            and isinstance(call.func.value, ast.Name)
            and call.func.value.id == "self"
        ):
            method(call.func.attr)  # self._check_ranges()
            return
        name = call.func.id if isinstance(call.func, ast.Name) else None
        if not name or not name.startswith("check_") or len(call.args) < 2:
            return
        field = _field_of(call.args[1], env)
        if field is None:
            return
        if name == "check_choice" and len(call.args) >= 3:
            add(field, _choices_text(_evaluate(call.args[2], namespace)))
            return
        try:
            args = [_evaluate(arg, namespace) for arg in call.args[2:]]
            kwargs = {k.arg: _evaluate(k.value, namespace) for k in call.keywords}
        except Exception:  # noqa: BLE001 - a bound read from another field: not probed
            return
        for text in _probe(namespace[name], args, kwargs):
            add(field, text)

    def check_test(test: ast.AST, env: dict) -> None:
        """An ``if`` test whose body raises: what it refuses, turned into what is allowed."""
        if isinstance(test, ast.BoolOp) and isinstance(test.op, ast.Or):
            for value in test.values:
                check_test(value, env)
        elif isinstance(test, ast.Compare) and len(test.ops) == 1:
            field, op, right = _field_of(test.left, env), test.ops[0], test.comparators[0]
            if isinstance(op, ast.NotIn):
                add(field, _choices_text(_evaluate(right, namespace)))
            elif isinstance(op, ast.Lt):
                add(field, f">= {value_text(right, env)}")
            elif isinstance(op, ast.Gt):
                add(field, f"<= {value_text(right, env)}")
        elif isinstance(test, ast.UnaryOp) and isinstance(test.op, ast.Not) and isinstance(test.operand, ast.Compare):
            compare = test.operand
            if len(compare.ops) == 2 and all(isinstance(op, ast.LtE) for op in compare.ops):
                field = _field_of(compare.comparators[0], env)
                add(field, _range_text(_number(compare.left, namespace), _number(compare.comparators[1], namespace)))

    def walk(statements: list[ast.stmt], env: dict) -> None:
        for statement in statements:
            if isinstance(statement, ast.Expr) and isinstance(statement.value, ast.Call):
                check_call(statement.value, env)
            elif isinstance(statement, ast.If):
                if any(isinstance(s, ast.Raise) for s in statement.body):
                    check_test(statement.test, env)
                walk(statement.body, env)
                walk(statement.orelse, env)
            elif isinstance(statement, ast.For):
                field = _field_of(statement.iter, env)
                if field is not None and isinstance(statement.target, ast.Name):  # for value in self.x
                    walk(statement.body, {**env, statement.target.id: ("each", field[0])})
                    continue
                if not isinstance(statement.iter, ast.Tuple | ast.List):
                    continue
                for element in statement.iter.elts:
                    bound = dict(env)
                    if isinstance(statement.target, ast.Name):
                        bound[statement.target.id] = element
                    elif isinstance(statement.target, ast.Tuple) and isinstance(element, ast.Tuple):
                        for target, value in zip(statement.target.elts, element.elts):
                            if isinstance(target, ast.Name):
                                bound[target.id] = value
                    walk(statement.body, bound)

    def method(name: str) -> None:
        function = getattr(cls, name, None)
        if function is None or name in visited:
            return
        visited.add(name)
        tree = ast.parse(textwrap.dedent(inspect.getsource(function)))
        walk(tree.body[0].body, {})

    if "__post_init__" in cls.__dict__:
        method("__post_init__")
    return found


def _comments(cls) -> dict[str, str]:
    """``field -> description`` from the comment at the end of its line and the comment lines just above it, or
    from an ``Attributes:`` section of the class docstring."""
    lines, _ = inspect.getsourcelines(cls)
    names = {f.name for f in dataclasses.fields(cls)}
    found: dict[str, str] = {}
    above: list[str] = []
    for line in lines[1:]:
        stripped = line.strip()
        if stripped.startswith("#"):
            above.append(stripped.lstrip("#").strip())
            continue
        match = re.match(r"\s+(\w+)\s*:", line)
        if match and match.group(1) in names:
            # a lone short comment above a field heads a group of fields ("# backbone"): not its description
            text = "" if len(above) == 1 and len(above[0].split()) <= 5 else " ".join(above)
            if "#" in line and not re.search(r"[\"'][^\"']*#", line):
                text = (text + " " if text else "") + line.split("#", 1)[1].strip()
            found[match.group(1)] = text
        above = []
    doc = inspect.getdoc(cls) or ""
    if "Attributes:" in doc:
        for entry in re.split(r"\n(?=\s{4}\S)", doc.split("Attributes:", 1)[1]):
            keys, _, text = entry.strip().partition(":")
            for key in keys.split(","):
                if key.strip() in names and text.strip() and not found.get(key.strip()):
                    found[key.strip()] = " ".join(text.split())
    return found


def _element_dataclass(hint) -> type | None:
    """``X`` for a ``tuple[X, ...]`` (or ``tuple[X, ...] | None``) of a dataclass ``X``."""
    for arg in typing.get_args(hint) or ():
        if dataclasses.is_dataclass(arg):
            return arg
        inner = _element_dataclass(arg)
        if inner is not None:
            return inner
    return None


def _cell(text: str) -> str:
    return str(text).replace("|", "\\|")


def _type_text(field: dataclasses.Field) -> str:
    """The annotation as code spans, alternatives joined by "or" (a ``|`` would split the table's cell)."""
    text = field.type if isinstance(field.type, str) else getattr(field.type, "__name__", str(field.type))
    return " or ".join(f"`{part.strip()}`" for part in text.split("|"))


def _rows(cls, prefix: str, sections: list) -> list[str]:
    """Table rows of ``cls``'s plain keys; nested dataclasses are queued in ``sections``."""
    hints = typing.get_type_hints(cls)
    constraints, comments = _constraints(cls), _comments(cls)
    rows = []
    for field in dataclasses.fields(cls):
        hint = hints[field.name]
        if dataclasses.is_dataclass(hint):
            sections.append((f"{prefix}{field.name}", hint))
            continue
        element = _element_dataclass(hint)
        if element is not None:
            sections.append((f"{prefix}{field.name}[]", element))
        if field.default is not dataclasses.MISSING:
            default = f"`{_yaml_value(field.default)}`"
        elif field.default_factory is not dataclasses.MISSING:
            default = f"`{_yaml_value(field.default_factory())}`"
        else:
            default = "required"
        # the kind of value first ("an int", "a finite number"), then its bounds
        kinds = [text.replace("<= 2147483647 (int32)", "fits int32") for text in constraints.get(field.name, [])]
        kinds = sorted(kinds, key=lambda t: not re.match(r"(each )?an? ", t))
        allowed = ", ".join(kinds)
        rows.append(
            f"| `{prefix}{field.name}` | {_type_text(field)} | {_cell(default)} | {_cell(allowed)} | "
            f"{_cell(comments.get(field.name, ''))} |"
        )
    return rows


def _summary(cls) -> str:
    doc = inspect.getdoc(cls) or ""
    return " ".join(doc.split("\n\n")[0].split())


def config_tables(cls, title: str) -> list[str]:
    """The sections of an experiment dataclass ``cls``: one table per nested dataclass."""
    out = [f"### {title}", "", _summary(cls), ""]
    sections: list = [("", cls)]
    while sections:
        prefix, section = sections.pop(0)
        rows = _rows(section, f"{prefix}." if prefix else "", sections)
        if prefix:
            out += [f"#### `{prefix}`", "", f"`{section.__name__}`: {_summary(section)}", ""]
        if rows:
            out += ["| key | type | default | allowed | description |", "|---|---|---|---|---|", *rows, ""]
    return out


def config_reference() -> str:
    """Markdown tables of every key of both experiment configs."""
    from kzoo.config import TASKS

    out = []
    for task, cls in TASKS.items():
        out += config_tables(cls, f"`task: {task}` ({cls.__name__})")
    return "\n".join(out)


# -- CLI reference ------------------------------------------------------------------------------------------------


def cli_reference() -> str:
    """``kzoo --help`` and ``kzoo <command> --help`` of every command, as the parser prints them (100 columns)."""
    import argparse

    from kzoo.cli import build_parser

    saved = os.environ.get("COLUMNS")
    os.environ["COLUMNS"] = "100"
    try:
        parser = build_parser()
        out = ["### `kzoo`", "", "```text", parser.format_help().rstrip(), "```", ""]
        commands = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
        for name, sub in commands.choices.items():
            out += [f"### `kzoo {name}`", "", "```text", sub.format_help().rstrip(), "```", ""]
    finally:
        if saved is None:
            os.environ.pop("COLUMNS", None)
        else:
            os.environ["COLUMNS"] = saved
    return "\n".join(out)


if __name__ == "__main__":
    print(config_reference())
    print(cli_reference())
