"""Label and field selectors, parsed and applied as the API server does.

kmock returns every object of a list regardless of ``labelSelector``/``fieldSelector``, so code that
forgets a selector, or sends a wrong one, passes its tests and then floods or starves in a real
cluster. These selectors follow the apimachinery grammar: label requirements ``k=v``, ``k==v``,
``k!=v``, ``k in (a,b)``, ``k notin (a,b)``, ``k``, ``!k``, ``k>n``, ``k<n``, comma meaning AND;
field requirements ``f=v``, ``f==v``, ``f!=v`` on the field labels each resource type supports
(anything else is a 400, as for real).
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from .errors import ApiError, bad_request

_KEY = r"(?:[A-Za-z0-9][-A-Za-z0-9_.]*/)?[A-Za-z0-9](?:[-A-Za-z0-9_.]*[A-Za-z0-9])?"
_VALUE = r"(?:[A-Za-z0-9](?:[-A-Za-z0-9_.]*[A-Za-z0-9])?)?"
_SET_RE = re.compile(rf"^({_KEY})\s+(in|notin)\s*\(([^)]*)\)$")
_CMP_RE = re.compile(rf"^({_KEY})\s*(==|=|!=|>|<)\s*({_VALUE})$")
_EXISTS_RE = re.compile(rf"^(!?)\s*({_KEY})$")
_VALUE_RE = re.compile(rf"^{_VALUE}$")

Labels = Mapping[str, str]


@dataclass(frozen=True)
class Requirement:
    key: str
    operator: str  # "=", "!=", "in", "notin", "exists", "!", ">", "<"
    values: tuple[str, ...] = ()

    def matches(self, labels: Labels) -> bool:
        present = self.key in labels
        value = labels.get(self.key)
        match self.operator:
            case "=" | "in":
                return present and value in self.values
            case "!=" | "notin":
                return not present or value not in self.values
            case "exists":
                return present
            case "!":
                return not present
            case ">" | "<":
                return present and _compare_int(value, self.values[0], self.operator)
        return False  # pragma: no cover - operators are fixed by the parser


def _compare_int(value: str | None, bound: str, operator: str) -> bool:
    try:
        number = int(value or "")
    except ValueError:
        return False
    return number > int(bound) if operator == ">" else number < int(bound)


def _split_terms(selector: str) -> list[str]:
    """Split on commas that are not inside ``( )`` of a set requirement."""
    terms: list[str] = []
    depth = 0
    current: list[str] = []
    for char in selector:
        if char == "(":
            depth += 1
        elif char == ")":
            depth -= 1
        if char == "," and depth == 0:
            terms.append("".join(current).strip())
            current = []
        else:
            current.append(char)
    terms.append("".join(current).strip())
    return terms


def _parse_label_term(term: str) -> Requirement:
    if match := _SET_RE.match(term):
        values = tuple(value.strip() for value in match.group(3).split(","))
        if not all(_VALUE_RE.match(value) for value in values):
            raise bad_request(f"unable to parse requirement: invalid label value in {term!r}")
        return Requirement(match.group(1), match.group(2), values)
    if match := _CMP_RE.match(term):
        operator = "=" if match.group(2) == "==" else match.group(2)
        if operator in (">", "<") and not match.group(3).lstrip("-").isdigit():
            raise bad_request(
                "unable to parse requirement: "
                f"for 'Gt', 'Lt' operators, the value must be an integer: {term!r}"
            )
        return Requirement(match.group(1), operator, (match.group(3),))
    if match := _EXISTS_RE.match(term):
        return Requirement(match.group(2), "!" if match.group(1) else "exists")
    raise bad_request(f"unable to parse requirement: found '{term}', expected: label selector requirement")


@dataclass(frozen=True)
class LabelSelector:
    requirements: tuple[Requirement, ...] = ()

    @classmethod
    def parse(cls, selector: str | None) -> LabelSelector:
        if not selector or not selector.strip():
            return cls()
        terms = _split_terms(selector)
        if any(not term for term in terms):
            raise bad_request(f"unable to parse requirement: empty term in label selector {selector!r}")
        return cls(tuple(_parse_label_term(term) for term in terms))

    def matches(self, labels: Labels) -> bool:
        return all(requirement.matches(labels) for requirement in self.requirements)


@dataclass(frozen=True)
class FieldRequirement:
    field: str
    value: str
    negated: bool

    def matches(self, fields: Mapping[str, str]) -> bool:
        return (fields.get(self.field, "") == self.value) != self.negated


@dataclass(frozen=True)
class FieldSelector:
    requirements: tuple[FieldRequirement, ...] = ()

    @classmethod
    def parse(cls, selector: str | None, supported: tuple[str, ...]) -> FieldSelector:
        """Parse, accepting only the field labels this resource type supports."""
        if not selector or not selector.strip():
            return cls()
        requirements: list[FieldRequirement] = []
        for term in (term.strip() for term in selector.split(",")):
            if not term:  # apimachinery skips empty terms (kr8s sends "metadata.name=x,")
                continue
            requirement = _parse_field_term(term)
            if requirement.field not in supported:
                raise _unsupported_field(requirement.field, supported)
            requirements.append(requirement)
        return cls(tuple(requirements))

    def matches(self, fields: Mapping[str, str]) -> bool:
        return all(requirement.matches(fields) for requirement in self.requirements)


def _parse_field_term(term: str) -> FieldRequirement:
    for operator in ("!=", "==", "="):
        if operator in term:
            field, value = term.split(operator, 1)
            return FieldRequirement(field.strip(), value.strip(), negated=operator == "!=")
    raise bad_request(f"invalid selector: '{term}'; can't understand '{term}'")


def _unsupported_field(field: str, supported: tuple[str, ...]) -> ApiError:
    # Types with their own conversion function (pods, nodes, ...) say "field label not supported";
    # the generic one lists what it accepts.
    if supported == ("metadata.name", "metadata.namespace"):
        message = f'"{field}" is not a known field selector: only "metadata.name", "metadata.namespace"'
    else:
        message = f"field label not supported: {field}"
    return bad_request(message)


def field_values(obj: Mapping[str, Any], labels: tuple[str, ...]) -> dict[str, str]:
    """The values of the given field labels in an object, stringified as the API server does."""
    values: dict[str, str] = {}
    for label in labels:
        node: Any = obj
        for part in label.split("."):
            node = node.get(part) if isinstance(node, Mapping) else None
        if isinstance(node, bool):
            values[label] = "true" if node else "false"
        else:
            values[label] = "" if node is None else str(node)
    return values
