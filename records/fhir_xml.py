"""FHIR's XML form of a Bundle, read into the JSON form the importer takes.

Each entry's resource is converted on its own (with fhir.resources, which reads
FHIR XML through lxml), so that one invalid resource is reported by its path and
left out rather than refusing the file. The XML parser resolves no entities and
fetches nothing (no XXE, no entity expansion bombs).
"""

from __future__ import annotations

import json
from typing import Any

from lxml import etree
from pydantic import ValidationError

from records.errors import InvalidFhir
from records.fhir_in import Problem

FHIR_NS = "{http://hl7.org/fhir}"


def _parser() -> etree.XMLParser:
    return etree.XMLParser(resolve_entities=False, no_network=True, load_dtd=False, huge_tree=False)


def _loc(loc: tuple[int | str, ...]) -> str:
    out = ""
    for part in loc:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else str(part))
    return out


def _json(model: Any) -> dict[str, Any]:
    data: dict[str, Any] = json.loads(model.model_dump_json(exclude_none=True))
    return data


def bundle_from_xml(raw: bytes) -> tuple[dict[str, Any], list[Problem]]:
    """A FHIR XML Bundle as JSON data, and the resources that could not be read.

    Raises:
        InvalidFhir: not XML, not a FHIR Bundle, or a Bundle envelope that is not
            valid FHIR.
    """
    from fhir.resources.R4B import get_fhir_model_class  # as in fhir_common.validate

    try:
        root = etree.fromstring(raw, _parser())
    except etree.XMLSyntaxError:
        raise InvalidFhir("the file is not well-formed XML", ["xml"]) from None
    if root.tag != f"{FHIR_NS}Bundle":
        raise InvalidFhir("send a FHIR Bundle", ["resourceType"])
    problems: list[Problem] = []
    resources: list[dict[str, Any] | None] = []
    for n, entry in enumerate(root.findall(f"{FHIR_NS}entry")):
        wrapper = entry.find(f"{FHIR_NS}resource")
        element = wrapper[0] if wrapper is not None and len(wrapper) else None
        resource: dict[str, Any] | None = None
        if element is not None:
            kind = etree.QName(element).localname
            path = f"entry[{n}].resource"
            try:
                model = get_fhir_model_class(kind)
            except KeyError:
                problems.append(
                    Problem(path=f"{path}.resourceType", message=f"{kind} is not a resource")
                )
            else:
                try:
                    resource = _json(model.model_validate_xml(etree.tostring(element)))
                except ValidationError as exc:
                    for err in exc.errors():
                        where = _loc(tuple(err["loc"]))
                        problems.append(
                            Problem(path=f"{path}.{where}" if where else path, message=err["msg"])
                        )
                except ValueError as exc:
                    problems.append(Problem(path=path, message=str(exc)))
        if wrapper is not None:
            entry.remove(wrapper)
        resources.append(resource)
    try:
        shell = _json(get_fhir_model_class("Bundle").model_validate_xml(etree.tostring(root)))
    except (ValidationError, ValueError) as exc:
        raise InvalidFhir(f"the Bundle is not valid FHIR R4: {exc}", ["entry"]) from None
    for entry, resource in zip(shell.get("entry", []), resources, strict=True):
        if resource is not None:
            entry["resource"] = resource
    return shell, problems
