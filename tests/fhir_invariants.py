"""An R4 invariant checker for the tests: HL7's own constraint expressions, run by
an independent FHIRPath engine.

``fhir.resources`` checks structure and types but not the invariants of the R4
StructureDefinitions (``ait-1``, ``con-5``, ``obs-6``, ``ref-1``, ``dom-3``, ...).
Here every constraint of FHIR 4.0.1 (from ``tests/data/fhir/r4-invariants.json``,
extracted from the core package's ``profiles-resources.json`` and
``profiles-types.json``) is evaluated with ``fhirpathpy`` on every element it
applies to: the resource, its backbone elements, and each data-type value (a
Reference, a Quantity, an Extension, ...), recursively, and into contained and
Bundle entry resources. ``ele-1`` ("an element has a value or children") is
checked in Python, because it applies to every node.
"""

from __future__ import annotations

import copy
import json
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Any

from fhirpathpy import evaluate
from fhirpathpy.models import models

DEFINITIONS = Path(__file__).parent / "data" / "fhir" / "r4-invariants.json"
R4 = models["r4"]


@dataclass(frozen=True)
class Violation:
    """One invariant that does not hold, where."""

    key: str
    severity: str
    path: str
    human: str


@cache
def _definitions() -> dict[str, list[list[Any]]]:
    data: dict[str, list[list[Any]]] = json.loads(DEFINITIONS.read_text())
    return data


def _children(node: Any, name: str) -> list[tuple[str, Any, str | None]]:
    """(key, value, type from a choice suffix) of ``name`` in a JSON node."""
    if not isinstance(node, dict):
        return []
    if name.endswith("[x]"):
        stem = name[:-3]
        out = []
        for key, value in node.items():
            if key.startswith(stem) and key[len(stem) : len(stem) + 1].isupper():
                suffix = key[len(stem) :]
                out.append((key, value, suffix))
        return out
    return [(name, node[name], None)] if name in node else []


def _as_list(value: Any) -> list[Any]:
    return value if isinstance(value, list) else [value]


def _nodes(root: Any, rel: list[str], where: str) -> list[tuple[Any, str, str | None]]:
    """The nodes at a relative element path, with their JSON paths and choice types."""
    found: list[tuple[Any, str, str | None]] = [(root, where, None)]
    for part in rel:
        nxt = []
        for node, path, _t in found:
            for key, value, choice in _children(node, part):
                items = _as_list(value)
                for n, item in enumerate(items):
                    p = f"{path}.{key}" + (f"[{n}]" if isinstance(value, list) else "")
                    nxt.append((item, p, choice))
        found = nxt
    return found


def _ele1(node: Any, path: str, out: list[Violation]) -> None:
    if node is None or node == "" or node == [] or node == {}:
        out.append(
            Violation("ele-1", "error", path, "All FHIR elements must have a @value or children")
        )
    elif isinstance(node, dict):
        for key, value in node.items():
            for n, item in enumerate(_as_list(value)):
                _ele1(item, f"{path}.{key}" + (f"[{n}]" if isinstance(value, list) else ""), out)
    elif isinstance(node, list):
        for n, item in enumerate(node):
            _ele1(item, f"{path}[{n}]", out)


PRIMITIVE_WRAPPERS = {"Element", "BackboneElement"}


def _engine_form(expression: str) -> str:
    """The expression in what fhirpathpy implements. ``hasValue()`` (a primitive
    with a value, not only extensions) is ``exists()`` for the JSON here, which
    has no primitive extensions; ``htmlChecks()`` (txt-1, txt-2) is checked in
    ``_narrative`` instead."""
    return (
        expression.replace(".hasValue()", ".exists()")
        .replace("hasValue()", "$this.exists()")
        .replace("htmlChecks()", "true")
        # dom-3 applies as() to a collection, which FHIRPath 2 forbids; ofType()
        # is what it means (and what later releases of the constraint say).
        .replace("descendants().as(", "descendants().ofType(")
    )


def _check_type(
    node: Any, type_name: str, where: str, root: dict[str, Any], out: list[Violation]
) -> None:
    if type_name == "Resource" or type_name == "DomainResource":
        if isinstance(node, dict) and "resourceType" in node:
            _check_resource(node, where, out)
        return
    elements = _definitions().get(type_name)
    if elements is None:
        return
    for path, types, constraints in elements:
        rel = path.split(".")[1:]
        for child, child_path, choice in _nodes(node, rel, where):
            # The node's type for the engine (so that ``value`` finds ``valueQuantity``).
            single = types[0] if len(types) == 1 and types[0] not in PRIMITIVE_WRAPPERS else None
            base = (choice or single or path) if rel else type_name
            for key, severity, expression, human in constraints:
                try:
                    result = evaluate(
                        child,
                        {"expression": _engine_form(expression), "base": base},
                        {"resource": root, "rootResource": root},
                        R4,
                        {"traceFn": lambda _label, _value: None},
                    )
                except Exception as exc:
                    out.append(
                        Violation(key, "engine", child_path, f"{expression}: {str(exc)[:200]}")
                    )
                    continue
                # True holds; an empty result is taken as holding, as HL7's validator does.
                if result not in ([True], []):
                    out.append(Violation(key, severity, child_path, human))
            if not rel:
                continue  # the type's own root: constraints only
            for t in [choice] if choice else types:
                if t and t not in PRIMITIVE_WRAPPERS and t[:1].isupper():
                    _check_type(child, t, child_path, root, out)


def _check_resource(resource: dict[str, Any], where: str, out: list[Violation]) -> None:
    _check_type(resource, str(resource.get("resourceType")), where, resource, out)


def _narrative(node: Any, path: str, out: list[Violation]) -> None:
    """txt-1/txt-2 in brief: a narrative ``div`` is an XHTML div with some text."""
    if isinstance(node, dict):
        div = node.get("div") if "status" in node else None
        if isinstance(div, str) and not (
            div.startswith("<div") and 'xmlns="http://www.w3.org/1999/xhtml"' in div
        ):
            out.append(Violation("txt-1", "error", f"{path}.div", "not an XHTML div"))
        for key, value in node.items():
            for n, item in enumerate(_as_list(value)):
                _narrative(
                    item, f"{path}.{key}" + (f"[{n}]" if isinstance(value, list) else ""), out
                )


def violations(
    resource: dict[str, Any], *, severities: tuple[str, ...] = ("error", "engine")
) -> list[Violation]:
    """Every R4 invariant the resource (or Bundle, with its entries) breaks."""
    resource = copy.deepcopy(resource)  # the engine annotates what it reads
    out: list[Violation] = []
    where = str(resource.get("resourceType"))
    _ele1(resource, where, out)
    _narrative(resource, where, out)
    _check_resource(resource, where, out)
    return [v for v in out if v.severity in severities]
